using System.Diagnostics;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Search;

namespace SpeedLimit.Bench;

/// <summary>
/// The measurement protocol on real models: repeatability of the bound statistic across separate
/// measurement processes, the predictor's held-out error on labels taken with the protocol, and
/// profiling throughput.
/// </summary>
public sealed class LatencyProtocolBench : IBenchSection
{
    public string Name => "latency";
    public string Description => "measurement protocol (screening: ≥ 100 runs & ≥ 1 s per model, child process, interleaved with a reference): p90 repeatability across 3 processes, predictor held-out MAPE / ±10 % / margin, profiling throughput";

    public void Run(BenchReport report, bool quick)
    {
        report.Note($"load at start: {LoadAverage()} (2 vCPUs shared with other work: figures are noisy; the reference model's latency in each session is printed beside them)");
        var device = DeviceFingerprint.Current(1);
        report.Note($"device: {device}");
        var clocks = LatencyProfilerClock.ThreadCpuSupported ? new[] { LatencyClock.Wall, LatencyClock.ThreadCpu } : new[] { LatencyClock.Wall };

        // 1. Repeatability: the same architectures measured in 3 separate worker processes.
        int count = quick ? 6 : 20;
        var random = new Random(11);
        var archs = new List<Architecture>();
        while (archs.Count < count)
        {
            var a = SearchSpace.Paper.Sample(random);
            if (!archs.Contains(a)) archs.Add(a);
        }
        foreach (var clock in clocks)
        {
            var perProcess = new List<Dictionary<Architecture, LatencyRecord>>();
            for (int p = 0; p < 3; p++)
            {
                using var worker = ChildProcessLatencyDevice.TryCreateDefault()
                    ?? throw new InvalidOperationException("the measurement worker (speedlimit.dll) was not found beside the bench");
                var profiler = new LatencyProfiler(new LatencyProfilerOptions { Protocol = LatencyProtocol.Screening, Clock = clock }, worker);
                var path = Path.Combine(Path.GetTempPath(), $"speedlimit-bench-latency-{Guid.NewGuid():N}.jsonl");
                try
                {
                    perProcess.Add(profiler.ProfileAll(archs, [Precision.Int8], path).ToDictionary(r => r.Arch));
                }
                finally { File.Delete(path); }
            }
            string name = LatencyProfilerClock.Name(clock);
            double maxDev = 0, maxDevNormalised = 0, sumDev = 0;
            foreach (var a in archs)
            {
                var p90 = perProcess.Select(d => d[a].P90Ms).ToArray();
                var norm = perProcess.Select(d => d[a].P90Ms / d[a].Protocol!.ReferenceP50Ms).ToArray();
                double dev = (p90.Max() - p90.Min()) / p90.Min();
                maxDev = Math.Max(maxDev, dev);
                sumDev += dev;
                maxDevNormalised = Math.Max(maxDevNormalised, (norm.Max() - norm.Min()) / norm.Min());
            }
            var refs = perProcess.Select(d => Timing.Median(d.Values.Select(r => r.Protocol!.ReferenceP50Ms).ToList())).ToArray();
            int drifted = perProcess.Sum(d => d.Values.Count(r => r.Protocol!.Drifted));
            report.Note($"{name} clock: reference median per process {string.Join(" / ", refs.Select(r => r.ToString("0.000")))} ms; {drifted} of {3 * count} records flagged as drifted");
            report.Figure($"latency.repeatability.{name}.p90_max_deviation", 100 * maxDev, "%");
            report.Figure($"latency.repeatability.{name}.p90_mean_deviation", 100 * sumDev / count, "%");
            report.Figure($"latency.repeatability.{name}.p90_over_reference_max_deviation", 100 * maxDevNormalised, "%");
        }

        // 2. Predictor on labels from the protocol (p90, the default bound statistic), and profiling throughput.
        int profiled = quick ? 30 : 100;
        var sample = new List<Architecture>();
        random = new Random(5);
        while (sample.Count < profiled)
        {
            var a = SearchSpace.Paper.Sample(random);
            if (!sample.Contains(a)) sample.Add(a);
        }
        foreach (var clock in clocks)
        {
            string name = LatencyProfilerClock.Name(clock);
            var path = Path.Combine(Path.GetTempPath(), $"speedlimit-bench-latency-{Guid.NewGuid():N}.jsonl");
            try
            {
                var profiler = new LatencyProfiler(new LatencyProfilerOptions { Protocol = LatencyProtocol.Screening, Clock = clock });
                var watch = Stopwatch.StartNew();
                var records = profiler.ProfileAll(sample, [Precision.Int8], path);
                report.Figure($"latency.profiling.{name}.architectures_per_minute", records.Count / watch.Elapsed.TotalMinutes, "arch/min");
                // Labels rescaled by each session's reference model (the default), then the raw labels for comparison.
                foreach (var correct in new[] { true, false })
                {
                    var fit = LatencyPredictorFitter.Fit(records, new LatencyFitOptions { Model = LatencyModelKind.Features, BoundStatistic = BoundStatistic.P90, Seed = 1, CorrectDrift = correct });
                    var h = fit.HeldOut!;
                    string labels = correct ? "drift-corrected" : "raw";
                    report.Note($"{name} clock, {labels} labels: fitted on {fit.TrainCount}, held out {h.Count} (p90 labels, margin on p90 at {fit.Predictor.Confidence:P0}); held-out coverage {fit.HeldOutCoverage:P0}");
                    foreach (var w in fit.Warnings) report.Note($"  {w}");
                    string tag = correct ? name : $"{name}.raw";
                    report.Figure($"latency.predictor.{tag}.heldout_mape", h.MapePercent, "%");
                    report.Figure($"latency.predictor.{tag}.heldout_within_10pct", 100 * h.Within10Percent, "%");
                    report.Figure($"latency.predictor.{tag}.margin", 100 * fit.Predictor.RelativeMargin, "%");
                }
            }
            finally { File.Delete(path); }
        }
        report.Note($"load at end: {LoadAverage()}");
    }

    private static string LoadAverage()
    {
        try { return File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "n/a"; }
        catch (IOException) { return "n/a"; }
    }
}
