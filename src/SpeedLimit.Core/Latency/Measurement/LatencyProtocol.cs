using System.Globalization;

namespace SpeedLimit.Latency;

/// <summary>
/// How a latency is measured, identically for profiling, verification and the report: warm-up by
/// time and count; sampling by time and count in rounds interleaved across the models of a
/// session and a fixed reference model (so a change of the machine's speed shows as drift in the
/// reference and the session is re-measured or flagged); every run kept; quantile intervals at
/// <see cref="Confidence"/>. With a bound, a model whose verdict is still uncertain after the
/// minimum keeps being sampled up to <see cref="MaxSeconds"/> / <see cref="MaxRuns"/>.
/// Times count the timed runs themselves (on the protocol's clock), not the overhead around them.
/// </summary>
/// <param name="Name">Shown in records and reports ("screening", "verification", …).</param>
/// <param name="WarmupSeconds">Untimed warm-up of each model: at least this long…</param>
/// <param name="WarmupRuns">…and at least this many runs.</param>
/// <param name="MinSeconds">Sampling of each model: at least this much timed run time…</param>
/// <param name="MinRuns">…and at least this many runs.</param>
/// <param name="RoundRuns">Runs of one model (and of the reference) per interleaved round.</param>
/// <param name="Confidence">Two-sided confidence of the quantile intervals.</param>
/// <param name="DriftTolerance">Largest relative spread of the reference's per-round level (its lower quartile) that is not drift.</param>
/// <param name="DriftRetries">Re-measurements of a session whose reference drifted, before its records are flagged.</param>
/// <param name="MaxSeconds">Sampling limit per model while a bound's verdict is uncertain.</param>
/// <param name="MaxRuns">Run limit per model while uncertain.</param>
public sealed record LatencyProtocol(
    string Name, double WarmupSeconds, int WarmupRuns, double MinSeconds, int MinRuns, int RoundRuns,
    double Confidence = 0.95, double DriftTolerance = 0.10, int DriftRetries = 1, double MaxSeconds = 0, int MaxRuns = 0)
{
    /// <summary>Profiling and finalists: ≥ 100 runs and ≥ 1 s per model; uncertain verdicts up to 3 s.</summary>
    public static LatencyProtocol Screening { get; } = new("screening", WarmupSeconds: 0.2, WarmupRuns: 10, MinSeconds: 1, MinRuns: 100, RoundRuns: 25,
        MaxSeconds: 3, MaxRuns: 200_000);

    /// <summary>Final verification of a winner: ≥ 1,000 runs and ≥ 10 s; uncertain verdicts up to 30 s.</summary>
    public static LatencyProtocol Verification { get; } = new("verification", WarmupSeconds: 1, WarmupRuns: 50, MinSeconds: 10, MinRuns: 1000, RoundRuns: 100,
        MaxSeconds: 30, MaxRuns: 1_000_000);

    /// <summary>Effective limits: without explicit ones, sampling never goes past the minimum.</summary>
    public double LimitSeconds => Math.Max(MaxSeconds, MinSeconds);
    public int LimitRuns => Math.Max(MaxRuns, MinRuns);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public LatencyProtocol Validate()
    {
        if (string.IsNullOrWhiteSpace(Name)) throw new ArgumentException("latency protocol: a name is required");
        if (!(WarmupSeconds >= 0) || WarmupRuns < 0) throw new ArgumentException($"latency protocol '{Name}': warm-up {WarmupSeconds} s / {WarmupRuns} runs must be ≥ 0");
        if (!(MinSeconds >= 0) || !double.IsFinite(MinSeconds)) throw new ArgumentException($"latency protocol '{Name}': minimum sampling time {MinSeconds} s must be ≥ 0");
        if (MinRuns < 10) throw new ArgumentException($"latency protocol '{Name}': at least 10 timed runs per model are needed for quantile intervals (got {MinRuns})");
        if (RoundRuns < 1) throw new ArgumentException($"latency protocol '{Name}': runs per round {RoundRuns} must be at least 1");
        if (!(Confidence > 0.5 && Confidence < 1)) throw new ArgumentException($"latency protocol '{Name}': confidence {Confidence} must lie in (0.5, 1)");
        if (!(DriftTolerance > 0)) throw new ArgumentException($"latency protocol '{Name}': drift tolerance {DriftTolerance} must be positive");
        if (DriftRetries < 0) throw new ArgumentException($"latency protocol '{Name}': drift retries {DriftRetries} must be ≥ 0");
        if (!(MaxSeconds >= 0) || MaxRuns < 0) throw new ArgumentException($"latency protocol '{Name}': limits {MaxSeconds} s / {MaxRuns} runs must be ≥ 0");
        return this;
    }

    /// <summary>One line for records and reports.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Name}: warm-up ≥ {WarmupSeconds:0.###} s & ≥ {WarmupRuns} runs; sample ≥ {MinSeconds:0.###} s & ≥ {MinRuns} runs in rounds of {RoundRuns} interleaved with a reference model; {Confidence:P0} order-statistic intervals; drift tolerance {DriftTolerance:P0}, {DriftRetries} re-measurement(s); uncertain verdicts sampled up to {LimitSeconds:0.###} s / {LimitRuns} runs");

    /// <summary>Parses "screening", "verification" or a preset with overrides "screening:runs=200,seconds=2".</summary>
    public static LatencyProtocol Parse(string text)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(text);
        var parts = text.Split(':', 2);
        var p = parts[0].Trim().ToLowerInvariant() switch
        {
            "screening" => Screening,
            "verification" => Verification,
            _ => throw new UserInputException($"unknown latency protocol '{parts[0]}'; use screening or verification, optionally with overrides like screening:runs=200,seconds=2"),
        };
        if (parts.Length == 1) return p;
        foreach (var kv in parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var pair = kv.Split('=', 2);
            if (pair.Length != 2 || !double.TryParse(pair[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                throw new UserInputException($"latency protocol override '{kv}' is not key=number (e.g. runs=200)");
            p = pair[0].Trim().ToLowerInvariant() switch
            {
                "runs" => p with { MinRuns = (int)v },
                "seconds" => p with { MinSeconds = v },
                "warmup-seconds" => p with { WarmupSeconds = v },
                "warmup-runs" => p with { WarmupRuns = (int)v },
                "round" => p with { RoundRuns = (int)v },
                "confidence" => p with { Confidence = v },
                "drift" => p with { DriftTolerance = v },
                "max-seconds" => p with { MaxSeconds = v },
                "max-runs" => p with { MaxRuns = (int)v },
                _ => throw new UserInputException($"unknown latency protocol setting '{pair[0]}'; use runs, seconds, warmup-seconds, warmup-runs, round, confidence, drift, max-seconds or max-runs"),
            };
        }
        try { return p.Validate(); }
        catch (ArgumentException ex) { throw new UserInputException(ex.Message); }
    }
}

/// <summary>One model under measurement: a single timed run, returning its time in milliseconds on the protocol's clock.</summary>
internal interface ILatencyTarget
{
    double RunMs();
}

/// <summary>What the reference saw in one session.</summary>
/// <param name="RoundLevelsMs">The reference's lower quartile in each round.</param>
/// <param name="DriftPercent">(max − min) / min of the round levels, in percent.</param>
internal sealed record DriftCheck(IReadOnlyList<double> RoundLevelsMs, double DriftPercent, bool Detected);

/// <summary>The outcome of one measurement session: a summary per model, the reference's, and the drift check.</summary>
/// <param name="Extended">Per model: sampled past the minimum because a bound's verdict was uncertain.</param>
internal sealed record MeasurementSession(IReadOnlyList<LatencySummary> Models, IReadOnlyList<bool> Extended, LatencySummary Reference,
    DriftCheck Drift, int Attempts);

/// <summary>Runs the protocol over models and a reference (see <see cref="LatencyProtocol"/>).</summary>
internal static class InterleavedMeasurement
{
    private const int SafetyRuns = 50_000_000;

    public static MeasurementSession Run(IReadOnlyList<ILatencyTarget> models, ILatencyTarget reference, LatencyProtocol protocol,
        LatencyBound? bound = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(reference);
        protocol.Validate();
        if (models.Count == 0) throw new ArgumentException("no models to measure");
        MeasurementSession? last = null;
        for (int attempt = 1; attempt <= 1 + protocol.DriftRetries; attempt++)
        {
            last = RunOnce(models, reference, protocol, bound, attempt, cancel);
            if (!last.Drift.Detected) return last;
        }
        return last!;
    }

    private static MeasurementSession RunOnce(IReadOnlyList<ILatencyTarget> models, ILatencyTarget reference, LatencyProtocol protocol,
        LatencyBound? bound, int attempt, CancellationToken cancel)
    {
        int m = models.Count;
        foreach (var t in models.Append(reference)) WarmUp(t, protocol, cancel);

        var samples = new List<double>[m];
        var seconds = new double[m];
        var extended = new bool[m];
        for (int i = 0; i < m; i++) samples[i] = new List<double>(Math.Min(protocol.MinRuns * 2, 1 << 16));
        var refSamples = new List<double>();
        var levels = new List<double>();
        var active = Enumerable.Range(0, m).ToList();
        var judgedAt = new int[m];
        var round = new double[protocol.RoundRuns];
        int r = 0;
        while (active.Count > 0)
        {
            cancel.ThrowIfCancellationRequested();
            // Reference first, then the active models in an order rotated every round.
            for (int k = 0; k < round.Length; k++) round[k] = reference.RunMs();
            refSamples.AddRange(round);
            var sortedRound = (double[])round.Clone();
            Array.Sort(sortedRound);
            levels.Add(sortedRound[(sortedRound.Length - 1) / 4]);
            for (int j = 0; j < active.Count; j++)
            {
                int i = active[(j + r) % active.Count];
                for (int k = 0; k < protocol.RoundRuns; k++)
                {
                    double t = models[i].RunMs();
                    samples[i].Add(t);
                    seconds[i] += t / 1000;
                }
            }
            r++;
            active.RemoveAll(i =>
            {
                int n = samples[i].Count;
                bool minimum = n >= protocol.MinRuns && seconds[i] >= protocol.MinSeconds;
                if (!minimum) return n >= SafetyRuns; // a model that reports no time at all must still end
                if (bound is null || n >= protocol.LimitRuns || seconds[i] >= protocol.LimitSeconds) return true;
                // Re-judge after every 10 % more runs (sorting every round would be quadratic).
                if (extended[i] && n < judgedAt[i] * 1.1) return false;
                judgedAt[i] = n;
                var sorted = samples[i].ToArray();
                Array.Sort(sorted);
                if (bound.Judge(sorted, protocol.Confidence) != BoundVerdict.Uncertain) return true;
                extended[i] = true;
                return false;
            });
        }
        double lo = levels.Min(), hi = levels.Max();
        double drift = lo > 0 ? (hi - lo) / lo : 0;
        var check = new DriftCheck(levels, 100 * drift, levels.Count >= 2 && drift > protocol.DriftTolerance);
        var summaries = samples.Select(s => LatencySummary.From(s, protocol.Confidence)).ToList();
        return new MeasurementSession(summaries, extended, LatencySummary.From(refSamples, protocol.Confidence), check, attempt);
    }

    private static void WarmUp(ILatencyTarget target, LatencyProtocol protocol, CancellationToken cancel)
    {
        double spent = 0;
        // Bounded even for a model that reports no time at all.
        for (int k = 0; (k < protocol.WarmupRuns || spent < protocol.WarmupSeconds * 1000) && k < protocol.WarmupRuns + 1_000_000; k++)
        {
            if ((k & 63) == 0) cancel.ThrowIfCancellationRequested();
            spent += target.RunMs();
        }
    }
}
