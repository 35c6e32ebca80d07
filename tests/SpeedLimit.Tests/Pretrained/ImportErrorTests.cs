using System.Text.Json.Nodes;
using Google.Protobuf;
using Onnx;
using SpeedLimit.Checkpoints;
using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Onnx;
using SpeedLimit.Pretrained;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Tests.Pretrained;

/// <summary>
/// Importers on small models: our own fp32 ONNX export and Hugging Face folders (exact round trips,
/// legacy names), and every way an import must fail with an error naming the problem.
/// </summary>
public sealed class ImportErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("import-test-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly BertConfig Small = new(new Architecture(2, 24, 40), heads: 4, vocabSize: 50, HeadKind.Classification, labels: 3, maxPositions: 32, layerNormEps: 1e-6f);
    private static readonly string[] Vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", .. Enumerable.Range(0, 45).Select(i => $"tok{i}")];

    private static float[] Weights(BertConfig c, int seed = 5) => RandomBertWeights.Create(new BertParameterLayout(c), seed, 0.1f);

    private static ModelProto SmallOnnx(float[] weights) =>
        ModelProto.Parser.ParseFrom(BertOnnxExporter.ToBytes(Small, new BertParameterLayout(Small), weights));

    private static PretrainedEncoder Import(ModelProto m) => OnnxBertImporter.Import(m.ToByteArray(), Vocab, true, "test.onnx");

    [Fact]
    public void OnnxImportOfOurOwnExportGivesBackTheExactWeights()
    {
        var w = Weights(Small);
        var encoder = Import(SmallOnnx(w));
        Assert.Equal(Small, encoder.Config);
        var model = encoder.CreateModel(HeadKind.Classification, 3, seed: 1, out var random);
        Assert.Empty(random);
        Assert.Equal(w, model.Parameters);
    }

    [Fact]
    public void OnnxWeightThatIsNotAMatMulIsNamedInTheError()
    {
        var m = SmallOnnx(Weights(Small));
        var add = m.Graph.Node.First(n => n.OpType == "Add" && n.Input.Contains(N.Key(1, "bias")));
        var matmul = m.Graph.Node.First(n => n.Output.Contains(add.Input[0]) || n.Output.Contains(add.Input[1]));
        matmul.OpType = "Mul";
        var ex = Assert.Throws<InvalidDataException>(() => Import(m));
        Assert.Contains("encoder.layer.1.attention.self.key", ex.Message);
        Assert.Contains("not of a MatMul", ex.Message);
        Assert.Contains(matmul.Name, ex.Message);
    }

    [Fact]
    public void OnnxAnonymousWeightWithoutANamedBiasIsAnError()
    {
        var m = SmallOnnx(Weights(Small));
        // The FFN output bias becomes anonymous: its MatMul weight can no longer be attributed.
        var bias = m.Graph.Initializer.First(t => t.Name == N.Output(0, "bias"));
        foreach (var n in m.Graph.Node) for (int i = 0; i < n.Input.Count; i++) if (n.Input[i] == bias.Name) n.Input[i] = "1234";
        bias.Name = "1234";
        var weight = m.Graph.Initializer.First(t => t.Name == N.Output(0, "weight") + "_t");
        foreach (var n in m.Graph.Node) for (int i = 0; i < n.Input.Count; i++) if (n.Input[i] == weight.Name) n.Input[i] = "927";
        weight.Name = "927";
        var ex = Assert.Throws<InvalidDataException>(() => Import(m));
        Assert.Contains("encoder.layer.0.output.dense.bias", ex.Message);
        Assert.Contains("'927'", ex.Message);
        Assert.Contains("could not be attributed", ex.Message);
    }

    [Theory]
    [InlineData("Gelu", "Relu", "FFN of layer 0")]
    [InlineData("Tanh", "Sigmoid", "pooler")]
    public void OnnxUnsupportedActivationIsRejected(string op, string replacement, string where)
    {
        var m = SmallOnnx(Weights(Small));
        var node = m.Graph.Node.First(n => n.OpType == op);
        node.OpType = replacement;
        node.Domain = "";
        var ex = Assert.Throws<InvalidDataException>(() => Import(m));
        Assert.Contains(where, ex.Message);
        Assert.Contains(replacement, ex.Message);
    }

    [Fact]
    public void OnnxQuantizedGraphIsRejected()
    {
        var bytes = BertOnnxExporter.ToBytes(Small, new BertParameterLayout(Small), Weights(Small), new OnnxExportOptions { Precision = Precision.Int8 });
        var ex = Assert.Throws<InvalidDataException>(() => OnnxBertImporter.Import(bytes, Vocab, true, "int8.onnx"));
        Assert.Contains("DynamicQuantizeMatMul", ex.Message);
        Assert.Contains("fp32 export", ex.Message);
    }

    [Fact]
    public void OnnxFileNeedsAVocabulary()
    {
        var path = Path.Combine(_dir, "model.onnx");
        File.WriteAllBytes(path, SmallOnnx(Weights(Small)).ToByteArray());
        var ex = Assert.Throws<FileNotFoundException>(() => PretrainedLoader.Load(path));
        Assert.Contains("--vocab", ex.Message);
        File.WriteAllLines(Path.Combine(_dir, "vocab.txt"), Vocab);
        Assert.Equal(Small.Arch, PretrainedLoader.Load(_dir).Arch); // a folder with model.onnx + vocab.txt
    }

    private string WriteFolder(string name, BertConfig config, float[] weights, string dtype = SafeTensors.F32)
    {
        var dir = Path.Combine(_dir, name);
        HuggingFaceFolder.Write(dir, config, weights, Vocab, dtype: dtype);
        return dir;
    }

    private static void EditConfig(string dir, Action<JsonObject> edit)
    {
        var path = Path.Combine(dir, HuggingFaceFolder.ConfigFile);
        var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(o);
        File.WriteAllText(path, o.ToJsonString());
    }

    [Fact]
    public void FolderWithLegacyNamesAndNoPrefixReadsTheSame()
    {
        // BertModel-style names (no "bert."), LayerNorm gamma/beta, BF16 storage, a position_ids buffer and an NSP head.
        var config = Small with { Head = HeadKind.Classification };
        var w = Weights(config);
        var dir = WriteFolder("legacy", config, w);
        var layout = new BertParameterLayout(config);
        var entries = layout.Tensors.Where(t => !t.Name.StartsWith("classifier", StringComparison.Ordinal)).Select(t =>
        {
            var name = t.Name["bert.".Length..].Replace("LayerNorm.weight", "LayerNorm.gamma").Replace("LayerNorm.bias", "LayerNorm.beta");
            return new SafeTensorEntry(name, t.Shape, w.AsMemory((int)t.Offset, (int)t.Length), SafeTensors.BF16);
        }).ToList();
        entries.Add(new SafeTensorEntry("cls.seq_relationship.weight", [2, 24], new float[48]));
        SafeTensors.Write(Path.Combine(dir, HuggingFaceFolder.WeightsFile), entries);
        EditConfig(dir, o => { o.Remove("num_labels"); o.Remove("id2label"); o.Remove("label2id"); });
        var encoder = HuggingFaceFolder.Read(dir);
        Assert.Equal(config.Arch, encoder.Arch);
        Assert.Contains(encoder.Notes, n => n.Contains("seq_relationship"));
        var model = encoder.CreateModel(HeadKind.Classification, 3, seed: 1, out var random);
        Assert.Equal([N.ClassifierWeight, N.ClassifierBias], random);
        foreach (var t in layout.Tensors.Where(t => !t.Name.StartsWith("classifier", StringComparison.Ordinal)))
            for (int i = 0; i < t.Length; i++)
            {
                float a = w[t.Offset + i], b = model.Parameters[t.Offset + i];
                Assert.True(Math.Abs(a - b) <= Math.Abs(a) / 256, $"{t.Name}[{i}]: {a} vs {b}");
            }
    }

    [Fact]
    public void MaskedLmFolderKeepsItsHead()
    {
        var config = Small with { Head = HeadKind.MaskedLm, Labels = 2 };
        var w = Weights(config);
        var encoder = HuggingFaceFolder.Read(WriteFolder("mlm", config, w));
        Assert.Equal(HeadKind.MaskedLm, encoder.Config.Head);
        Assert.Equal(w, encoder.CreateModel().Parameters);
    }

    [Theory]
    [InlineData("intermediate_size", 48, "intermediate.dense.weight")]
    [InlineData("hidden_size", 28, "word_embeddings")]
    [InlineData("num_hidden_layers", 1, "encoder.layer.1")]
    [InlineData("num_hidden_layers", 3, "encoder.layer.2")]
    [InlineData("vocab_size", 60, "vocab")]
    [InlineData("num_labels", 2, "num_labels")]
    public void ConfigThatDisagreesWithTheTensorsIsAnError(string field, int value, string named)
    {
        var dir = WriteFolder("bad-" + field + value, Small, Weights(Small));
        EditConfig(dir, o => { o[field] = value; if (field == "num_labels") o.Remove("id2label"); });
        var ex = Assert.Throws<InvalidDataException>(() => HuggingFaceFolder.Read(dir));
        Assert.Contains(named, ex.Message);
        Assert.Contains(dir, ex.Message);
    }

    [Theory]
    [InlineData("hidden_act", "relu", "hidden_act is 'relu'")]
    [InlineData("hidden_act", "gelu_new", "hidden_act is 'gelu_new'")]
    [InlineData("model_type", "roberta", "model_type is 'roberta'")]
    [InlineData("position_embedding_type", "relative_key", "'absolute'")]
    public void UnsupportedConfigIsRejected(string field, string value, string expected)
    {
        var dir = WriteFolder("unsupported-" + value, Small, Weights(Small));
        EditConfig(dir, o => o[field] = value);
        var ex = Assert.Throws<InvalidDataException>(() => HuggingFaceFolder.Read(dir));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void MissingFilesAreNamed()
    {
        var dir = WriteFolder("missing", Small, Weights(Small));
        File.Delete(Path.Combine(dir, "vocab.txt"));
        Assert.Contains("vocab.txt", Assert.Throws<FileNotFoundException>(() => HuggingFaceFolder.Read(dir)).Message);
        File.Delete(Path.Combine(dir, "model.safetensors"));
        Assert.Contains("model.safetensors", Assert.Throws<FileNotFoundException>(() => HuggingFaceFolder.Read(dir)).Message);
        Assert.Contains("neither a folder", Assert.Throws<UserInputException>(() => PretrainedLoader.Load(Path.Combine(_dir, "nope"))).Message);
    }

    [Fact]
    public void WriterRefusesToOverwriteAFolderThatIsNotAModel()
    {
        var dir = Path.Combine(_dir, "user-folder");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "mine");
        Assert.Throws<IOException>(() => HuggingFaceFolder.Write(dir, Small, Weights(Small), Vocab, overwrite: true));
        Assert.Equal("mine", File.ReadAllText(Path.Combine(dir, "notes.txt")));
        Assert.Single(Directory.EnumerateFileSystemEntries(_dir)); // no temp folder left behind
    }

    [Fact]
    public void SafeTensors16BitWritesRoundToNearestEven()
    {
        float[] values = [1f, -2.5f, 1f + 1f / 256 + 1e-6f, 65504f, 1e-8f, float.NaN, 3.1415927f];
        var path = Path.Combine(_dir, "half.safetensors");
        SafeTensors.Write(path, [new("h", [values.Length], values, SafeTensors.F16), new("b", [values.Length], values, SafeTensors.BF16)]);
        var file = SafeTensors.Read(path);
        Assert.Equal("F16", file.ByName["h"].DType);
        Assert.Equal("BF16", file.ByName["b"].DType);
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal((float)(Half)values[i], file.ByName["h"].Data[i]);
            float bf = file.ByName["b"].Data[i];
            if (float.IsNaN(values[i])) { Assert.True(float.IsNaN(bf)); continue; }
            // nearest bfloat16: the two candidates around the value, the closer one (ties to even)
            uint bits = BitConverter.SingleToUInt32Bits(values[i]);
            float down = BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000), up = BitConverter.UInt32BitsToSingle((bits & 0xFFFF0000) + 0x10000);
            float nearest = Math.Abs(values[i] - down) < Math.Abs(up - values[i]) ? down : Math.Abs(values[i] - down) > Math.Abs(up - values[i]) ? up
                : ((bits >> 16) & 1) == 0 ? down : up;
            Assert.Equal(nearest, bf);
        }
        Assert.Equal(8 + 2 * 2 * values.Length, new FileInfo(path).Length - HeaderLength(path));
    }

    private static long HeaderLength(string path)
    {
        using var fs = File.OpenRead(path);
        var b = new byte[8];
        fs.ReadExactly(b);
        return (long)BitConverter.ToUInt64(b);
    }
}
