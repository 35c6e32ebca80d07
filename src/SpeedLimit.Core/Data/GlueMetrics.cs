namespace SpeedLimit.Data;

/// <summary>All figures for one evaluation; <see cref="Primary"/> is the one the task is judged by.</summary>
public sealed record MetricReport(PrimaryMetric Metric, double Primary, IReadOnlyDictionary<string, double> Values)
{
    public override string ToString() => string.Join(", ", Values.Select(kv => $"{kv.Key} {kv.Value:F4}"));
}

/// <summary>
/// Metrics as GLUE reports them. Degenerate inputs have defined values instead of NaN: a
/// correlation with a constant side is 0, MCC with an empty row or column of the confusion matrix
/// is 0, F1 with no true positives is 0 (scikit-learn's choices).
/// </summary>
internal static class GlueMetrics
{
    public static double Accuracy(ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold)
    {
        CheckLengths(predicted.Length, gold.Length);
        int hit = 0;
        for (int i = 0; i < gold.Length; i++) if (predicted[i] == gold[i]) hit++;
        return (double)hit / gold.Length;
    }

    /// <summary>Binary F1 of <paramref name="positive"/> (1 for MRPC/QQP).</summary>
    public static double F1(ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold, int positive = 1)
    {
        CheckLengths(predicted.Length, gold.Length);
        long tp = 0, fp = 0, fn = 0;
        for (int i = 0; i < gold.Length; i++)
        {
            bool p = predicted[i] == positive, g = gold[i] == positive;
            if (p && g) tp++; else if (p) fp++; else if (g) fn++;
        }
        return tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);
    }

    /// <summary>
    /// Matthews correlation, multi-class form (Gorodkin's R_K, equal to the binary MCC for two
    /// classes): (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)); 0 when a factor is 0.
    /// </summary>
    public static double MatthewsCorrelation(ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold)
    {
        CheckLengths(predicted.Length, gold.Length);
        var predCount = new Dictionary<int, long>();
        var goldCount = new Dictionary<int, long>();
        long correct = 0, s = gold.Length;
        for (int i = 0; i < gold.Length; i++)
        {
            predCount[predicted[i]] = predCount.GetValueOrDefault(predicted[i]) + 1;
            goldCount[gold[i]] = goldCount.GetValueOrDefault(gold[i]) + 1;
            if (predicted[i] == gold[i]) correct++;
        }
        double pt = 0, pp = 0, tt = 0;
        foreach (var (k, p) in predCount) { pp += (double)p * p; pt += (double)p * goldCount.GetValueOrDefault(k); }
        foreach (var t in goldCount.Values) tt += (double)t * t;
        double ss = (double)s * s;
        double den = (ss - pp) * (ss - tt);
        return den <= 0 ? 0 : ((double)correct * s - pt) / Math.Sqrt(den);
    }

    /// <summary>Pearson correlation; 0 when either side has zero variance.</summary>
    public static double Pearson(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        CheckLengths(x.Length, y.Length);
        double mx = 0, my = 0;
        for (int i = 0; i < x.Length; i++) { mx += x[i]; my += y[i]; }
        mx /= x.Length; my /= y.Length;
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double dx = x[i] - mx, dy = y[i] - my;
            sxy += dx * dy; sxx += dx * dx; syy += dy * dy;
        }
        return sxx <= 0 || syy <= 0 ? 0 : Math.Clamp(sxy / Math.Sqrt(sxx * syy), -1, 1);
    }

    /// <summary>Spearman correlation: Pearson of the ranks, tied values sharing their average rank.</summary>
    public static double Spearman(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        CheckLengths(x.Length, y.Length);
        return Pearson(AverageRanks(x), AverageRanks(y));
    }

    /// <summary>1-based ranks; a run of equal values gets the mean of the ranks it spans.</summary>
    public static double[] AverageRanks(ReadOnlySpan<double> values)
    {
        var order = new int[values.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var copy = values.ToArray();
        Array.Sort(order, (a, b) => copy[a].CompareTo(copy[b]));
        var ranks = new double[values.Length];
        for (int start = 0; start < order.Length;)
        {
            int end = start;
            while (end + 1 < order.Length && copy[order[end + 1]] == copy[order[start]]) end++;
            double rank = (start + end) / 2.0 + 1;
            for (int k = start; k <= end; k++) ranks[order[k]] = rank;
            start = end + 1;
        }
        return ranks;
    }

    /// <summary>Classification figures for a task; <paramref name="metric"/> picks the primary one.</summary>
    public static MetricReport Evaluate(PrimaryMetric metric, ReadOnlySpan<int> predicted, ReadOnlySpan<int> gold)
    {
        double acc = Accuracy(predicted, gold);
        var values = new Dictionary<string, double> { ["accuracy"] = acc };
        double primary;
        switch (metric)
        {
            case PrimaryMetric.Accuracy: primary = acc; break;
            case PrimaryMetric.Matthews: primary = values["mcc"] = MatthewsCorrelation(predicted, gold); break;
            case PrimaryMetric.F1Accuracy:
                values["f1"] = F1(predicted, gold);
                primary = (values["f1"] + acc) / 2;
                break;
            default: throw new ArgumentException($"metric {metric} needs regression scores, not class ids; use the float overload");
        }
        return new MetricReport(metric, primary, values);
    }

    /// <summary>Regression figures (STS-B): Pearson, Spearman and their mean as the primary figure.</summary>
    public static MetricReport Evaluate(ReadOnlySpan<double> predicted, ReadOnlySpan<double> gold)
    {
        double p = Pearson(predicted, gold), s = Spearman(predicted, gold);
        return new MetricReport(PrimaryMetric.PearsonSpearman, (p + s) / 2,
            new Dictionary<string, double> { ["pearson"] = p, ["spearman"] = s });
    }

    private static void CheckLengths(int a, int b)
    {
        if (a != b) throw new ArgumentException($"predictions ({a}) and gold labels ({b}) differ in length; pass one prediction per example");
        if (a == 0) throw new ArgumentException("no examples to score; pass at least one prediction");
    }
}
