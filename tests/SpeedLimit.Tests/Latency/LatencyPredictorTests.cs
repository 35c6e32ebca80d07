using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Latency;

public class LatencyPredictorTests
{
    private static string TempPath(string ext) => Path.Combine(Path.GetTempPath(), $"pred-{Guid.NewGuid():N}{ext}");

    private static LatencyFitOptions SmallOptions(LatencyModelKind kind) => new()
    {
        Model = kind,
        Mlp = new MlpOptions { Width = 16, Steps = 200, BatchSize = 32, LearningRate = 3e-3 },
        Folds = 3,
    };

    [Theory]
    [InlineData(LatencyModelKind.Features)]
    [InlineData(LatencyModelKind.Mlp)]
    public void SavedPredictorRoundTrips(LatencyModelKind kind)
    {
        var records = new SyntheticLatency(0.01).Sample(SearchSpace.Paper, 60, new Random(1));
        var report = LatencyPredictorFitter.Fit(records, SmallOptions(kind));
        var path = TempPath(".json");
        try
        {
            report.Predictor.Save(path);
            var back = LatencyPredictor.Load(path);
            Assert.Equal(report.Predictor.Device, back.Device);
            Assert.Equal(report.Predictor.RelativeMargin, back.RelativeMargin, 12);
            Assert.Equal(report.Predictor.Margin.Count, back.Margin.Count);
            Assert.Equal(report.Predictor.Shape, back.Shape);
            Assert.Equal(report.Predictor.Statistic, back.Statistic);
            Assert.Equal(report.HeldOut, back.HeldOut);
            Assert.Equal(kind, back.Model.Kind);
            foreach (var a in SearchSpace.Paper.Enumerate().Where((_, i) => i % 997 == 0))
                Assert.Equal(report.Predictor.PredictMs(a), back.PredictMs(a), 9);
            Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, Path.GetFileName(path) + ".*.tmp"));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void FingerprintMismatchWarnsAndMatchDoesNot()
    {
        var records = new SyntheticLatency(0.01).Sample(SearchSpace.Paper, 40, new Random(2), cpuModel: "CPU A", threads: 1, runtimeVersion: "1.31.1");
        var predictor = LatencyPredictorFitter.Fit(records, SmallOptions(LatencyModelKind.Features)).Predictor;
        Assert.Null(predictor.DeviceWarning(new DeviceFingerprint("CPU A", 1, "1.31.1")));
        var warning = predictor.DeviceWarning(new DeviceFingerprint("CPU B", 2, "1.31.1"));
        Assert.NotNull(warning);
        Assert.Contains("CPU A", warning);
        Assert.Contains("CPU B", warning);
        Assert.Contains("1 vs 2 thread", warning);
        Assert.DoesNotContain("ONNX Runtime", warning);

        // Measurements from another device are not mixed into the margin, and that is said.
        var other = new SyntheticLatency(0.01).Sample(SearchSpace.Paper, 5, new Random(3), cpuModel: "CPU B", threads: 1, runtimeVersion: "1.31.1");
        var (margin, warnings) = predictor.RecalibratedMargin(other.Select(r => (r, r.MedianMs * 3)));
        Assert.Equal(predictor.RelativeMargin, margin);
        Assert.Single(warnings);
        Assert.Contains("CPU B", warnings[0]);
        Assert.Contains("not used", warnings[0]);
    }

