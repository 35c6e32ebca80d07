using SpeedLimit.Model;

namespace SpeedLimit.Latency.Predictors;

/// <summary>What to fit a latency predictor to, and how.</summary>
public sealed class LatencyFitOptions
{
    public Precision Precision { get; set; } = Precision.Int8;
    public int Batch { get; set; } = 1;
    public int SequenceLength { get; set; } = 128;
    /// <summary>Thread count to keep; null keeps the dataset's only one (an error if it has several).</summary>
    public int? Threads { get; set; }
    /// <summary>
    /// The model to fit. Features by default: it is cheap, monotone and the better founded;
    /// Auto cross-validates the MLP too, which at the paper's settings costs (folds + 1) MLP trainings.
    /// </summary>
    public LatencyModelKind Model { get; set; } = LatencyModelKind.Features;
    /// <summary>The measured quantile the margin bounds (the search's bound statistic).</summary>
    public BoundStatistic BoundStatistic { get; set; } = BoundStatistic.P90;
    /// <summary>The per-record latency to learn; null learns the bound statistic itself.</summary>
    public LatencyStatistic? Statistic { get; set; }

    /// <summary>What is learnt: <see cref="Statistic"/>, or the bound's statistic.</summary>
    public LatencyStatistic Learnt => Statistic ?? BoundStatistic switch
    {
        BoundStatistic.P50 => LatencyStatistic.Median,
        BoundStatistic.P90 => LatencyStatistic.P90,
        _ => LatencyStatistic.P99,
    };
    /// <summary>
    /// Rescale every record to one machine speed before fitting: each protocol record carries the median of the
    /// fixed reference model timed in its own session, and its latencies are multiplied by (the dataset's median
    /// reference ÷ that session's). A VM's speed drifts between sessions (the reference itself moved by 40 % between
    /// processes minutes apart on an otherwise idle 2-vCPU VM) and no predictor of architecture can know that; the
    /// search's verification measures the real latency anyway. Off, or records without a reference: raw latencies.
    /// </summary>
    public bool CorrectDrift { get; set; } = true;
    /// <summary>Share of architectures held out for the reported scores (never used for fitting or calibration).</summary>
    public double HoldoutFraction { get; set; } = 0.2;
    /// <summary>Fit on at most this many architectures; every architecture not fitted on is held out. Null: all but the hold-out share.</summary>
    public int? TrainCount { get; set; }
    /// <summary>
    /// Cross-validation folds for model choice and the calibration residuals. 0 skips cross-validation
    /// (for a costly model named explicitly): the model is fitted once and the margin is calibrated on
    /// the held-out residuals (plain split conformal), so held-out coverage is then not reported.
    /// </summary>
    public int Folds { get; set; } = 5;
    public double Confidence { get; set; } = 0.9;
    public int Seed { get; set; } = 1;
    public MlpOptions Mlp { get; set; } = new();
    public FeatureModelOptions Features { get; set; } = new();

    public void Validate()
    {
        if (Batch < 1 || SequenceLength < 1) throw new ArgumentException("batch and sequence length must be positive");
        if (Threads is < 1) throw new ArgumentException($"threads {Threads} must be positive");
        if (HoldoutFraction is < 0 or >= 1) throw new ArgumentException($"hold-out fraction {HoldoutFraction} must lie in [0, 1)");
        if (TrainCount is < 2) throw new ArgumentException($"training count {TrainCount} must be at least 2");
        if (Folds is 1 or < 0) throw new ArgumentException($"folds {Folds} must be 0 (no cross-validation) or at least 2");
        if (Folds == 0 && Model == LatencyModelKind.Auto) throw new ArgumentException("choosing the model automatically needs cross-validation; set folds ≥ 2 or name the model");
        if (Folds == 0 && HoldoutFraction == 0 && TrainCount is null) throw new ArgumentException("without cross-validation the margin is calibrated on held-out architectures; set a hold-out fraction above 0");
        if (!(Confidence > 0 && Confidence < 1)) throw new ArgumentException($"confidence {Confidence} must lie strictly between 0 and 1");
        Mlp.Validate();
        Features.Validate();
    }
}

/// <summary>One measured architecture and its prediction.</summary>
public sealed record PredictedPoint(Architecture Arch, double MeasuredMs, double PredictedMs)
{
    public double RelativeError => (PredictedMs - MeasuredMs) / MeasuredMs;
}

/// <summary>Cross-validated scores of one model kind on the training architectures.</summary>
public sealed record CandidateScore(LatencyModelKind Kind, PredictionMetrics CrossValidated, double FitSeconds);

