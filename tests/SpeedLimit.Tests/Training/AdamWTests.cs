using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Tests.Training;

public class AdamWTests
{
    private static float[] RandomArray(Random rng, int n, double scale) =>
        Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();

    private static TrainingOptions Options() => new() { Beta1 = 0.9f, Beta2 = 0.98f, Epsilon = 1e-6f, WeightDecay = 0.1f };

    /// <summary>Decay on the first third and on a middle stripe; odd sizes exercise the vector tail.</summary>
    private static ParameterRange[] Ranges(int n) => [new(0, n / 3), new(n / 2, n / 5)];

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(16)]
    [InlineData(33)]
    [InlineData(67)]
    [InlineData(255)]
    [InlineData(1001)]
    public void VectorUpdate_MatchesScalarTwin_OverSeveralSteps(int n)
    {
        var rng = new Random(n);
        var p1 = RandomArray(rng, n, 1);
        var p2 = (float[])p1.Clone();
        var fast = new AdamW(n, Ranges(n), Options());
        var twin = new AdamW(n, Ranges(n), Options()) { ForceScalar = true };
        for (int step = 0; step < 6; step++)
        {
            var g = RandomArray(rng, n, 0.5);
            float lr = 1e-2f * (step + 1);
            fast.Step(p1, g, lr);
            twin.Step(p2, g, lr);
        }
        // same operation order, no FMA contraction: agreement to float rounding (stated 1e-6 relative)
        for (int i = 0; i < n; i++)
            Assert.True(Math.Abs(p1[i] - p2[i]) <= 1e-6f * Math.Max(1f, Math.Abs(p2[i])), $"p[{i}] {p1[i]} vs {p2[i]}");
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(twin.FirstMoment[i], fast.FirstMoment[i], 1e-7f);
            Assert.Equal(twin.SecondMoment[i], fast.SecondMoment[i], 1e-7f);
        }
    }

    [Fact]
    public void MatchesPyTorchFormulaInDouble()
    {
        // torch.optim.AdamW: p *= 1 - lr*wd; m,v EMA; p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
        const int n = 37;
        var rng = new Random(11);
        var p = RandomArray(rng, n, 1);
        var pd = p.Select(v => (double)v).ToArray();
        var md = new double[n]; var vd = new double[n];
        var ranges = Ranges(n);
        bool Decayed(int i) => ranges.Any(r => i >= r.Offset && i < r.Offset + r.Length);
        var opt = new AdamW(n, ranges, Options());
        double b1 = 0.9f, b2 = 0.98f, eps = 1e-6f, wd = 0.1f;
        for (int t = 1; t <= 5; t++)
        {
            var g = RandomArray(rng, n, 1);
            float lr = 3e-3f;
            opt.Step(p, g, lr);
            for (int i = 0; i < n; i++)
            {
                if (Decayed(i)) pd[i] *= 1 - lr * wd;
                md[i] = b1 * md[i] + (1 - b1) * g[i];
                vd[i] = b2 * vd[i] + (1 - b2) * g[i] * g[i];
                double bc1 = 1 - Math.Pow(b1, t), bc2 = 1 - Math.Pow(b2, t);
                pd[i] -= lr / bc1 * md[i] / (Math.Sqrt(vd[i]) / Math.Sqrt(bc2) + eps);
            }
        }
        for (int i = 0; i < n; i++) Assert.True(Math.Abs(p[i] - pd[i]) < 2e-6, $"p[{i}] {p[i]} vs double {pd[i]}");
        Assert.Equal(5, opt.StepCount);
    }

    [Fact]
    public void WeightDecay_OnlyInsideDecayedRanges()
    {
        const int n = 50;
        var p = Enumerable.Repeat(2f, n).ToArray();
        var opt = new AdamW(n, [new ParameterRange(10, 20)], Options());
        opt.Step(p, new float[n], 0.5f); // zero gradient: only decay moves weights
        for (int i = 0; i < n; i++)
            Assert.Equal(i is >= 10 and < 30 ? 2f * (1 - 0.5f * 0.1f) : 2f, p[i]);
    }

    [Fact]
    public void ForLayout_DecaysWeightsButNotBiasesOrLayerNorm()
    {
        var config = new BertConfig(new Architecture(1, 12, 20), 3, 30, HeadKind.Classification, maxPositions: 8);
        var layout = new BertParameterLayout(config);
        var p = Enumerable.Repeat(1f, (int)layout.TotalLength).ToArray();
        var opt = AdamW.ForLayout(layout, Options());
        opt.Step(p, new float[p.Length], 1f);
        foreach (var t in layout.Tensors)
        {
            float expected = t.IsDecayed ? 0.9f : 1f;
            Assert.All(p.AsSpan((int)t.Offset, (int)t.Length).ToArray(), v => Assert.Equal(expected, v));
        }
        Assert.Contains(layout.Tensors, t => !t.IsDecayed && t.Name.EndsWith(".bias", StringComparison.Ordinal));
        Assert.Contains(layout.Tensors, t => !t.IsDecayed && t.Name.Contains("LayerNorm.weight", StringComparison.Ordinal));
    }

    [Fact]
    public void RestoredState_ContinuesExactlyLikeTheOriginal()
    {
        const int n = 101;
        var rng = new Random(5);
        var p = RandomArray(rng, n, 1);
        var grads = Enumerable.Range(0, 5).Select(_ => RandomArray(rng, n, 1)).ToArray();
        var a = new AdamW(n, Ranges(n), Options());
        for (int s = 0; s < 3; s++) a.Step(p, grads[s], 1e-2f);
        var pResumed = (float[])p.Clone();
        var b = new AdamW(n, Ranges(n), Options());
        b.Restore(a.FirstMoment, a.SecondMoment, a.StepCount);
        for (int s = 3; s < 5; s++) { a.Step(p, grads[s], 1e-2f); b.Step(pResumed, grads[s], 1e-2f); }
        Assert.Equal(p, pResumed);
        Assert.Throws<ArgumentException>(() => b.Restore(new float[3], new float[3], 1));
    }

    [Fact]
    public void RejectsMismatchedSpansAndBadOptions()
    {
        var opt = new AdamW(10, [], Options());
        Assert.Throws<ArgumentException>(() => opt.Step(new float[9], new float[10], 1e-3f));
        Assert.Throws<ArgumentException>(() => opt.Step(new float[10], new float[10], float.NaN));
        Assert.Throws<ArgumentException>(() => new AdamW(10, [new ParameterRange(5, 6)], Options()));
        Assert.Throws<ArgumentException>(() => new AdamW(10, [], new TrainingOptions { Beta2 = 1f }));
    }
}