    [Fact]
    public void RecalibrationWidensTheMarginForSlowSurprisesAndSkipsOtherShapes()
    {
        var records = new SyntheticLatency(0.01).Sample(SearchSpace.Paper, 50, new Random(4));
        var predictor = LatencyPredictorFitter.Fit(records, SmallOptions(LatencyModelKind.Features)).Predictor;
        double before = predictor.RelativeMargin;
        var a = new Architecture(3, 300, 500);
        double slow = predictor.PredictMs(a) * 1.5;
        var measured = Enumerable.Range(0, 40).Select(_ => new LatencyRecord(3, 300, 500, 12, Precision.Int8, 1, 128, slow, slow, slow, slow, 10,
            "synthetic cpu", 1, "synthetic", DateTimeOffset.UnixEpoch)).ToList();
        var fp32 = measured[0] with { Precision = Precision.Fp32 };
        var (margin, warnings) = predictor.RecalibratedMargin(measured.Append(fp32).Select(r => (r, r.MedianMs)));
        Assert.True(margin > before);
        Assert.Equal(0.5, margin, 9);
        Assert.Equal(before, predictor.RelativeMargin); // the predictor itself is unchanged
        Assert.Single(warnings);
        Assert.Contains("1 measurement(s) not used", warnings[0]);
    }

    [Fact]
    public void FitReportsHeldOutScoresAndCalibratedCoverage()
    {
        var records = new SyntheticLatency(0.02).Sample(SearchSpace.Paper, 150, new Random(5));
        var report = LatencyPredictorFitter.Fit(records, SmallOptions(LatencyModelKind.Auto));
        Assert.Equal(2, report.Candidates.Count);
        Assert.Equal(report.Candidates.MinBy(c => c.CrossValidated.MapePercent)!.Kind, report.Chosen);
        Assert.Equal(30, report.HeldOutPoints.Count);
        Assert.Equal(120, report.TrainCount);
        Assert.NotNull(report.HeldOut);
        Assert.True(report.HeldOut!.MapePercent < 5, $"held-out MAPE {report.HeldOut.MapePercent:0.00}");
        Assert.True(report.HeldOutCoverage >= 0.7, $"coverage {report.HeldOutCoverage:P0}");
        Assert.True(report.Predictor.RelativeMargin > 0);
    }

    [Fact]
    public void TrainCountCapsFittingAndHoldsOutTheRest()
    {
        var records = new SyntheticLatency(0.01).Sample(SearchSpace.Paper, 100, new Random(6));
        var options = SmallOptions(LatencyModelKind.Features);
        options.TrainCount = 30;
        var report = LatencyPredictorFitter.Fit(records, options);
        Assert.Equal(30, report.TrainCount);
        Assert.Equal(70, report.HeldOutPoints.Count);
        var curve = LatencyPredictorFitter.LearningCurve(records, options, LatencyModelKind.Features, [10, 40, 1000], repeats: 2);
        Assert.Equal([10, 40], curve.Select(c => c.TrainCount));
    }

    [Fact]
    public void BadDatasetsGiveClearErrors()
    {
        var records = new SyntheticLatency(0.01).Sample(SearchSpace.Paper, 40, new Random(7));
        var ex = Assert.Throws<UserInputException>(() => LatencyPredictorFitter.Fit(records, new LatencyFitOptions { Precision = Precision.Fp32 }));
        Assert.Contains("no fp32", ex.Message);
        var mixed = records.Take(20).Concat(records.Skip(20).Select(r => r with { Threads = 2 })).ToList();
        ex = Assert.Throws<UserInputException>(() => LatencyPredictorFitter.Fit(mixed, SmallOptions(LatencyModelKind.Features)));
        Assert.Contains("--threads", ex.Message);
        ex = Assert.Throws<UserInputException>(() => LatencyPredictorFitter.Fit(records.Take(8).ToList(), SmallOptions(LatencyModelKind.Features)));
        Assert.Contains("profile more", ex.Message);
        var bad = TempPath(".json");
        File.WriteAllText(bad, "{\"format\":\"something else\"}");
        try { Assert.Throws<InvalidDataException>(() => LatencyPredictor.Load(bad)); }
        finally { File.Delete(bad); }
    }
}

