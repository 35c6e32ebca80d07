using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Tests.Training;

public class GradientUtilitiesTests
{
    private static float[] RandomArray(Random rng, int n, double scale) =>
        Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();

    private static double RefNorm(float[] g) => Math.Sqrt(g.Sum(v => (double)v * v));

    [Fact]
    public void GlobalNorm_MatchesDoubleReference()
    {
        var g = RandomArray(new Random(1), 30_011, 3);
        Assert.Equal(RefNorm(g), GradientUtilities.GlobalL2Norm(g), 1e-4);
        Assert.Equal(0, GradientUtilities.GlobalL2Norm([]));
        // squares overflow float but the norm is representable
        Assert.Equal(Math.Sqrt(2) * 1e20, GradientUtilities.GlobalL2Norm([1e20f, 1e20f]), 1e20 * 1e-6);
    }

    [Fact]
    public void Clip_ScalesToMaxNormOnlyWhenAbove()
    {
        var g = RandomArray(new Random(2), 1000, 1);
        double before = RefNorm(g);
        var clipped = (float[])g.Clone();
        double reported = GradientUtilities.ClipGlobalNorm(clipped, 1.0);
        Assert.Equal(before, reported, 1e-4);
        Assert.Equal(1.0, RefNorm(clipped), 1e-4);
        // direction kept
        Assert.Equal(g[17] / g[3], clipped[17] / clipped[3], 1e-4f);

        var small = (float[])clipped.Clone();
        GradientUtilities.ClipGlobalNorm(small, 5.0);
        Assert.Equal(clipped, small);
        Assert.Throws<ArgumentException>(() => GradientUtilities.ClipGlobalNorm(small, 0));
    }

    [Fact]
    public void Clip_LeavesNonFiniteBufferAlone()
    {
        float[] g = [1, float.NaN, 3];
        Assert.True(double.IsNaN(GradientUtilities.ClipGlobalNorm(g, 1)));
        Assert.Equal(1f, g[0]);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void FindNonFinite_NamesTheTensor(float bad)
    {
        var config = new BertConfig(new Architecture(2, 24, 40), 4, 50, HeadKind.Classification, maxPositions: 16);
        var layout = new BertParameterLayout(config);
        var g = RandomArray(new Random(3), (int)layout.TotalLength, 1);
        Assert.Null(GradientUtilities.FindNonFinite(g, layout));
        GradientUtilities.EnsureFinite(g, layout);

        var target = layout[BertParameterLayout.Names.Intermediate(1, "weight")];
        g[target.Offset + 123] = bad;
        var report = GradientUtilities.FindNonFinite(g, layout);
        Assert.NotNull(report);
        Assert.Equal("bert.encoder.layer.1.intermediate.dense.weight", report.TensorName);
        Assert.Equal(123, report.ElementIndex);
        Assert.Equal(target.Offset + 123, report.FlatIndex);
        var ex = Assert.Throws<NonFiniteException>(() => GradientUtilities.EnsureFinite(g, layout));
        Assert.Contains("bert.encoder.layer.1.intermediate.dense.weight", ex.Message);
    }

    [Fact]
    public void FindNonFinite_FirstAndLastElements_AndHugeFiniteValuesAreFine()
    {
        var g = new float[20_000];
        g[^1] = float.NaN;
        Assert.Equal(19_999, GradientUtilities.FindNonFinite(g)!.FlatIndex);
        g[^1] = 0; g[0] = float.PositiveInfinity;
        Assert.Equal("buffer", GradientUtilities.FindNonFinite(g)!.TensorName);
        Assert.Equal(0, GradientUtilities.FindNonFinite(g)!.FlatIndex);
        Array.Fill(g, 3e38f); // the sum overflows, no element is non-finite
        Assert.Null(GradientUtilities.FindNonFinite(g));
    }

    [Fact]
    public void Accumulation_AveragesMicroBatches()
    {
        float[] g = [3, 6, -9];
        GradientUtilities.ScaleForAccumulation(g, 3);
        Assert.Equal([1f, 2f, -3f], g);
        var acc = new GradientAccumulator(3);
        Assert.Equal(1f / 3, acc.LossScale);
        Assert.Equal([false, false, true, false, false, true], Enumerable.Range(0, 6).Select(_ => acc.CompleteMicroBatch()).ToArray());
        Assert.Throws<ArgumentException>(() => new GradientAccumulator(0));
    }
}
