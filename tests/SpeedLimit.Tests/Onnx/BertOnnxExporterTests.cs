using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Onnx;

namespace SpeedLimit.Tests.Onnx;

public class BertOnnxExporterTests
{
    private static (BertConfig Config, BertParameterLayout Layout, float[] Parameters) Model(Architecture arch, int heads, HeadKind head = HeadKind.Classification,
        int labels = 3, int seed = 1, float std = 0.1f)
    {
        var config = new BertConfig(arch, heads, vocabSize: 97, head, labels, maxPositions: 160);
        var layout = new BertParameterLayout(config);
        return (config, layout, RandomBertWeights.Create(layout, seed, std));
    }

    /// <summary>Random ids, token types and per-example lengths (padding after each example's length).</summary>
    private static (long[] Ids, long[] Mask, long[] Types) Inputs(int batch, int seq, int vocab, int seed, bool mixedLengths)
    {
        var random = new Random(seed);
        var ids = new long[batch * seq];
        var mask = new long[batch * seq];
        var types = new long[batch * seq];
        for (int b = 0; b < batch; b++)
        {
            int length = mixedLengths ? 1 + random.Next(seq) : seq;
            if (b == 0) length = seq; // at least one full row
            for (int t = 0; t < seq; t++)
            {
                bool real = t < length;
                ids[b * seq + t] = real ? random.Next(1, vocab) : 0;
                mask[b * seq + t] = real ? 1 : 0;
                types[b * seq + t] = real && t >= length / 2 ? 1 : 0;
            }
        }
        return (ids, mask, types);
    }

    private static float[] RunOnnx(byte[] model, long[] ids, long[] mask, long[] types, int batch, int seq, int threads = 1)
    {
        using var runner = new OnnxRunner(model, new OnnxRunnerOptions { IntraOpThreads = threads });
        using var buffer = runner.CreateBuffer(batch, seq);
        ids.CopyTo(buffer.InputIds, 0);
        mask.CopyTo(buffer.AttentionMask, 0);
        types.CopyTo(buffer.TokenTypeIds, 0);
        runner.Run(buffer);
        return buffer.Logits.ToArray();
    }

    [Theory]
    [InlineData(Precision.Fp32, false)]
    [InlineData(Precision.Int8, false)]
    [InlineData(Precision.Int8, true)]
    public void ExportedModel_RunsOverBatchesAndLengths(Precision precision, bool perChannel)
    {
        var (config, layout, p) = Model(new Architecture(2, 48, 64), heads: 4);
        var bytes = BertOnnxExporter.ToBytes(config, layout, p, new OnnxExportOptions { Precision = precision, PerChannel = perChannel });
        using var runner = new OnnxRunner(bytes);
        Assert.Equal(3, runner.Labels);
        foreach (var (batch, seq) in new[] { (1, 1), (1, 128), (3, 17), (8, 64), (8, 128) })
        {
            using var buffer = runner.CreateBuffer(batch, seq);
            var (ids, mask, types) = Inputs(batch, seq, config.VocabSize, batch + seq, mixedLengths: true);
            ids.CopyTo(buffer.InputIds, 0); mask.CopyTo(buffer.AttentionMask, 0); types.CopyTo(buffer.TokenTypeIds, 0);
            Array.Fill(buffer.Logits, float.NaN);
            runner.Run(buffer);
            Assert.Equal(batch * 3, buffer.Logits.Length);
            Assert.All(buffer.Logits, v => Assert.True(float.IsFinite(v)));
        }
    }

