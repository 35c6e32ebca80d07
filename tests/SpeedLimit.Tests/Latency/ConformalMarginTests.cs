using SpeedLimit.Latency.Predictors;

namespace SpeedLimit.Tests.Latency;

public class ConformalMarginTests
{
    private static double Normal(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    [Theory]
    [InlineData(0.9, 40)]
    [InlineData(0.95, 60)]
    public void HoldsNominalCoverageOverManySeeds(double confidence, int calibration)
    {
        // Split-conformal guarantee: E[coverage] ∈ [c, c + 1/(n+1)] for exchangeable residuals.
        // Averaged over 400 seeds × 500 fresh points the Monte-Carlo error is ~0.002; tolerance 0.01.
        const int seeds = 400, fresh = 500;
        double total = 0;
        for (int seed = 0; seed < seeds; seed++)
        {
            var rng = new Random(seed);
            // measured = predicted · (1 + ε), ε skewed (log-normal-ish) to avoid a symmetric special case.
            double Residual() => Math.Exp(0.04 * Normal(rng)) - 1 + 0.01;
            var margin = new ConformalMargin(confidence, Enumerable.Range(0, calibration).Select(_ => Residual()).ToList());
            int covered = 0;
            for (int i = 0; i < fresh; i++) if (Residual() <= margin.Margin) covered++;
            total += covered / (double)fresh;
        }
        double mean = total / seeds;
        Assert.InRange(mean, confidence - 0.01, confidence + 1.0 / (calibration + 1) + 0.01);
    }

    [Fact]
    public void UpdatesWhenMeasurementsArriveAndNeedsEnoughResiduals()
    {
        var margin = new ConformalMargin(0.9, Enumerable.Repeat(0.01, 9));
        Assert.Equal(0.01, margin.Margin, 12);
        // 10 residuals: ⌈11·0.9⌉ = 10 → the largest.
        margin.Add(0.2);
        Assert.Equal(0.2, margin.Margin, 12);
        var ex = Assert.Throws<ArgumentException>(() => new ConformalMargin(0.9, Enumerable.Repeat(0.0, 8)));
        Assert.Contains("at least 9", ex.Message);
        Assert.Equal(9, ConformalMargin.MinimumCount(0.9));
        Assert.Equal(19, ConformalMargin.MinimumCount(0.95));
    }

    [Fact]
    public void NeverNegative()
    {
        var margin = new ConformalMargin(0.9, Enumerable.Range(0, 20).Select(i => -0.1 - i * 0.001));
        Assert.Equal(0, margin.Margin);
    }
}
