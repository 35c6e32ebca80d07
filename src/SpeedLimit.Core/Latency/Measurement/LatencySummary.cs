namespace SpeedLimit.Latency;

/// <summary>
/// Every timed run of one model, summarised: the quantiles a bound can be set on, each with its
/// distribution-free interval (<see cref="QuantileInterval"/>), and the extremes. Nothing is
/// dropped: the tail a bound is about is kept whole.
/// </summary>
public sealed record LatencySummary(int Runs, double SampledSeconds, double MinMs, double P10Ms, double P50Ms, double P90Ms, double P99Ms,
    double MaxMs, double MeanMs, double TrimmedMeanMs, double Confidence,
    QuantileInterval P50, QuantileInterval P90, QuantileInterval P99)
{
    public static LatencySummary From(IReadOnlyList<double> timesMs, double confidence)
    {
        if (timesMs.Count == 0) throw new ArgumentException("no timed runs to summarise");
        var s = timesMs.ToArray();
        Array.Sort(s);
        int n = s.Length;
        double At(double q) => s[Math.Clamp((int)Math.Ceiling(q * n - 1e-9) - 1, 0, n - 1)];
        int trim = n >= 3 ? Math.Max(1, n / 10) : 0;
        double trimmed = 0;
        for (int i = trim; i < n - trim; i++) trimmed += s[i];
        trimmed /= n - 2 * trim;
        double sum = 0;
        foreach (var t in s) sum += t;
        return new LatencySummary(n, sum / 1000, s[0], At(0.10), At(0.50), At(0.90), At(0.99), s[^1], sum / n, trimmed, confidence,
            QuantileInterval.From(s, 0.50, confidence), QuantileInterval.From(s, 0.90, confidence), QuantileInterval.From(s, 0.99, confidence));
    }

    /// <summary>The interval of a bound statistic.</summary>
    public QuantileInterval Interval(BoundStatistic statistic) => statistic switch
    {
        BoundStatistic.P50 => P50,
        BoundStatistic.P90 => P90,
        BoundStatistic.P99 => P99,
        _ => throw new ArgumentOutOfRangeException(nameof(statistic), statistic, "unknown bound statistic"),
    };
}

/// <summary>How a record was measured: the protocol, where, and what the drift check saw.</summary>
/// <param name="Protocol">The protocol's name and settings, e.g. "screening: warm-up ≥ 0.2 s & 10 runs; ≥ 1 s & 100 runs; rounds of 20; interleaved with reference (1,192,384)".</param>
/// <param name="Isolation">"child process (pid 123, cpu 1, heap limit 256 MiB)", "in process", or "remote http://…".</param>
/// <param name="ReferenceP50Ms">The fixed reference model's median in the same session (normalises across sessions).</param>
/// <param name="DriftPercent">Largest spread of the reference's per-round level, in percent.</param>
/// <param name="Drifted">True when the drift stayed above the protocol's tolerance after its re-measurements.</param>
/// <param name="Attempts">Sessions run (1 + re-measurements after drift).</param>
/// <param name="Extended">True when sampling went on past the minimum because the bound's verdict was uncertain.</param>
public sealed record MeasurementNote(string Protocol, string Isolation, double ReferenceP50Ms, double DriftPercent, bool Drifted,
    int Attempts, bool Extended = false);
