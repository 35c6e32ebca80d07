namespace SpeedLimit;

/// <summary>The one median/quantile helper (latency summaries, predictor residuals, data percentiles).</summary>
internal static class Statistics
{
    /// <summary>Median; the mean of the two middle values for an even count.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var s = values.Order().ToArray();
        if (s.Length == 0) throw new ArgumentException("median of no values");
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    /// <summary>Nearest-rank quantile of already sorted values: the smallest value with at least q·n values at or below it.</summary>
    public static double NearestRank(IReadOnlyList<double> sorted, double q)
    {
        if (sorted.Count == 0) throw new ArgumentException("quantile of no values");
        if (!(q >= 0 && q <= 1)) throw new ArgumentException($"quantile {q} must be in [0, 1]");
        return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];
    }
}