public class LatencyFitModesTests
{
    [Fact]
    public void WithoutCrossValidationTheMarginIsCalibratedOnTheHeldOutSet()
    {
        var records = new SyntheticLatency(0.02).Sample(SearchSpace.Paper, 100, new Random(9));
        var options = new LatencyFitOptions { Model = LatencyModelKind.Features, Folds = 0, HoldoutFraction = 0.3 };
        var report = LatencyPredictorFitter.Fit(records, options);
        Assert.Empty(report.Candidates);
        Assert.True(double.IsNaN(report.HeldOutCoverage));
        Assert.Equal(30, report.Predictor.Margin.Count);
        Assert.Equal(report.HeldOutPoints.Select(p => p.MeasuredMs / p.PredictedMs - 1).Order(), report.Predictor.Margin.Residuals.Order());
        Assert.Throws<ArgumentException>(() => LatencyPredictorFitter.Fit(records, new LatencyFitOptions { Folds = 0, Model = LatencyModelKind.Auto }));
    }

    [Fact]
    public void LearningTheMinimumStillBoundsTheMedian()
    {
        // Medians sit 10 % above minima: a model of the minimum needs a margin of at least ~10 %.
        var records = new SyntheticLatency(0.01).Sample(SearchSpace.Paper, 120, new Random(10))
            .Select(r => r with { MinMs = r.MedianMs / 1.1 }).ToList();
        var report = LatencyPredictorFitter.Fit(records, new LatencyFitOptions { Model = LatencyModelKind.Features, Statistic = LatencyStatistic.Min });
        Assert.Equal(LatencyStatistic.Min, report.Predictor.Statistic);
        Assert.True(report.Predictor.RelativeMargin > 0.09, $"margin {report.Predictor.RelativeMargin:P2}");
        Assert.True(report.HeldOut!.MapePercent < 3);
        Assert.True(report.HeldOutCoverage >= 0.8);
    }

    [Fact]
    public void SessionsOfAnotherMachineSpeedAreRescaledByTheirReferenceModel()
    {
        // Every other record measured while the machine ran 1.4× slower: its latencies and its session's reference alike.
        var clean = new SyntheticLatency(0.01).Sample(SearchSpace.Paper, 120, new Random(12));
        var drifted = clean.Select((r, i) =>
        {
            double speed = i % 2 == 0 ? 1.0 : 1.4;
            return r with
            {
                MedianMs = r.MedianMs * speed, P90Ms = r.P90Ms * speed, TrimmedMeanMs = r.TrimmedMeanMs * speed, MinMs = r.MinMs * speed,
                Protocol = new MeasurementNote("test", "test", 0.5 * speed, 0, false, 1),
            };
        }).ToList();
        var options = new LatencyFitOptions { Model = LatencyModelKind.Features, BoundStatistic = BoundStatistic.P90 };
        var corrected = LatencyPredictorFitter.Fit(drifted, options);
        var raw = LatencyPredictorFitter.Fit(drifted, new LatencyFitOptions { Model = LatencyModelKind.Features, BoundStatistic = BoundStatistic.P90, CorrectDrift = false });
        var reference = LatencyPredictorFitter.Fit(clean, options);
        Assert.Contains(corrected.Warnings, w => w.Contains("rescaled", StringComparison.Ordinal));
        Assert.True(corrected.HeldOut!.MapePercent < 3, $"corrected MAPE {corrected.HeldOut.MapePercent:F2} %");
        Assert.True(raw.HeldOut!.MapePercent > 10, $"raw MAPE {raw.HeldOut.MapePercent:F2} %");
        // Rescaled to the median reference level: the 1.0 and 1.4 sessions tie at 0.6 ms, so labels land at 1.2× the clean ones.
        Assert.Equal(reference.HeldOut!.MapePercent, corrected.HeldOut.MapePercent, 3);
        foreach (var (c, r) in corrected.HeldOutPoints.Zip(reference.HeldOutPoints))
            Assert.Equal(1.2 * r.MeasuredMs, c.MeasuredMs, 6);
        // One record without a reference measurement: nothing is rescaled.
        var mixed = drifted.Select((r, i) => i == 0 ? r with { Protocol = null } : r).ToList();
        var none = LatencyPredictorFitter.Fit(mixed, options);
        Assert.DoesNotContain(none.Warnings, w => w.Contains("rescaled", StringComparison.Ordinal));
    }
}