    // Architectures with odd head sizes (hidden/heads = 5, 7, 11) and padded batches of mixed lengths.
    // Tolerance: ORT fp32 vs a double-precision scalar forward, |Δ| ≤ 1e-4·(1 + |logit|).
    [Theory]
    [InlineData(1, 20, 8, 4, 1, 9, HeadKind.Classification)]
    [InlineData(2, 21, 30, 3, 4, 13, HeadKind.Classification)]
    [InlineData(3, 44, 72, 4, 5, 32, HeadKind.Regression)]
    [InlineData(2, 132, 140, 12, 3, 24, HeadKind.Classification)]
    public void Fp32Export_MatchesReferenceForward(int layers, int hidden, int ffn, int heads, int batch, int seq, HeadKind head)
    {
        var (config, layout, p) = Model(new Architecture(layers, hidden, ffn), heads, head, seed: layers * 100 + hidden);
        var (ids, mask, types) = Inputs(batch, seq, config.VocabSize, seed: hidden, mixedLengths: true);
        var expected = new ReferenceBert(config, layout, p).Forward(ids, mask, types, batch, seq);
        var actual = RunOnnx(BertOnnxExporter.ToBytes(config, layout, p), ids, mask, types, batch, seq);
        Assert.Equal(batch * config.Labels, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-4 * (1 + Math.Abs(expected[i])), $"logit {i}: ORT {actual[i]}, reference {expected[i]}");
    }

    [Fact]
    public void Fp32Export_PaddingDoesNotChangeLogits()
    {
        // The same example alone and padded inside a longer batch must give the same logits.
        var (config, layout, p) = Model(new Architecture(2, 24, 40), heads: 4);
        var bytes = BertOnnxExporter.ToBytes(config, layout, p);
        long[] ids = [5, 9, 13, 2, 7];
        var alone = RunOnnx(bytes, ids, [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], 1, 5);
        var padded = RunOnnx(bytes, [.. ids, 0, 0, 0, .. new long[] { 3, 4, 5, 6, 7, 8, 9, 10 }],
            [1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1], new long[16], 2, 8);
        for (int i = 0; i < 3; i++) Assert.Equal(alone[i], padded[i], 1e-5f);
    }

