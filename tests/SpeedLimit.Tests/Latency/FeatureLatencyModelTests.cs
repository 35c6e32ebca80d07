using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Latency;

public class FeatureLatencyModelTests
{
    [Fact]
    public void NnlsMatchesUnconstrainedSolutionWhenItIsPositiveAndClampsOtherwise()
    {
        // b = 2·x0 + 3·x1 exactly: NNLS must return (2, 3).
        var rng = new Random(5);
        int rows = 30;
        var a = new double[rows * 2];
        var b = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            a[2 * r] = rng.NextDouble(); a[2 * r + 1] = rng.NextDouble();
            b[r] = 2 * a[2 * r] + 3 * a[2 * r + 1];
        }
        var x = Nnls.Solve(a, b, rows, 2);
        Assert.Equal(2, x[0], 6);
        Assert.Equal(3, x[1], 6);
        // b = x0 − x1 with x1 ≥ 0 forced: the best is x1 = 0 and x0 the 1-D least squares fit.
        for (int r = 0; r < rows; r++) b[r] = a[2 * r] - a[2 * r + 1];
        x = Nnls.Solve(a, b, rows, 2);
        Assert.Equal(0, x[1]);
        double num = 0, den = 0;
        for (int r = 0; r < rows; r++) { num += a[2 * r] * b[r]; den += a[2 * r] * a[2 * r]; }
        Assert.Equal(num / den, x[0], 6);
    }

    [Fact]
    public void RecoversSyntheticLatencyWithinTwoPercentMape()
    {
        var space = SearchSpace.Paper;
        var synth = new SyntheticLatency(noiseSigma: 0.01);
        var records = synth.Sample(space, 200, new Random(21));
        var model = FeatureLatencyModel.Fit(records.Select(r => r.Arch).ToList(), records.Select(r => r.MedianMs).ToList(),
            LatencyShape.Paper, new FeatureModelOptions());
        var test = space.Enumerate().Where((_, i) => i % 13 == 0).ToArray();
        var pred = new double[test.Length];
        model.PredictMs(test, pred);
        var m = PredictionMetrics.From(test.Select(synth.TrueMs).ToList(), pred);
        Assert.True(m.MapePercent < 2, $"feature model MAPE {m.MapePercent:0.00} %");
        Assert.True(m.MaxAbsErrorPercent < 10, $"feature model max error {m.MaxAbsErrorPercent:0.00} %");
        Assert.All(model.Weights, w => Assert.True(w >= 0));
    }

    [Fact]
    public void PredictionsGrowWithEveryDimension()
    {
        var records = new SyntheticLatency(0.02).Sample(SearchSpace.Paper, 60, new Random(8));
        var model = FeatureLatencyModel.Fit(records.Select(r => r.Arch).ToList(), records.Select(r => r.MedianMs).ToList(),
            LatencyShape.Paper, new FeatureModelOptions());
        var a = new Architecture(2, 240, 500);
        double p = model.PredictOne(a);
        Assert.True(model.PredictOne(a with { Layers = 3 }) >= p);
        Assert.True(model.PredictOne(a with { Hidden = 252 }) >= p);
        Assert.True(model.PredictOne(a with { Ffn = 512 }) >= p);
    }

    [Fact]
    public void OperatorFeaturesCountTheInt8Matmuls()
    {
        Span<double> phi = stackalloc double[OperatorFeatures.Count];
        OperatorFeatures.Compute(new Architecture(2, 120, 200), LatencyShape.Paper, 1, phi);
        Assert.Equal(2.0 * 128 * 4 * 120 * 120, phi[4]);     // Q, K, V, output projections
        Assert.Equal(2.0 * 128 * 2 * 120 * 200, phi[5]);     // FFN up and down
        OperatorFeatures.Compute(new Architecture(2, 120, 200), LatencyShape.Paper, 16, phi);
        Assert.Equal(2.0 * 128 * 4 * 128 * 128, phi[4]);     // 120 rounds up to 128
    }

    [Fact]
    public void RobustFitResistsDisturbedMeasurements()
    {
        // Every 8th measurement slowed by 40 % (another job on the core): the reweighted fit stays
        // close to the true function, plain relative least squares drifts.
        var space = SearchSpace.Paper;
        var synth = new SyntheticLatency(0.005);
        var records = synth.Sample(space, 200, new Random(31));
        var archs = records.Select(r => r.Arch).ToList();
        var ms = records.Select((r, i) => i % 8 == 0 ? r.MedianMs * 1.4 : r.MedianMs).ToList();
        var test = space.Enumerate().Where((_, i) => i % 17 == 0).ToArray();
        var truth = test.Select(synth.TrueMs).ToList();
        double Mape(int iterations)
        {
            var model = FeatureLatencyModel.Fit(archs, ms, LatencyShape.Paper, new FeatureModelOptions { RobustIterations = iterations, Paddings = [16] });
            var pred = new double[test.Length];
            model.PredictMs(test, pred);
            return PredictionMetrics.From(truth, pred).MapePercent;
        }
        double robust = Mape(15), plain = Mape(0);
        Assert.True(robust < 1.5, $"robust MAPE {robust:0.00} %");
        Assert.True(robust < plain, $"robust {robust:0.00} % vs plain {plain:0.00} %");
    }
}
