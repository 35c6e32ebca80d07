namespace SpeedLimit.Latency.Predictors;

/// <summary>
/// A one-sided split-conformal bound on the relative error r = measured/predicted − 1. With n
/// calibration residuals exchangeable with a new one, the ⌈(n+1)·c⌉-th smallest residual m
/// satisfies P(measured ≤ predicted·(1+m)) ≥ c. The margin never goes below 0 (that only adds
/// coverage), and it updates as new measurements are added.
/// </summary>
public sealed class ConformalMargin
{
    private readonly List<double> _residuals;

    public ConformalMargin(double confidence, IEnumerable<double> relativeResiduals)
    {
        if (!(confidence > 0 && confidence < 1)) throw new ArgumentException($"confidence {confidence} must lie strictly between 0 and 1 (for example 0.9)");
        Confidence = confidence;
        _residuals = relativeResiduals.ToList();
        if (_residuals.Any(r => !double.IsFinite(r))) throw new ArgumentException("calibration residuals must be finite");
        int needed = MinimumCount(confidence);
        if (_residuals.Count < needed)
            throw new ArgumentException($"a {confidence:P0} conformal margin needs at least {needed} calibration residuals, got {_residuals.Count}; profile more architectures or lower the confidence");
        Margin = Compute();
    }

    public double Confidence { get; }
    public IReadOnlyList<double> Residuals => _residuals;
    public int Count => _residuals.Count;
    /// <summary>Relative margin m ≥ 0 so that measured ≤ predicted·(1+m) at <see cref="Confidence"/>.</summary>
    public double Margin { get; private set; }

    /// <summary>Smallest n with ⌈(n+1)·c⌉ ≤ n, i.e. n ≥ c/(1−c).</summary>
    public static int MinimumCount(double confidence) => (int)Math.Ceiling(confidence / (1 - confidence) - 1e-9);

    /// <summary>The relative residual of one measurement against its prediction.</summary>
    public static double Residual(double measuredMs, double predictedMs) => measuredMs / predictedMs - 1;

    public void Add(double residual)
    {
        if (!double.IsFinite(residual)) throw new ArgumentException("calibration residual must be finite");
        _residuals.Add(residual);
        Margin = Compute();
    }

    private double Compute()
    {
        var sorted = _residuals.ToArray();
        Array.Sort(sorted);
        int k = (int)Math.Ceiling((sorted.Length + 1) * Confidence - 1e-9);
        return Math.Max(0, sorted[Math.Min(k, sorted.Length) - 1]);
    }
}

/// <summary>Relative-error summary of predictions against measurements.</summary>
/// <param name="MapePercent">Mean |predicted − measured| / measured, in percent.</param>
/// <param name="MaxAbsErrorPercent">Largest |predicted − measured| / measured, in percent.</param>
/// <param name="Within5Percent">Share (0..1) of predictions within ±5 % of the measurement.</param>
/// <param name="Within10Percent">Share (0..1) within ±10 %.</param>
/// <param name="BiasPercent">Mean signed (predicted − measured) / measured, in percent.</param>
public sealed record PredictionMetrics(int Count, double MapePercent, double MaxAbsErrorPercent,
    double Within5Percent, double Within10Percent, double BiasPercent)
{
    public static PredictionMetrics From(IReadOnlyList<double> measuredMs, IReadOnlyList<double> predictedMs)
    {
        if (measuredMs.Count != predictedMs.Count) throw new ArgumentException("measured and predicted lists differ in length");
        if (measuredMs.Count == 0) throw new ArgumentException("no predictions to score");
        double sum = 0, max = 0, bias = 0; int w5 = 0, w10 = 0;
        for (int i = 0; i < measuredMs.Count; i++)
        {
            double rel = (predictedMs[i] - measuredMs[i]) / measuredMs[i];
            double abs = Math.Abs(rel);
            sum += abs; bias += rel; max = Math.Max(max, abs);
            if (abs <= 0.05) w5++;
            if (abs <= 0.10) w10++;
        }
        int n = measuredMs.Count;
        return new PredictionMetrics(n, 100 * sum / n, 100 * max, (double)w5 / n, (double)w10 / n, 100 * bias / n);
    }
}
