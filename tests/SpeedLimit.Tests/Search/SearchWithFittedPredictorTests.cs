using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

/// <summary>The search wired to the project's real latency predictor, fitted on synthetic profiles.</summary>
public class SearchWithFittedPredictorTests
{
    private sealed class SyntheticMeasurer(SyntheticLatency latency, int seed) : ILatencyMeasurer
    {
        private readonly Random _random = new(seed);
        public int Count { get; private set; }
        public LatencyRecord Measure(Architecture a, CancellationToken cancellation)
        {
            Count++;
            double ms = latency.MeasureMs(a, _random);
            return new LatencyRecord(a.Layers, a.Hidden, a.Ffn, SearchSpace.Demo.Heads, Precision.Int8, 1, 128,
                ms, ms * 1.05, ms, ms * 0.97, 20, "synthetic cpu", 1, "synthetic", DateTimeOffset.UnixEpoch);
        }
    }

    [Fact]
    public void WinnersMeetTheirBoundsByMeasurementAndMeasurementsFeedTheMargin()
    {
        var latency = new SyntheticLatency(noiseSigma: 0.02);
        var space = SearchSpace.Demo;
        var records = latency.Sample(space, 120, new Random(3));
        var fit = LatencyPredictorFitter.Fit(records, new LatencyFitOptions { Model = LatencyModelKind.Features, Seed = 3 });
        var predictor = fit.Predictor;

        var truth = space.Enumerate().Select(latency.TrueMs).Order().ToList();
        double[] bounds = [truth[truth.Count / 4], truth[truth.Count / 2], truth[3 * truth.Count / 4]];
        var def = new SearchDefinition("fake", Precision.Int8, space, bounds, 5, "fake budget",
            new SearchOptions { Generations = 4, CandidatesPerGeneration = 8 });

        var fed = new List<LatencyRecord>();
        var measurer = new SyntheticMeasurer(latency, 5);
        var search = new EvolutionarySearch(predictor, new SmoothEvaluator(), measurer)
        {
            OnMeasured = fed.Add,
        };
        var result = search.Run(def);

        Assert.Equal(measurer.Count, fed.Count);
        Assert.True(measurer.Count >= bounds.Length);
        foreach (var b in result.Bounds)
        {
            Assert.True(b.Winner is not null, $"bound {b.BoundMs:F2} ms: {b.Note}");
            Assert.True(b.Verified, b.Note);
            Assert.True(b.Winner.MeasuredMs <= b.BoundMs, $"{b.Winner.Arch} measured {b.Winner.MeasuredMs} ms over {b.BoundMs} ms");
            Assert.All(b.Visited, a => Assert.True(predictor.Model.PredictOne(a) * (1 + b.RelativeMargin) <= b.BoundMs + 1e-9));
        }
        // Looser bounds never pick a worse verified model than tighter ones (shared cache, nested A*).
        for (int i = 1; i < result.Bounds.Count; i++)
            Assert.True(result.Bounds[i].Winner!.Metric >= result.Bounds[i - 1].Winner!.Metric);
    }
}