/// <summary>The fitted predictor and how well it did.</summary>
/// <param name="HeldOutCoverage">Share of held-out architectures whose measured median ≤ predicted·(1+margin).</param>
public sealed record LatencyFitReport(
    LatencyPredictor Predictor, LatencyModelKind Chosen, IReadOnlyList<CandidateScore> Candidates,
    PredictionMetrics? HeldOut, double HeldOutCoverage, IReadOnlyList<PredictedPoint> HeldOutPoints,
    int TrainCount, int RecordsUsed, IReadOnlyList<string> Warnings);

/// <summary>One point of a learning curve: held-out scores after fitting on <see cref="TrainCount"/> architectures, over several draws.</summary>
public sealed record LearningCurvePoint(int TrainCount, int Repeats, double MeanMapePercent, double WorstMapePercent,
    double MeanMaxAbsErrorPercent, double MeanWithin10Percent);

/// <summary>
/// Fits a latency predictor to profiled records: filters them to one precision and shape,
/// holds out a share for honest scores, picks the model kind by cross-validated error on the
/// rest, calibrates the conformal margin on the out-of-fold residuals, and refits on all of it.
/// </summary>
public static class LatencyPredictorFitter
{
    /// <summary>The records of one precision, shape and thread count, one per architecture (repeated measurements: their median).</summary>
    /// <returns>Per architecture: the statistic to learn (Ms) and the median the bound is checked against (BoundMs).</returns>
    public static (List<Architecture> Archs, List<double> Ms, List<double> BoundMs, DeviceFingerprint Device, int Heads, List<string> Warnings) Prepare(
        IReadOnlyList<LatencyRecord> records, LatencyFitOptions options)
    {
        var warnings = new List<string>();
        var kept = records.Where(r => r.Precision == options.Precision && r.Batch == options.Batch && r.SequenceLength == options.SequenceLength).ToList();
        string what = $"{options.Precision.ToString().ToLowerInvariant()} at batch {options.Batch} × {options.SequenceLength} tokens";
        if (kept.Count == 0)
            throw new UserInputException($"the dataset has no {what} records ({records.Count} records in all); profile that configuration or change --precision/--batch/--length");
        var threadCounts = kept.Select(r => r.Threads).Distinct().Order().ToList();
        int threads = options.Threads ?? (threadCounts.Count == 1
            ? threadCounts[0]
            : throw new UserInputException($"the {what} records were measured at {string.Join(", ", threadCounts)} threads; choose one with --threads"));
        kept = kept.Where(r => r.Threads == threads).ToList();
        if (kept.Count == 0) throw new UserInputException($"no {what} records at {threads} thread(s); the dataset has {string.Join(", ", threadCounts)}");
        var heads = kept.Select(r => r.Heads).Distinct().ToList();
        if (heads.Count > 1) throw new UserInputException($"the {what} records mix head counts {string.Join(", ", heads)}; fit one search space at a time");
        // One device per predictor: keep the most common fingerprint, and say what was left out.
        var devices = kept.GroupBy(r => r.Device).OrderByDescending(g => g.Count()).ToList();
        if (devices.Count > 1)
        {
            warnings.Add($"the records come from {devices.Count} devices; using the {devices[0].Count()} from {devices[0].Key} and ignoring {kept.Count - devices[0].Count()}");
            kept = devices[0].ToList();
        }
        var speed = DriftCorrection(kept, options.CorrectDrift, warnings);
        var byArch = kept.GroupBy(r => r.Arch).OrderBy(g => g.Key.Layers).ThenBy(g => g.Key.Hidden).ThenBy(g => g.Key.Ffn).ToList();
        var archs = byArch.Select(g => g.Key).ToList();
        var ms = byArch.Select(g => Statistics.Median(g.Select(r => Pick(r, options.Learnt) * speed(r)))).ToList();
        var bound = byArch.Select(g => Statistics.Median(g.Select(r => LatencyBound.Estimate(r, options.BoundStatistic) * speed(r)))).ToList();
        return (archs, ms, bound, devices[0].Key, heads[0], warnings);
    }

