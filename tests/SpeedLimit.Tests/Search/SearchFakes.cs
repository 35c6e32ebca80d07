using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

/// <summary>Latency linear in the work of (e, h, f), so the fastest architecture is known.</summary>
internal sealed class LinearPredictor(double margin = 0.05, double scale = 1.0) : ILatencyPredictor
{
    public int Calls { get; private set; }
    public double RelativeMargin => margin;
    public double PredictMs(Architecture a)
    {
        Calls++;
        return scale * (0.2 + a.Layers * (0.004 * a.Hidden + 0.002 * a.Ffn));
    }
}

/// <summary>Thrown by fakes to simulate a crash of the process mid-search.</summary>
internal sealed class SimulatedCrash(string message) : Exception(message);

/// <summary>
/// Metric = a smooth increasing function of (e, h, f) plus small noise seeded by the candidate
/// seed, so the optimum inside any bound can be found by brute force.
/// </summary>
internal sealed class SmoothEvaluator(int crashAfter = int.MaxValue) : ICandidateEvaluator
{
    public Dictionary<Architecture, int> CallsPerArch { get; } = new();
    public int Calls { get; private set; }

    public static double MetricOf(Architecture a, int seed) =>
        0.5 + 0.06 * Math.Log(a.Layers) + 0.05 * Math.Log(a.Hidden / 16.0) + 0.03 * Math.Log(a.Ffn / 16.0)
        - 0.01 * Math.Pow(Math.Log((double)a.Ffn / (2.0 * a.Hidden)), 2)
        + 0.002 * new Random(seed).NextDouble();

    public CandidateResult Evaluate(Architecture arch, int seed, CancellationToken cancellation)
    {
        if (Calls >= crashAfter) throw new SimulatedCrash($"simulated crash before evaluating {arch}");
        Calls++;
        CallsPerArch[arch] = CallsPerArch.GetValueOrDefault(arch) + 1;
        return new CandidateResult(arch, MetricOf(arch, seed), 0.01);
    }
}

/// <summary>Measures predicted × a per-architecture factor (default 1: the predictor is exact).</summary>
internal sealed class FakeMeasurer(ILatencyPredictor truth, Func<Architecture, double>? factor = null, int crashAfter = int.MaxValue) : ILatencyMeasurer
{
    public List<Architecture> Measured { get; } = new();

    public LatencyRecord Measure(Architecture arch, CancellationToken cancellation)
    {
        if (Measured.Count >= crashAfter) throw new SimulatedCrash($"simulated crash before measuring {arch}");
        Measured.Add(arch);
        double ms = truth.PredictMs(arch) * (factor?.Invoke(arch) ?? 1.0);
        return new LatencyRecord(arch.Layers, arch.Hidden, arch.Ffn, 4, Precision.Int8, 1, 128,
            ms * 0.95, ms, ms, ms * 0.9, 20, "fake cpu", 1, "fake", DateTimeOffset.UnixEpoch); // the bound statistic (p90 by default) is ms
    }
}

internal static class SearchTestData
{
    /// <summary>The demo space: 4 × 7 × 8 = 224 architectures.</summary>
    public static SearchSpace Space => SearchSpace.Demo;

    public static SearchDefinition Definition(double[] bounds, int seed = 7, Func<SearchOptions, SearchOptions>? configure = null, SearchSpace? space = null)
    {
        var options = new SearchOptions { Generations = 4, CandidatesPerGeneration = 6, Parents = 3 };
        if (configure is not null) options = configure(options);
        return new SearchDefinition("fake", Precision.Int8, space ?? Space, bounds, seed, "fake budget", options);
    }

    /// <summary>Brute force: the best architecture inside bound/(1+margin) by the fake metric.</summary>
    public static (Architecture Arch, double Metric, int Count) Optimum(SearchDefinition def, ILatencyPredictor predictor, double bound)
    {
        var inside = def.Space.Enumerate().Where(a => predictor.PredictMs(a) * (1 + predictor.RelativeMargin) <= bound).ToList();
        var best = inside.MaxBy(a => SmoothEvaluator.MetricOf(a, EvolutionarySearch.CandidateSeed(def.Seed, a)))!;
        return (best, SmoothEvaluator.MetricOf(best, EvolutionarySearch.CandidateSeed(def.Seed, best)), inside.Count);
    }

    public static string TempPath(string name) => Path.Combine(Path.GetTempPath(), $"speedlimit-test-{Guid.NewGuid():N}-{name}");

    /// <summary>What must be equal between two runs of the same study (everything but timings).</summary>
    public static string Fingerprint(SearchResult r) => string.Join("\n",
        r.Bounds.Select(b => $"{b.BoundMs}|{b.NarrowedCount}|{b.Exhausted}|{string.Join(";", b.Visited)}|{b.Winner?.Arch}|{b.Verified}|{b.WinnerRank}|{b.Note}|" +
            string.Join(";", b.Generations.Select(g => $"{g.Generation}:{g.Candidates}:{g.Mutations}:{g.FreshSamples}:{g.MutationFallbacks}:{g.BestMetricSoFar:R}"))))
        + "\n" + string.Join(";", r.Candidates.Select(c => $"{c.Order}{c.Arch}{c.Metric:R}/{c.PredictedMs:R}/{c.MeasuredMs:R}/{c.Seed}"))
        + "\n" + string.Join(";", r.Front.Select(c => c.Arch));
}

/// <summary>Collects reports synchronously (Progress&lt;T&gt; would post them to the thread pool).</summary>
internal sealed class ProgressLog : IProgress<SearchProgress>
{
    public List<SearchProgress> Reports { get; } = new();
    public void Report(SearchProgress value) => Reports.Add(value);
}

/// <summary>Cancels a token after a number of evaluations (a user pressing Ctrl+C).</summary>
internal sealed class CancellingEvaluator(CancellationTokenSource source, int cancelAfter) : ICandidateEvaluator
{
    private readonly SmoothEvaluator _inner = new();
    public int Calls => _inner.Calls;
    public CandidateResult Evaluate(Architecture arch, int seed, CancellationToken cancellation)
    {
        var result = _inner.Evaluate(arch, seed, cancellation);
        if (_inner.Calls == cancelAfter) source.Cancel();
        return result;
    }
}

/// <summary>A batch predictor whose one-at-a-time path must not be used for narrowing.</summary>
internal sealed class BatchOnlyPredictor : SpeedLimit.Latency.Predictors.IBatchLatencyPredictor
{
    private readonly LinearPredictor _inner = new();
    public int BatchCalls { get; private set; }
    public double RelativeMargin => _inner.RelativeMargin;
    public double PredictMs(Architecture arch) => throw new InvalidOperationException("narrowing must use the batch path");
    public void PredictMs(ReadOnlySpan<Architecture> archs, Span<double> ms)
    {
        BatchCalls++;
        for (int i = 0; i < archs.Length; i++) ms[i] = _inner.PredictMs(archs[i]);
    }
}
