using System.Globalization;

namespace SpeedLimit.Latency;

/// <summary>Which quantile of a model's latency a bound is on (MLPerf single-stream reports p90).</summary>
public enum BoundStatistic { P50, P90, P99 }

/// <summary>What a measurement says about a bound.</summary>
public enum BoundVerdict
{
    /// <summary>The upper confidence limit of the bound's quantile is within the bound.</summary>
    Meets,
    /// <summary>The lower confidence limit exceeds the bound.</summary>
    Fails,
    /// <summary>The interval straddles the bound (or a side is open): more runs are needed to decide.</summary>
    Uncertain,
}

/// <summary>A measurement judged against a bound: the verdict and the numbers behind it.</summary>
/// <param name="EstimateMs">The sample quantile.</param>
/// <param name="LowerMs">Lower confidence limit (null: open, too few runs).</param>
/// <param name="UpperMs">Upper confidence limit (null: open, too few runs).</param>
/// <param name="Confidence">Two-sided confidence of the interval (null for a record without one, judged on its point value).</param>
public sealed record BoundJudgement(BoundVerdict Verdict, LatencyBound Bound, double EstimateMs, double? LowerMs, double? UpperMs, double? Confidence, int Runs)
{
    public bool Meets => Verdict == BoundVerdict.Meets;

    /// <summary>"p90 0.281 ms [0.276, 0.290] at 95 % (1,200 runs) ≤ 0.3 ms: meets".</summary>
    public string Describe()
    {
        var inv = CultureInfo.InvariantCulture;
        string interval = Confidence is double c
            ? string.Format(inv, " [{0}, {1}] at {2:0.#}%", LowerMs is double l ? l.ToString("0.###", inv) : "open", UpperMs is double u ? u.ToString("0.###", inv) : "open", c * 100)
            : " (no interval: point value)";
        string op = Verdict switch { BoundVerdict.Meets => "≤", BoundVerdict.Fails => ">", _ => "vs" };
        return string.Format(inv, "{0} {1:0.###} ms{2} ({3:N0} runs) {4} {5:0.###} ms: {6}",
            LatencyBound.Name(Bound.Statistic), EstimateMs, interval, Runs, op, Bound.BoundMs, LatencyBound.Name(Verdict));
    }
}

/// <summary>
/// The one owner of "meets the bound". By measurement: a model meets a bound on quantile q when
/// the upper confidence limit of its q-quantile is within the bound, fails when the lower limit
/// exceeds it, and is uncertain otherwise. By prediction: the prediction inflated by the
/// predictor's conformal margin, prediction·(1+margin), is within the bound. Narrowing, the
/// search, verification and the report all ask this type.
/// </summary>
public sealed record LatencyBound
{
    public LatencyBound(double boundMs, BoundStatistic statistic = BoundStatistic.P90)
    {
        if (!(boundMs > 0) || !double.IsFinite(boundMs)) throw new ArgumentException($"latency bound {boundMs} ms must be a positive number of milliseconds");
        if (!Enum.IsDefined(statistic)) throw new ArgumentException($"unknown bound statistic {statistic}");
        BoundMs = boundMs;
        Statistic = statistic;
    }

    public double BoundMs { get; }
    public BoundStatistic Statistic { get; }

    /// <summary>q of the statistic: 0.5, 0.9 or 0.99.</summary>
    public double Quantile => QuantileOf(Statistic);

    public static double QuantileOf(BoundStatistic statistic) => statistic switch
    {
        BoundStatistic.P50 => 0.50,
        BoundStatistic.P90 => 0.90,
        BoundStatistic.P99 => 0.99,
        _ => throw new ArgumentOutOfRangeException(nameof(statistic), statistic, "unknown bound statistic"),
    };

    // ---- by prediction -------------------------------------------------------------------

    /// <summary>The prediction inflated by the margin: the latency a predicted model is checked with.</summary>
    public static double PredictedUpperMs(double predictedMs, double relativeMargin)
    {
        if (!(relativeMargin >= 0) || !double.IsFinite(relativeMargin)) throw new ArgumentException($"predictor margin {relativeMargin} must be a finite non-negative number");
        return predictedMs * (1 + relativeMargin);
    }

    /// <summary>True when prediction·(1+margin) ≤ the bound (ties included).</summary>
    public bool MeetsPredicted(double predictedMs, double relativeMargin) => PredictedUpperMs(predictedMs, relativeMargin) <= BoundMs;

    // ---- by measurement ------------------------------------------------------------------

    /// <summary>The record's point value of the bound's statistic (what a search ranks and reports).</summary>
    public double EstimateMs(LatencyRecord record) => Estimate(record, Statistic);

    public static double Estimate(LatencyRecord record, BoundStatistic statistic)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (record.Summary is { } s) return s.Interval(statistic).EstimateMs;
        return statistic switch
        {
            BoundStatistic.P50 => record.MedianMs,
            BoundStatistic.P90 => record.P90Ms,
            _ => throw new InvalidDataException($"the measurement of {record.Arch} has no p99 (it predates the measurement protocol); re-measure it"),
        };
    }

    /// <summary>
    /// Judges a measurement. Records with a summary are judged on the interval; records without one
    /// (older datasets, hand-made records) on their point value, and say so.
    /// </summary>
    public BoundJudgement Judge(LatencyRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (record.Summary is { } s) return Judge(s.Interval(Statistic));
        double point = Estimate(record, Statistic);
        return new BoundJudgement(point <= BoundMs ? BoundVerdict.Meets : BoundVerdict.Fails, this, point, point, point, null, record.Runs);
    }

    public BoundJudgement Judge(QuantileInterval interval)
    {
        ArgumentNullException.ThrowIfNull(interval);
        if (Math.Abs(interval.Quantile - Quantile) > 1e-12)
            throw new ArgumentException($"a {Name(Statistic)} bound cannot be judged on the {interval.Quantile:0.##} quantile");
        var verdict = interval.UpperMs is double u && u <= BoundMs ? BoundVerdict.Meets
            : interval.LowerMs is double l && l > BoundMs ? BoundVerdict.Fails
            : BoundVerdict.Uncertain;
        return new BoundJudgement(verdict, this, interval.EstimateMs, interval.LowerMs, interval.UpperMs, interval.Confidence, interval.Runs);
    }

    /// <summary>The verdict on raw timings at a confidence (what the protocol checks while it samples).</summary>
    public BoundVerdict Judge(ReadOnlySpan<double> sortedMs, double confidence) => Judge(QuantileInterval.From(sortedMs, Quantile, confidence)).Verdict;

    // ---- names ---------------------------------------------------------------------------

    public static string Name(BoundStatistic statistic) => statistic.ToString().ToLowerInvariant();

    public static string Name(BoundVerdict verdict) => verdict.ToString().ToLowerInvariant();

    /// <summary>Parses "p50" (or "median"), "p90", "p99".</summary>
    public static BoundStatistic ParseStatistic(string text) => text?.Trim().ToLowerInvariant() switch
    {
        "p50" or "median" => BoundStatistic.P50,
        "p90" => BoundStatistic.P90,
        "p99" => BoundStatistic.P99,
        _ => throw new UserInputException($"unknown bound statistic '{text}'; use p50, p90 or p99"),
    };

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Name(Statistic)} ≤ {BoundMs:0.###} ms");
}
