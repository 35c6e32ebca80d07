namespace SpeedLimit.Pretrained;

/// <summary>Resolves what a user passes as <c>--pretrained</c>: a built-in name, a Hugging Face folder, or an ONNX file.</summary>
public static class PretrainedLoader
{
    /// <summary>Built-in names, each a real pretrained model that needs no download.</summary>
    public static IReadOnlyList<string> BuiltinNames => [MiniLmResources.Name];

    /// <summary>
    /// Loads <paramref name="pathOrName"/>: <c>minilm-l6</c> (all-MiniLM-L6-v2 from the NuGet package), a
    /// folder with config.json + model.safetensors + vocab.txt, a folder with model.onnx + vocab.txt, or an
    /// .onnx file (vocabulary from <paramref name="vocabPath"/> or beside it).
    /// </summary>
    public static PretrainedEncoder Load(string pathOrName, string? vocabPath = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(pathOrName);
        if (string.Equals(pathOrName, MiniLmResources.Name, StringComparison.OrdinalIgnoreCase)) return LoadMiniLm();
        if (Directory.Exists(pathOrName))
        {
            if (HuggingFaceFolder.IsFolder(pathOrName) && (File.Exists(Path.Combine(pathOrName, HuggingFaceFolder.WeightsFile)) || File.Exists(Path.Combine(pathOrName, HuggingFaceFolder.WeightsIndexFile))))
                return HuggingFaceFolder.Read(pathOrName);
            var onnx = Path.Combine(pathOrName, "model.onnx");
            if (File.Exists(onnx)) return OnnxBertImporter.ReadFile(onnx, vocabPath);
            return HuggingFaceFolder.Read(pathOrName); // names what is missing
        }
        if (File.Exists(pathOrName))
        {
            if (pathOrName.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)) return OnnxBertImporter.ReadFile(pathOrName, vocabPath);
            throw new UserInputException($"'{pathOrName}' is a file but not an .onnx model; pass a Hugging Face folder (config.json, model.safetensors, vocab.txt), an .onnx export, or one of: {string.Join(", ", BuiltinNames)}");
        }
        throw new UserInputException($"pretrained model '{pathOrName}' is neither a folder, a file, nor a built-in name ({string.Join(", ", BuiltinNames)})");
    }

    /// <summary>
    /// all-MiniLM-L6-v2 from the package's embedded ONNX file and vocabulary (uncased, as bert-base-uncased).
    /// Heads (12) and LayerNorm epsilon (1e-12) are read from the graph like for any ONNX import.
    /// </summary>
    public static PretrainedEncoder LoadMiniLm() =>
        OnnxBertImporter.Import(MiniLmResources.ReadModelOnnx(), MiniLmResources.ReadVocab(), lowerCase: true, MiniLmResources.Name);
}