    /// <summary>
    /// The factor that brings a record to the dataset's median reference level (see <see cref="LatencyFitOptions.CorrectDrift"/>),
    /// or 1 for every record when correction is off or some record has no reference measurement.
    /// </summary>
    internal static Func<LatencyRecord, double> DriftCorrection(IReadOnlyList<LatencyRecord> records, bool correct, List<string> notes)
    {
        if (!correct || records.Count == 0 || records.Any(r => r.Protocol is not { ReferenceP50Ms: > 0 })) return _ => 1.0;
        double level = Statistics.Median(records.Select(r => r.Protocol!.ReferenceP50Ms));
        var factors = records.Select(r => level / r.Protocol!.ReferenceP50Ms).ToList();
        notes.Add(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"latencies rescaled to the reference model's median level {level:F3} ms (session factors {factors.Min():F2}–{factors.Max():F2}): the predictor learns architecture, not the machine's drift"));
        return r => level / r.Protocol!.ReferenceP50Ms;
    }

    public static LatencyFitReport Fit(IReadOnlyList<LatencyRecord> records, LatencyFitOptions options)
    {
        options.Validate();
        var (archs, ms, boundMs, device, heads, warnings) = Prepare(records, options);
        var shape = new LatencyShape(heads, options.Batch, options.SequenceLength);
        var (trainIdx, testIdx) = Split(archs.Count, options.HoldoutFraction, options.TrainCount, options.Seed);
        int minTrain = options.Folds == 0 ? 3 : Math.Max(2 * options.Folds, ConformalMargin.MinimumCount(options.Confidence) + 1);
        if (options.Folds == 0 && testIdx.Count < ConformalMargin.MinimumCount(options.Confidence))
            throw new UserInputException($"only {testIdx.Count} held-out architectures to calibrate the margin on; need at least {ConformalMargin.MinimumCount(options.Confidence)} at {options.Confidence:P0} — raise --holdout or profile more");
        if (trainIdx.Count < minTrain)
            throw new UserInputException($"only {trainIdx.Count} architectures to fit on (of {archs.Count} measured); need at least {minTrain} for {options.Folds}-fold calibration at {options.Confidence:P0} — profile more or lower --holdout");
        var trainA = trainIdx.Select(i => archs[i]).ToList();
        var trainY = trainIdx.Select(i => ms[i]).ToList();

        var kinds = options.Model == LatencyModelKind.Auto
            ? new[] { LatencyModelKind.Features, LatencyModelKind.Mlp }
            : new[] { options.Model };
        var candidates = new List<CandidateScore>();
        var residualsByKind = new Dictionary<LatencyModelKind, List<double>>();
        foreach (var kind in options.Folds == 0 ? [] : kinds)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            var oof = OutOfFold(kind, trainA, trainY, shape, options);
            double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
            candidates.Add(new CandidateScore(kind, PredictionMetrics.From(trainY, oof), seconds));
            // The margin bounds the bound's statistic (what verification checks), whatever statistic is learnt.
            residualsByKind[kind] = trainIdx.Select((j, i) => ConformalMargin.Residual(boundMs[j], oof[i])).ToList();
        }
        var chosen = options.Folds == 0 ? options.Model : candidates.MinBy(c => c.CrossValidated.MapePercent)!.Kind;
        var model = LatencyModels.Fit(chosen, trainA, trainY, shape, options.Mlp, options.Features);

        PredictionMetrics? heldOut = null;
        double coverage = double.NaN;
        var points = new List<PredictedPoint>();
        if (testIdx.Count > 0)
        {
            var testA = testIdx.Select(i => archs[i]).ToArray();
            var pred = new double[testA.Length];
            model.PredictMs(testA, pred);
            for (int i = 0; i < testA.Length; i++) points.Add(new PredictedPoint(testA[i], ms[testIdx[i]], pred[i]));
            heldOut = PredictionMetrics.From(points.Select(p => p.MeasuredMs).ToList(), pred);
        }
        ConformalMargin margin;
        if (options.Folds == 0)
        {
            // Split conformal on the held-out residuals; coverage on those same points would be in-sample.
            margin = new ConformalMargin(options.Confidence, testIdx.Select((j, i) => ConformalMargin.Residual(boundMs[j], points[i].PredictedMs)));
        }
        else
        {
            margin = new ConformalMargin(options.Confidence, residualsByKind[chosen]);
            if (points.Count > 0)
                coverage = testIdx.Where((j, i) => boundMs[j] <= points[i].PredictedMs * (1 + margin.Margin)).Count() / (double)points.Count;
        }
        var predictor = new LatencyPredictor(model, margin, device, options.Precision, shape, heldOut, options.Learnt, options.BoundStatistic);
        return new LatencyFitReport(predictor, chosen, candidates, heldOut, coverage, points, trainA.Count, archs.Count, warnings);
    }

    /// <summary>
    /// Held-out MAPE after fitting one model kind on the first n of a shuffled pool, for each n, over
    /// <paramref name="repeats"/> shuffles; the held-out set is the same for every n.
    /// </summary>
    public static List<LearningCurvePoint> LearningCurve(IReadOnlyList<LatencyRecord> records, LatencyFitOptions options,
        LatencyModelKind kind, IReadOnlyList<int> trainCounts, int repeats)
    {
        options.Validate();
        if (kind == LatencyModelKind.Auto) throw new ArgumentException("a learning curve needs one model kind (mlp or features)");
        var (archs, ms, _, _, heads, _) = Prepare(records, options);
        var shape = new LatencyShape(heads, options.Batch, options.SequenceLength);
        var (poolIdx, testIdx) = Split(archs.Count, options.HoldoutFraction, null, options.Seed);
        if (testIdx.Count == 0) throw new UserInputException("a learning curve needs held-out records; set a hold-out fraction above 0");
        var testA = testIdx.Select(i => archs[i]).ToArray();
        var testY = testIdx.Select(i => ms[i]).ToList();
        var result = new List<LearningCurvePoint>();
        foreach (var n in trainCounts)
        {
            if (n > poolIdx.Count || n < 3) continue;
            var mapes = new List<double>(); var maxes = new List<double>(); var w10 = new List<double>();
            for (int rep = 0; rep < repeats; rep++)
            {
                var pool = poolIdx.ToArray();
                new Random(options.Seed * 7919 + rep).Shuffle(pool);
                var a = pool.Take(n).Select(i => archs[i]).ToList();
                var y = pool.Take(n).Select(i => ms[i]).ToList();
                var model = LatencyModels.Fit(kind, a, y, shape, options.Mlp, options.Features);
                var pred = new double[testA.Length];
                model.PredictMs(testA, pred);
                var m = PredictionMetrics.From(testY, pred);
                mapes.Add(m.MapePercent); maxes.Add(m.MaxAbsErrorPercent); w10.Add(m.Within10Percent);
            }
            result.Add(new LearningCurvePoint(n, repeats, mapes.Average(), mapes.Max(), maxes.Average(), w10.Average()));
        }
        return result;
    }

    private static double[] OutOfFold(LatencyModelKind kind, List<Architecture> archs, List<double> ms, LatencyShape shape, LatencyFitOptions options)
    {
        var fold = CrossValidation.AssignFolds(archs.Count, options.Folds, options.Seed + 17);
        var oof = new double[archs.Count];
        for (int k = 0; k < options.Folds; k++)
        {
            var idxTrain = Enumerable.Range(0, archs.Count).Where(i => fold[i] != k).ToList();
            var idxVal = Enumerable.Range(0, archs.Count).Where(i => fold[i] == k).ToArray();
            var model = LatencyModels.Fit(kind, idxTrain.Select(i => archs[i]).ToList(), idxTrain.Select(i => ms[i]).ToList(),
                shape, options.Mlp, options.Features);
            var pred = new double[idxVal.Length];
            model.PredictMs(idxVal.Select(i => archs[i]).ToArray(), pred);
            for (int j = 0; j < idxVal.Length; j++) oof[idxVal[j]] = pred[j];
        }
        return oof;
    }

    /// <summary>A seeded split into (fit, held-out) index lists; the fit list is capped at <paramref name="trainCount"/>.</summary>
    internal static (List<int> Train, List<int> Test) Split(int count, double holdoutFraction, int? trainCount, int seed)
    {
        var order = Enumerable.Range(0, count).ToArray();
        new Random(seed).Shuffle(order);
        int test = (int)Math.Round(count * holdoutFraction);
        var testIdx = order.Take(test).ToList();
        var trainIdx = order.Skip(test).ToList();
        if (trainCount is int cap && trainIdx.Count > cap)
        {
            // Architectures beyond the cap were measured but not fitted on: they are held out too.
            testIdx.AddRange(trainIdx.Skip(cap));
            trainIdx = trainIdx.Take(cap).ToList();
        }
        return (trainIdx, testIdx);
    }

    public static double Pick(LatencyRecord r, LatencyStatistic statistic) => statistic switch
    {
        LatencyStatistic.Min => r.MinMs,
        LatencyStatistic.TrimmedMean => r.TrimmedMeanMs,
        LatencyStatistic.P90 => r.P90Ms,
        LatencyStatistic.P99 => LatencyBound.Estimate(r, BoundStatistic.P99),
        _ => r.MedianMs,
    };

}
