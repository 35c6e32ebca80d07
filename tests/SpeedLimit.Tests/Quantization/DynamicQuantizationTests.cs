using Microsoft.ML.OnnxRuntime;
using SpeedLimit.Onnx;
using SpeedLimit.Quantization;

namespace SpeedLimit.Tests.Quantization;

public class DynamicQuantizationTests
{
    private static float[] RandomValues(Random random, int n, float scale, float shift = 0f) =>
        Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale + shift).ToArray();

    /// <summary>A one-node graph: x (rows,in) → y (rows,out) through one dynamically quantized linear layer.</summary>
    private static byte[] SingleLayerGraph(QuantizedWeight q, float[] bias, QuantizedMatMulForm form)
    {
        var g = new OnnxGraphBuilder("single_linear");
        var x = g.Input("x", OnnxDataType.Float, "rows", (long)q.InDim);
        var wq = g.Int8("w", [q.InDim, q.OutDim], BertOnnxExporter.Transpose<sbyte>(q.Values, q.OutDim, q.InDim));
        long[] scaleDims = q.PerChannel ? [q.OutDim] : [];
        var scale = g.Float("w_scale", scaleDims, q.Scales);
        var b = g.Float("b", [q.OutDim], bias);
        if (form == QuantizedMatMulForm.Fused)
        {
            var zp = g.Int8("w_zp", scaleDims, new sbyte[q.Scales.Length]);
            g.Node("DynamicQuantizeMatMul", [x, wq, scale, zp, b], output: "y", domain: "com.microsoft");
        }
        else
        {
            var dq = g.NodeMulti("DynamicQuantizeLinear", [x], 3);
            var acc = g.Node("Cast", [g.Node("MatMulInteger", [dq[0], wq, dq[2]])], [new OnnxAttribute("to", Int: 1)]);
            g.Node("Add", [g.Node("Mul", [acc, g.Node("Mul", [dq[1], scale])]), b], output: "y");
        }
        g.Output("y", OnnxDataType.Float, "rows", (long)q.OutDim);
        return OnnxProtoWriter.ToBytes(new OnnxModel(g.Build(), new Dictionary<string, long> { [""] = 17, ["com.microsoft"] = 1 }));
    }

    private static float[] RunOrt(byte[] model, float[] x, int rows, int inDim, int outDim)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        using var input = OrtValue.CreateTensorValueFromMemory(x, [rows, inDim]);
        var y = new float[rows * outDim];
        using var output = OrtValue.CreateTensorValueFromMemory(y, [rows, outDim]);
        using var runOptions = new RunOptions();
        session.Run(runOptions, ["x"], [input], ["y"], [output]);
        return y;
    }

    // Tolerance: the integer sums are exact on both sides, so only the final float rescale and
    // bias add may round differently (ORT may fuse or reorder them): |Δ| ≤ 1e-6 + 1e-5·|y|.
    [Theory]
    [InlineData(1, 1, 1, false, QuantizedMatMulForm.Fused)]
    [InlineData(7, 33, 17, false, QuantizedMatMulForm.Fused)]
    [InlineData(7, 33, 17, true, QuantizedMatMulForm.Fused)]
    [InlineData(128, 132, 140, false, QuantizedMatMulForm.Fused)]
    [InlineData(256, 257, 96, true, QuantizedMatMulForm.Fused)] // large enough for the parallel row split
    [InlineData(19, 64, 31, false, QuantizedMatMulForm.Standard)]
    [InlineData(19, 64, 31, true, QuantizedMatMulForm.Standard)]
    public void QuantizedLinearForward_MatchesOnnxRuntime(int rows, int inDim, int outDim, bool perChannel, QuantizedMatMulForm form)
    {
        var random = new Random(rows * 1000 + inDim * 10 + outDim);
        // Skewed activations (shift) so the zero point is not trivially 128; rows of weights with different ranges for per-channel.
        var x = RandomValues(random, rows * inDim, 3f, 0.7f);
        var w = RandomValues(random, outDim * inDim, 0.2f);
        for (int o = 0; o < outDim; o++)
            for (int k = 0; k < inDim; k++) w[o * inDim + k] *= 1 + o % 5;
        var b = RandomValues(random, outDim, 0.5f);

        var expected = new float[rows * outDim];
        DynamicQuantization.QuantizedLinearForward(x, rows, inDim, w, outDim, b, expected, perChannel);
        var q = DynamicQuantization.QuantizeWeight(w, outDim, inDim, perChannel);
        var actual = RunOrt(SingleLayerGraph(q, b, form), x, rows, inDim, outDim);

        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-6 + 1e-5 * Math.Abs(expected[i]),
                $"element {i}: ORT {actual[i]}, reference {expected[i]}");
    }

    /// <summary>
    /// The engine's integer kernels (every path this CPU has) on one quantized layer against ONNX Runtime, bit for bit:
    /// both compute the int32 sums exactly and round float(acc)·(x_scale·w_scale) and + b the same way.
    /// </summary>
    [Theory]
    [InlineData(1, 1, 1, false, QuantizedMatMulForm.Fused)]
    [InlineData(7, 33, 17, true, QuantizedMatMulForm.Fused)]
    [InlineData(128, 132, 140, false, QuantizedMatMulForm.Fused)]
    [InlineData(64, 512, 264, true, QuantizedMatMulForm.Fused)]
    [InlineData(19, 64, 31, false, QuantizedMatMulForm.Standard)]
    [InlineData(33, 257, 96, true, QuantizedMatMulForm.Standard)]
    public void IntegerKernelLayer_MatchesOnnxRuntimeBitForBit(int rows, int inDim, int outDim, bool perChannel, QuantizedMatMulForm form)
    {
        var config = new SpeedLimit.Model.BertConfig(new SpeedLimit.Architecture(1, inDim, outDim), 1, 5, SpeedLimit.Model.HeadKind.Classification, maxPositions: 4);
        var model = SpeedLimit.Model.BertModel.CreateRandom(config, rows + inDim, std: 0.3f);
        string wName = SpeedLimit.Model.BertParameterLayout.Names.Intermediate(0, "weight"), bName = SpeedLimit.Model.BertParameterLayout.Names.Intermediate(0, "bias");
        var random = new Random(rows * 7 + outDim);
        RandomValues(random, outDim, 0.5f).CopyTo(model.Tensor(bName));
        var x = RandomValues(random, rows * inDim, 3f, 0.7f);
        var q = DynamicQuantization.QuantizeWeight(model.Tensor(wName), outDim, inDim, perChannel);
        var ort = RunOrt(SingleLayerGraph(q, model.Tensor(bName).ToArray(), form), x, rows, inDim, outDim);
        foreach (var path in SpeedLimit.Kernels.Int8Gemm.SupportedPaths)
        {
            var sim = new Int8Simulation(model, perChannel, path, floatProducts: false);
            var y = new float[rows * outDim];
            sim.Forward(wName, x, model.Tensor(bName), y, rows, threads: 2);
            Int8SimulationTests.AssertBitEqual(ort, y, $"{path} vs ORT");
        }
    }

    [Fact]
    public void QuantizeActivations_IsTheScalarQuantizerBitForBit()
    {
        var random = new Random(12);
        // Exact ties x/scale = k + 0.5 (both roundings), both clamps, zero points 0 and 255, and ordinary values.
        foreach (var (scale, zp) in new (float, byte)[] { (0.02f, 131), (1f, 0), (0.5f, 255), (3.7e-3f, 17) })
        {
            var x = RandomValues(random, 3001, 300 * scale, 0f)
                .Concat(Enumerable.Range(-300, 600).Select(i => (i + 0.5f) * scale))
                .Concat([float.MaxValue, -float.MaxValue, 0f, -0f, 255f * scale, -255f * scale]).ToArray();
            var vector = new byte[x.Length];
            DynamicQuantization.QuantizeActivations(x, scale, zp, vector);
            for (int i = 0; i < x.Length; i++)
                Assert.True(vector[i] == DynamicQuantization.QuantizeActivation(x[i], scale, zp),
                    $"x={x[i]:R} scale={scale} zp={zp}: vectorized {vector[i]}, scalar {DynamicQuantization.QuantizeActivation(x[i], scale, zp)}");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void ThreadedActivationQuantization_IsTheOnePassOne(int threads)
    {
        // several parts per thread count, odd lengths, the extremes in different parts, and an all-positive tensor (min 0)
        var random = new Random(30 + threads);
        foreach (int n in new[] { 1, 1000, 65_537, 200_003 })
            foreach (float shift in new[] { 0f, 5f })
            {
                var x = RandomValues(random, n, 3f, shift);
                if (n > 100_000) { x[7] = -9f; x[n - 3] = 11f; }
                var expected = new byte[n];
                var (scale, zp) = DynamicQuantization.ActivationParameters(x);
                DynamicQuantization.QuantizeActivations(x, scale, zp, expected);
                var got = new byte[n];
                var (gotScale, gotZp) = DynamicQuantization.QuantizeActivations(x, got, threads);
                Assert.Equal(scale, gotScale);
                Assert.Equal(zp, gotZp);
                Assert.Equal(expected, got);
            }
    }

    [Fact]
    public void QuantizedLinearForward_IsCloseToFloatLinear()
    {
        // Not bit-exact, but the quantization error must be small relative to the output range.
        var random = new Random(5);
        int rows = 16, inDim = 64, outDim = 32;
        var x = RandomValues(random, rows * inDim, 1f);
        var w = RandomValues(random, outDim * inDim, 0.1f);
        var b = RandomValues(random, outDim, 0.1f);
        var yq = new float[rows * outDim];
        DynamicQuantization.QuantizedLinearForward(x, rows, inDim, w, outDim, b, yq, perChannel: false);
        double maxErr = 0, maxAbs = 0;
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < outDim; o++)
            {
                double y = b[o];
                for (int k = 0; k < inDim; k++) y += x[r * inDim + k] * w[o * inDim + k];
                maxErr = Math.Max(maxErr, Math.Abs(y - yq[r * outDim + o]));
                maxAbs = Math.Max(maxAbs, Math.Abs(y));
            }
        Assert.True(maxErr < 0.03 * maxAbs, $"int8 error {maxErr} vs output range {maxAbs}");
        Assert.True(maxErr > 0, "quantization must change something");
    }

    [Fact]
    public void DynamicQuantizeLinear_MatchesOnnxRuntimeBitForBit()
    {
        var random = new Random(11);
        // Includes exact ties for round-half-even and values at both ends.
        var x = RandomValues(random, 1000, 2f, -0.5f).Concat([0f, 2.55f, -1.275f, 1e-3f]).ToArray();
        var g = new OnnxGraphBuilder("dql");
        var input = g.Input("x", OnnxDataType.Float, (long)x.Length);
        g.NodeMulti("DynamicQuantizeLinear", [input], 3, outputs: ["y", "scale", "zp"]);
        g.Output("y", OnnxDataType.UInt8, (long)x.Length);
        g.Output("scale", OnnxDataType.Float);
        g.Output("zp", OnnxDataType.UInt8);
        var model = OnnxProtoWriter.ToBytes(new OnnxModel(g.Build(), new Dictionary<string, long> { [""] = 17 }));

        using var session = new InferenceSession(model);
        using var xv = OrtValue.CreateTensorValueFromMemory(x, [x.Length]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, ["x"], [xv], ["y", "scale", "zp"]);
        var ortY = outputs[0].GetTensorDataAsSpan<byte>().ToArray();
        float ortScale = outputs[1].GetTensorDataAsSpan<float>()[0];
        byte ortZp = outputs[2].GetTensorDataAsSpan<byte>()[0];

        var y = new byte[x.Length];
        var (scale, zp) = DynamicQuantization.DynamicQuantizeLinear(x, y);
        Assert.Equal(ortScale, scale);
        Assert.Equal(ortZp, zp);
        Assert.Equal(ortY, y);
    }

    [Fact]
    public void ActivationParameters_FollowTheOnnxFormula()
    {
        var (scale, zp) = DynamicQuantization.ActivationParameters([-1f, 0.5f, 3f]);
        Assert.Equal(4f / 255f, scale);
        Assert.Equal((byte)Math.Round(1f / (4f / 255f), MidpointRounding.ToEven), zp);
        // All-positive input: range starts at 0, zero point 0. All zeros: scale 1.
        Assert.Equal((byte)0, DynamicQuantization.ActivationParameters([1f, 2f]).ZeroPoint);
        Assert.Equal(1f, DynamicQuantization.ActivationParameters([0f, 0f]).Scale);
    }

    [Fact]
    public void QuantizeWeight_IsSymmetricPerTensorAndPerChannel()
    {
        // The reduced range [−64, 64] (ONNX Runtime's reduce_range): scale = max|w| / 64.
        Assert.Equal(64, DynamicQuantization.WeightQMax);
        float[] w = [0.5078125f, -1f, 0.25f, 0.1f, -0.2f, 0.05f];
        var perTensor = DynamicQuantization.QuantizeWeight(w, 2, 3, perChannel: false);
        Assert.Equal([1f / 64f], perTensor.Scales);
        Assert.Equal((sbyte)-64, perTensor.Values[1]);
        Assert.Equal((sbyte)32, perTensor.Values[0]); // 0.5078125 · 64 = 32.5 rounds half to even → 32
        var perChannel = DynamicQuantization.QuantizeWeight(w, 2, 3, perChannel: true);
        Assert.Equal(2, perChannel.Scales.Length);
        Assert.Equal(0.2f / 64f, perChannel.Scales[1]);
        Assert.Equal((sbyte)-64, perChannel.Values[4]);
        Assert.Throws<ArgumentException>(() => DynamicQuantization.QuantizeWeight(w, 4, 3, false));
    }
}
