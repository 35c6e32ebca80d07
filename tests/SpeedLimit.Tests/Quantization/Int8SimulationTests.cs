using SpeedLimit.Model;
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
}