    // int8: ORT vs the reference forward with QuantizedLinearForward in every linear layer. Both quantize
    // the same tensors, but fp32 rounding differences upstream can move an activation across a rounding
    // boundary, so elements may differ by a quantization step: |Δ| ≤ 2e-3·(1 + |logit|) here.
    [Theory]
    [InlineData(2, 21, 30, 3, 4, 13, false)]
    [InlineData(2, 48, 64, 4, 3, 20, true)]
    [InlineData(1, 132, 140, 12, 2, 16, false)]
    public void Int8Export_MatchesEngineInt8Simulation(int layers, int hidden, int ffn, int heads, int batch, int seq, bool perChannel)
    {
        var (config, layout, p) = Model(new Architecture(layers, hidden, ffn), heads, seed: 7 + hidden);
        var (ids, mask, types) = Inputs(batch, seq, config.VocabSize, seed: 3, mixedLengths: true);
        var reference = new ReferenceBert(config, layout, p);
        var expected = reference.Forward(ids, mask, types, batch, seq, int8: true, perChannel);
        var fp32 = reference.Forward(ids, mask, types, batch, seq);
        var actual = RunOnnx(BertOnnxExporter.ToBytes(config, layout, p, new OnnxExportOptions { Precision = Precision.Int8, PerChannel = perChannel }),
            ids, mask, types, batch, seq);
        double maxDiffToFp32 = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 2e-3 * (1 + Math.Abs(expected[i])), $"logit {i}: ORT int8 {actual[i]}, simulation {expected[i]}");
            maxDiffToFp32 = Math.Max(maxDiffToFp32, Math.Abs(actual[i] - fp32[i]));
        }
        Assert.True(maxDiffToFp32 > 1e-6, "the int8 graph must actually quantize");
    }

    [Fact]
    public void Int8Export_AgreesWithFp32OnMostPredictions()
    {
        var (config, layout, p) = Model(new Architecture(2, 48, 96), heads: 4, labels: 2, seed: 21, std: 0.2f);
        int batch = 64, seq = 24;
        var (ids, mask, types) = Inputs(batch, seq, config.VocabSize, seed: 9, mixedLengths: true);
        var fp32 = RunOnnx(BertOnnxExporter.ToBytes(config, layout, p), ids, mask, types, batch, seq);
        var int8 = RunOnnx(BertOnnxExporter.ToBytes(config, layout, p, new OnnxExportOptions { Precision = Precision.Int8 }), ids, mask, types, batch, seq);
        int agree = 0;
        for (int b = 0; b < batch; b++)
            if (fp32[2 * b] > fp32[2 * b + 1] == int8[2 * b] > int8[2 * b + 1]) agree++;
        Assert.True(agree >= 0.9 * batch, $"int8 and fp32 argmax agree on {agree}/{batch}");
    }

    [Fact]
    public void FusedAndStandardInt8Forms_GiveTheSameLogits()
    {
        var (config, layout, p) = Model(new Architecture(2, 36, 50), heads: 6);
        var (ids, mask, types) = Inputs(2, 11, config.VocabSize, seed: 4, mixedLengths: true);
        var fused = RunOnnx(BertOnnxExporter.ToBytes(config, layout, p, new OnnxExportOptions { Precision = Precision.Int8, MatMulForm = QuantizedMatMulForm.Fused }), ids, mask, types, 2, 11);
        var standard = RunOnnx(BertOnnxExporter.ToBytes(config, layout, p, new OnnxExportOptions { Precision = Precision.Int8, MatMulForm = QuantizedMatMulForm.Standard }), ids, mask, types, 2, 11);
        for (int i = 0; i < fused.Length; i++) Assert.Equal(fused[i], standard[i], 1e-4f);
    }

    [Fact]
    public void Predict_BatchesAndPadsLikeSingleRuns()
    {
        var (config, layout, p) = Model(new Architecture(1, 24, 32), heads: 4);
        var bytes = BertOnnxExporter.ToBytes(config, layout, p);
        var examples = new List<int[]> { new[] { 4, 5, 6 }, new[] { 7 }, new[] { 8, 9, 10, 11, 12, 13 }, new[] { 14, 15 }, new[] { 3, 3, 3, 3 } };
        using var runner = new OnnxRunner(bytes);
        var batched = runner.Predict(examples, batchSize: 2);
        var single = runner.Predict(examples, batchSize: 1);
        Assert.Equal(examples.Count, batched.Length);
        for (int i = 0; i < examples.Count; i++)
            for (int j = 0; j < 3; j++) Assert.Equal(single[i][j], batched[i][j], 1e-5f);
    }

    [Fact]
    public void Save_WritesAtomicallyAndRejectsMissingDirectory()
    {
        var (config, layout, p) = Model(new Architecture(1, 12, 16), heads: 2);
        var dir = Path.Combine(Path.GetTempPath(), "speedlimit-onnx-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var path = Path.Combine(dir, "model.onnx");
            BertOnnxExporter.Save(config, layout, p, path);
            Assert.Equal(BertOnnxExporter.ToBytes(config, layout, p), File.ReadAllBytes(path));
            Assert.Single(Directory.GetFiles(dir)); // no temp file left
            var ex = Assert.Throws<DirectoryNotFoundException>(() => BertOnnxExporter.Save(config, layout, p, Path.Combine(dir, "missing", "m.onnx")));
            Assert.Contains("does not exist", ex.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Build_RejectsMaskedLmWrongBufferAndUnknownPrecision()
    {
        var mlm = new BertConfig(new Architecture(1, 12, 16), 2, 50, HeadKind.MaskedLm);
        var mlmLayout = new BertParameterLayout(mlm);
        Assert.Contains("classification and regression", Assert.Throws<ArgumentException>(() =>
            BertOnnxExporter.Build(mlm, mlmLayout, new float[mlmLayout.TotalLength])).Message);
        var (config, layout, p) = Model(new Architecture(1, 12, 16), heads: 2);
        Assert.Contains("needs", Assert.Throws<ArgumentException>(() => BertOnnxExporter.Build(config, layout, p.AsMemory(1))).Message);
        Assert.Contains("fp32 or int8", Assert.Throws<ArgumentException>(() =>
            BertOnnxExporter.Build(config, layout, p, new OnnxExportOptions { Precision = (Precision)7 })).Message);
        Assert.Throws<UserInputException>(() => Precisions.Parse("fp16"));
        Assert.Contains("not divisible", Assert.Throws<ArgumentException>(() => new BertConfig(new Architecture(1, 130, 16), 12, 50, HeadKind.Classification)).Message);
    }

    [Fact]
    public void Runner_RejectsGarbageModel()
    {
        var ex = Assert.Throws<InvalidDataException>(() => new OnnxRunner([1, 2, 3, 4]));
        Assert.Contains("could not load", ex.Message);
    }
}
