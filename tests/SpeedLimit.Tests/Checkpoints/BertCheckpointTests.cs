using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using SpeedLimit.Checkpoints;
using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Tests.Checkpoints;

public sealed class BertCheckpointTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sl-bertckpt-" + Guid.NewGuid().ToString("N"));

    public BertCheckpointTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static readonly BertConfig Classifier = new(new Architecture(2, 24, 40), 4, 50, HeadKind.Classification, labels: 3, maxPositions: 16);
    private static readonly BertConfig MaskedLm = new(new Architecture(1, 12, 20), 3, 30, HeadKind.MaskedLm, maxPositions: 8, layerNormEps: 1e-5f);

    private static float[] RandomParameters(BertConfig config, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, (int)new BertParameterLayout(config).TotalLength).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void RoundTrip_IsBitExact_WithConfigAndMetadata(int which)
    {
        var config = which == 0 ? Classifier : MaskedLm;
        var p = RandomParameters(config, 3);
        var path = PathOf("m.safetensors");
        BertCheckpoint.Save(path, config, p, new Dictionary<string, string> { ["seed"] = "7" });
        var loaded = BertCheckpoint.Load(path);
        Assert.Equal(config, loaded.Config);
        Assert.Equal(p, loaded.Parameters);
        Assert.Equal("7", loaded.Metadata["seed"]);
        Assert.Equal("speedlimit-bert", loaded.Metadata[BertCheckpoint.FormatKey]);
        Assert.Empty(loaded.ExtraTensors);
        Assert.False(loaded.HasOptimizerState);
    }

    [Fact]
    public void File_UsesHuggingFaceNamesAndShapes_ReadIndependently()
    {
        var p = RandomParameters(Classifier, 4);
        var path = PathOf("hf.safetensors");
        BertCheckpoint.Save(path, Classifier, p);
        var bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var doc = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n));
        var q = doc.RootElement.GetProperty("bert.encoder.layer.1.attention.self.query.weight");
        Assert.Equal([24, 24], q.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        var inter = doc.RootElement.GetProperty("bert.encoder.layer.0.intermediate.dense.weight");
        Assert.Equal([40, 24], inter.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        // data of a tensor equals its slice of the flat buffer
        var layout = new BertParameterLayout(Classifier);
        var t = layout[BertParameterLayout.Names.ClassifierWeight];
        long begin = doc.RootElement.GetProperty(t.Name).GetProperty("data_offsets")[0].GetInt64();
        for (int i = 0; i < t.Length; i++)
            Assert.Equal(p[t.Offset + i], BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(8 + n + begin + 4 * i))));
        var configJson = doc.RootElement.GetProperty("__metadata__").GetProperty("speedlimit.config").GetString()!;
        using var config = JsonDocument.Parse(configJson);
        Assert.Equal(24, config.RootElement.GetProperty("hidden").GetInt32());
        Assert.Equal("Classification", config.RootElement.GetProperty("head").GetString());
    }

    [Fact]
    public void TrainingState_RoundTrips_AndResumesIdentically()
    {
        var layout = new BertParameterLayout(MaskedLm);
        var p = RandomParameters(MaskedLm, 5);
        var rng = new Random(6);
        var options = new TrainingOptions();
        var opt = AdamW.ForLayout(layout, options);
        for (int s = 0; s < 3; s++) opt.Step(p, Enumerable.Range(0, p.Length).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), 1e-3f);

        var path = PathOf("train.safetensors");
        BertCheckpoint.SaveTraining(path, MaskedLm, p, opt, new Dictionary<string, string> { ["seed"] = "42", ["epoch"] = "1" });
        var loaded = BertCheckpoint.Load(path);
        Assert.True(loaded.HasOptimizerState);
        Assert.Equal("3", loaded.Metadata[BertCheckpoint.OptimizerStepKey]);
        Assert.Equal("42", loaded.Metadata["seed"]);
        var resumed = AdamW.ForLayout(loaded.Layout, options);
        loaded.RestoreOptimizer(resumed);
        Assert.Equal(3, resumed.StepCount);

        var g = Enumerable.Range(0, p.Length).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var pResumed = loaded.Parameters;
        opt.Step(p, g, 1e-3f);
        resumed.Step(pResumed, g, 1e-3f);
        Assert.Equal(p, pResumed);

        BertCheckpoint.Save(PathOf("plain.safetensors"), MaskedLm, p);
        var plain = BertCheckpoint.Load(PathOf("plain.safetensors"));
        var ex = Assert.Throws<InvalidDataException>(() => plain.RestoreOptimizer(resumed));
        Assert.Contains("no optimizer state", ex.Message);
    }

    /// <summary>Writes the model's tensors by hand with one altered, under valid checkpoint metadata.</summary>
    private string WriteAltered(string name, Func<ParameterTensor, SafeTensorEntry?> alter)
    {
        var layout = new BertParameterLayout(Classifier);
        var p = RandomParameters(Classifier, 8);
        var entries = layout.Tensors.Select(t => alter(t) ?? new SafeTensorEntry(t.Name, t.Shape, p.AsMemory((int)t.Offset, (int)t.Length)))
            .Where(e => e.Name.Length > 0).ToList();
        var path = PathOf(name);
        SafeTensors.Write(path, entries, new Dictionary<string, string>
        {
            [BertCheckpoint.FormatKey] = BertCheckpoint.FormatValue,
            [BertCheckpoint.ConfigKey] = BertCheckpoint.ConfigToJson(Classifier),
        });
        return path;
    }

    [Fact]
    public void MissingTensor_IsNamed()
    {
        const string missing = "bert.encoder.layer.1.output.LayerNorm.bias";
        var path = WriteAltered("missing.safetensors", t => t.Name == missing ? new SafeTensorEntry("", [], default) : null);
        var ex = Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(path));
        Assert.Contains(missing, ex.Message);
        Assert.Contains("missing", ex.Message);
        Assert.Contains("missing.safetensors", ex.Message);
    }

    [Fact]
    public void MisShapedTensor_IsNamed()
    {
        const string name = "bert.encoder.layer.0.intermediate.dense.weight";
        var path = WriteAltered("shape.safetensors", t => t.Name == name ? new SafeTensorEntry(name, [24, 40], new float[960]) : null);
        var ex = Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(path));
        Assert.Contains(name, ex.Message);
        Assert.Contains("[24, 40]", ex.Message);
        Assert.Contains("[40, 24]", ex.Message);
    }

    [Fact]
    public void ForeignOrBrokenMetadata_IsRejected()
    {
        var path = PathOf("foreign.safetensors");
        SafeTensors.Write(path, [new("x", [1], new float[1])]);
        Assert.Contains("not a SpeedLimit BERT checkpoint", Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(path)).Message);

        SafeTensors.Write(path, [new("x", [1], new float[1])], new Dictionary<string, string>
        { [BertCheckpoint.FormatKey] = BertCheckpoint.FormatValue, [BertCheckpoint.ConfigKey] = """{"layers":1,"hidden":10,"ffn":8,"heads":3,"vocabSize":5,"head":"Classification","labels":2,"maxPositions":4,"typeVocabSize":2,"layerNormEps":1e-12}""" });
        Assert.Contains("not divisible", Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(path)).Message);

        SafeTensors.Write(path, [new("x", [1], new float[1])], new Dictionary<string, string>
        { [BertCheckpoint.FormatKey] = BertCheckpoint.FormatValue, [BertCheckpoint.ConfigKey] = "{not json" });
        Assert.Contains("not a valid config", Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(path)).Message);
    }

    [Fact]
    public void Save_RejectsWrongLengthAndReservedKeys()
    {
        var p = RandomParameters(Classifier, 9);
        Assert.Contains("needs", Assert.Throws<ArgumentException>(() => BertCheckpoint.Save(PathOf("a"), Classifier, p.AsMemory(1))).Message);
        Assert.Throws<ArgumentException>(() => BertCheckpoint.Save(PathOf("a"), Classifier, p, new Dictionary<string, string> { ["format"] = "x" }));
        Assert.Throws<ArgumentException>(() => BertCheckpoint.Save(PathOf("a"), Classifier, p, null,
            new Dictionary<string, ReadOnlyMemory<float>> { [BertParameterLayout.Names.ClassifierBias] = new float[3] }));
        Assert.False(File.Exists(PathOf("a")));
    }
}
