namespace SpeedLimit.Latency;

/// <summary>
/// A distribution-free confidence interval for the q-quantile ξ of a latency distribution, from
/// order statistics. With n independent runs, the number B of runs at or below ξ is Binomial(n, q),
/// so the k-th smallest run X₍ₖ₎ is above ξ with probability P(B ≤ k−1). The lower limit is the
/// largest X₍ₗ₎ with P(B ≤ l−1) ≤ α/2, the upper the smallest X₍ᵤ₎ with P(B ≥ u) ≤ α/2
/// (α = 1 − confidence), so P(X₍ₗ₎ ≤ ξ ≤ X₍ᵤ₎) ≥ 1 − α whatever the distribution (bimodal, heavy
/// tail). Too few runs leave a side open: <see cref="LowerMs"/> or <see cref="UpperMs"/> is null
/// (e.g. p99 needs ≥ 368 runs for a 95 % upper limit).
/// </summary>
/// <param name="Quantile">q in (0, 1).</param>
/// <param name="EstimateMs">The nearest-rank sample quantile X₍⌈qn⌉₎.</param>
/// <param name="LowerRank">l (1-based), 0 when there is no lower limit.</param>
/// <param name="UpperRank">u (1-based), n + 1 when there is no upper limit.</param>
public sealed record QuantileInterval(double Quantile, double Confidence, int Runs, double EstimateMs,
    double? LowerMs, double? UpperMs, int LowerRank, int UpperRank)
{
    /// <summary>The interval of the q-quantile of <paramref name="sortedMs"/> (ascending) at <paramref name="confidence"/> (two-sided).</summary>
    public static QuantileInterval From(ReadOnlySpan<double> sortedMs, double quantile, double confidence)
    {
        int n = sortedMs.Length;
        if (n == 0) throw new ArgumentException("no runs to take a quantile of");
        var (l, u) = Ranks(n, quantile, confidence);
        double estimate = sortedMs[Math.Clamp((int)Math.Ceiling(quantile * n - 1e-9) - 1, 0, n - 1)];
        return new QuantileInterval(quantile, confidence, n, estimate,
            l >= 1 ? sortedMs[l - 1] : null, u <= n ? sortedMs[u - 1] : null, l, u);
    }

    /// <summary>The order-statistic ranks (l, u) for n runs; l = 0 / u = n + 1 mark an open side.</summary>
    public static (int Lower, int Upper) Ranks(int n, double quantile, double confidence)
    {
        if (n < 1) throw new ArgumentException($"run count {n} must be at least 1");
        if (!(quantile > 0 && quantile < 1)) throw new ArgumentException($"quantile {quantile} must lie strictly between 0 and 1");
        if (!(confidence > 0 && confidence < 1)) throw new ArgumentException($"confidence {confidence} must lie strictly between 0 and 1");
        double tail = (1 - confidence) / 2;
        var pmf = BinomialPmf(n, quantile);
        // Lower: largest l with P(B ≤ l−1) ≤ tail.
        int l = 0;
        double cdf = 0;
        for (int k = 0; k < n; k++)
        {
            cdf += pmf[k];                 // P(B ≤ k)
            if (cdf <= tail) l = k + 1;    // P(B ≤ (k+1)−1) ≤ tail
            else break;
        }
        // Upper: smallest u with P(B ≥ u) ≤ tail, summing the upper tail from the top (no cancellation).
        int u = n + 1;
        double upper = 0;
        for (int k = n; k >= 1; k--)
        {
            upper += pmf[k];               // P(B ≥ k)
            if (upper <= tail) u = k;
            else break;
        }
        return (l, u);
    }

    /// <summary>The exact coverage P(l ≤ B ≤ u−1) of ranks (l, u) for n runs: at least the confidence when both sides are closed.</summary>
    public static double Coverage(int n, double quantile, int lower, int upper)
    {
        var pmf = BinomialPmf(n, quantile);
        double p = 0;
        for (int k = Math.Max(0, lower); k <= Math.Min(n, upper - 1); k++) p += pmf[k];
        return p;
    }

    /// <summary>Binomial(n, q) probabilities, computed in log space so large n does not overflow.</summary>
    internal static double[] BinomialPmf(int n, double q)
    {
        var pmf = new double[n + 1];
        double logQ = Math.Log(q), log1Q = Math.Log(1 - q);
        double log = n * log1Q;
        pmf[0] = Math.Exp(log);
        for (int k = 0; k < n; k++)
        {
            log += Math.Log(n - k) - Math.Log(k + 1) + logQ - log1Q;
            pmf[k + 1] = Math.Exp(log);
        }
        return pmf;
    }
}
