using SpeedLimit.Kernels;
using SpeedLimit.Model;
using SpeedLimit.Onnx;
using SpeedLimit.Quantization;

namespace SpeedLimit.Tests.Quantization;

public class Int8SimulationTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GemmPathMatchesExactIntegerReference(bool perChannel)
    {
        var config = new BertConfig(new Architecture(1, 24, 40), 4, 30, HeadKind.Classification, maxPositions: 16);
        var model = BertModel.CreateRandom(config, 1, std: 0.3f);
        var sim = new Int8Simulation(model, perChannel);
        var rng = new Random(2);
        int rows = 7;
        var x = Enumerable.Range(0, rows * 24).Select(_ => (float)(rng.NextDouble() * 4 - 1.5)).ToArray();
        string w = BertParameterLayout.Names.Intermediate(0, "weight"), b = BertParameterLayout.Names.Intermediate(0, "bias");
        var y = new float[rows * 40];
        sim.Forward(w, x, model.Tensor(b), y, rows, 1);
        var reference = new float[rows * 40];
        DynamicQuantization.QuantizedLinearForward(x, rows, 24, model.Tensor(w), 40, model.Tensor(b), reference, perChannel);
        for (int i = 0; i < y.Length; i++) Assert.Equal(reference[i], y[i], 1e-5f);
    }

    [Fact]
    public void Int8LogitsStayCloseToFp32AndCoverEveryExportedLinear()
    {
        var config = new BertConfig(new Architecture(2, 32, 48), 4, 40, HeadKind.Classification, labels: 3, maxPositions: 16);
        var model = BertModel.CreateRandom(config, 3, std: 0.1f);
        var sim = new Int8Simulation(model);
        // 6 per layer + pooler + classifier
        Assert.Equal(2 * 6 + 2, model.Layout.Tensors.Count(t => sim.Covers(t.Name)));
        var rng = new Random(4);
        var ids = Enumerable.Range(0, 4 * 10).Select(_ => rng.Next(1, 40)).ToArray();
        var input = EncoderInput.Unpadded(4, 10, ids);
        var fp32 = model.Forward(input).ToArray();
        var int8 = model.Forward(input, int8: sim).ToArray();
        Assert.NotEqual(fp32, int8); // quantization does change the numbers
        double maxAbs = fp32.Max(Math.Abs);
        for (int i = 0; i < fp32.Length; i++) Assert.True(Math.Abs(fp32[i] - int8[i]) <= 0.05 * maxAbs + 1e-3, $"logit {i}: fp32 {fp32[i]} int8 {int8[i]}");
    }

    public static IEnumerable<object[]> IntegerPaths() => Int8Gemm.SupportedPaths.Select(p => new object[] { p });

    /// <summary>
    /// The integer kernels against the earlier simulation (integer products through the fp32 GEMM), bit for bit,
    /// on whole models: logits and every hidden state. Every depth here is at most 512, so 255·64·K < 2^24 and the
    /// float products were exact too — the two must then agree exactly, padded positions and per-channel scales included.
    /// </summary>
    [Theory]
    [MemberData(nameof(IntegerPaths))]
    public void IntegerKernelsMatchTheFloatProductSimulationBitForBitOnWholeModels(Int8GemmPath path)
    {
        (Architecture Arch, int Heads, HeadKind Head, int Batch, int Seq, bool PerChannel)[] cases =
        [
            (new(1, 24, 40), 4, HeadKind.Classification, 3, 9, false),
            (new(2, 132, 140), 12, HeadKind.Classification, 4, 33, true),
            (new(3, 55, 64), 5, HeadKind.Regression, 5, 17, false),
            (new(1, 264, 512), 12, HeadKind.Classification, 2, 64, true),
        ];
        foreach (var (arch, heads, head, batch, seq, perChannel) in cases)
        {
            var config = new BertConfig(arch, heads, 97, head, labels: 3, maxPositions: 80);
            var model = new BertModel(config, RandomBertWeights.Create(new BertParameterLayout(config), arch.Hidden, std: 0.1f)) { Threads = 2 };
            var input = PaddedInput(config, batch, seq, new Random(arch.Ffn));
            var reference = model.Forward(input, int8: new Int8Simulation(model, perChannel, Int8GemmPath.Auto, floatProducts: true)).ToArray();
            var referenceHidden = Enumerable.Range(0, arch.Layers + 1).Select(i => model.HiddenState(i).ToArray()).ToArray();
            var integer = model.Forward(input, int8: new Int8Simulation(model, perChannel, path, floatProducts: false)).ToArray();
            AssertBitEqual(reference, integer, $"{path} {arch} logits");
            for (int i = 0; i <= arch.Layers; i++) AssertBitEqual(referenceHidden[i], model.HiddenState(i).ToArray(), $"{path} {arch} hidden state {i}");
            Assert.NotEqual(model.Forward(input).ToArray(), integer); // and the int8 path did run
        }
    }

    internal static EncoderInput PaddedInput(BertConfig config, int batch, int seq, Random random)
    {
        var ids = new int[batch * seq]; var types = new int[batch * seq]; var mask = new int[batch * seq];
        for (int b = 0; b < batch; b++)
        {
            int length = b == 0 ? seq : 1 + random.Next(seq);
            for (int t = 0; t < length; t++)
            {
                ids[b * seq + t] = random.Next(1, config.VocabSize);
                types[b * seq + t] = t >= length / 2 ? 1 : 0;
                mask[b * seq + t] = 1;
            }
        }
        return new EncoderInput(batch, seq, ids, types, mask);
    }

    internal static void AssertBitEqual(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R}");
    }
}
