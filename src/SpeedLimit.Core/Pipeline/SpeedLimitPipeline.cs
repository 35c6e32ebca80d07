using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Model;
using SpeedLimit.Onnx;
using SpeedLimit.Reporting;
using SpeedLimit.Search;
using SpeedLimit.Training;

namespace SpeedLimit.Pipeline;

public enum PipelineStage { Data, Profiling, Predictor, Supermodel, Search, Baselines, Export, Verification, Report }

/// <summary>Progress of one stage: <paramref name="Completed"/> of <paramref name="Total"/> units.</summary>
public sealed record PipelineProgress(PipelineStage Stage, string Message, int Completed, int Total, TimeSpan? Eta = null);

/// <summary>
/// A bound's winner as deployed: its int8 ONNX file, its measurement with the verification protocol, the verdict on
/// the bound (<see cref="LatencyBound"/>), and its dev metric on both runtimes.
/// </summary>
public sealed record DeployedWinner(double BoundMs, Architecture Arch, string OnnxFile, string CheckpointFile,
    double EngineMetric, double OnnxMetric, LatencyRecord Measured, bool MeetsBound, BoundJudgement? Judgement = null);

public sealed record PipelineResult(string RunFolder, RunResults Results, IReadOnlyList<DeployedWinner> Winners,
    IReadOnlyDictionary<PipelineStage, double> StageSeconds, IReadOnlyList<string> Notes);

/// <summary>
/// The SpeedLimit run, stage by stage: tokenize the task → profile int8 (and fp32) latency of a
/// sample of the space on ONNX Runtime → fit the latency predictor → train the weight-sharing
/// supermodel → evolutionary search over the narrowed space (extract, fine-tune, int8-simulate,
/// score; finalists measured) → rebuild, export and re-measure each winner → report.
///
/// Everything resumable lives in a work folder beside the output (<c>OUTPUT.partial</c>): the
/// latency dataset, the supermodel checkpoint and the SQLite study. The output folder appears
/// only when complete.
/// </summary>
public sealed class SpeedLimitPipeline(PipelineOptions options)
{
    public IProgress<PipelineProgress>? Progress { get; set; }
    /// <summary>Raw search progress (per candidate), for a richer display.</summary>
    public IProgress<SearchProgress>? SearchProgress { get; set; }

    private readonly Dictionary<PipelineStage, double> _stageSeconds = new();
    private readonly List<string> _notes = new();

    public static string WorkFolderFor(string output) => Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar) + ".partial";

    public PipelineResult Run(CancellationToken cancel = default)
    {
        options.Validate();
        var output = Path.GetFullPath(options.Output.Folder).TrimEnd(Path.DirectorySeparatorChar);
        var work = WorkFolderFor(output);
        // Checked before anything is written (only the lock file, which goes with the run): a bad request leaves nothing behind.
        using var runLock = RunLock.Acquire(output);
        if (runLock.StalePid is int stale) _notes.Add($"took over the lock of run {stale}, which is no longer running");
        CheckFolders(output, work);
        var task = Stage(PipelineStage.Data, () => LoadTask());
        bool created = CreateWorkFolder(output, work);

        var profiler = new LatencyProfiler(new LatencyProfilerOptions
        {
            Batch = 1, SequenceLength = options.Profiling.SequenceLength, Threads = options.Profiling.Threads,
            Heads = options.Space.Heads, VocabSize = task.Encoder.VocabSize, Seed = options.Seed, Protocol = options.Profiling.Protocol,
        });
        var latencyPath = options.Profiling.DatasetPath is { } shared ? Path.GetFullPath(shared) : Path.Combine(work, "latency.jsonl");
        // Finalist measurements go to the run's own file: the shared dataset (what predictors are fitted on) stays as profiled.
        var measuredPath = Path.Combine(work, "measured.jsonl");
        var precisions = options.CompareFp32Search || options.Baselines.Count > 0 ? new[] { Precision.Int8, Precision.Fp32 } : new[] { options.Precision };
        Dictionary<Precision, LatencyPredictor> predictors;
        List<double> bounds;
        try
        {
            Stage(PipelineStage.Profiling, () => Profile(profiler, precisions, latencyPath, cancel));
            var profiled = LatencyDataset.Load(latencyPath);
            predictors = Stage(PipelineStage.Predictor, () => precisions.ToDictionary(p => p, p => FitPredictor(profiled, p, work)));
            bounds = options.BoundsMs.Count > 0 ? options.BoundsMs.ToList() : AutoBounds(profiled, options.Precision);
            CheckFeasible(bounds, predictors);
        }
        catch (Exception ex) when (created && CliFacingError(ex))
        {
            // Nothing worth resuming yet (a reused latency dataset keeps its records): leave no work folder to trip the corrected rerun.
            Directory.Delete(work, recursive: true);
            throw;
        }

        var supermodel = Stage(PipelineStage.Supermodel, () => SupermodelStage.Train(new SupermodelJob(options.Supermodel, options.Space, options.Seed, options.TrainThreads, options.Profiling.SequenceLength), task, Path.Combine(work, "supermodel.safetensors"), Progress, _notes, cancel));

        using var store = StudyStore.Open(Path.Combine(work, "study.db"));
        var searches = new List<SearchResult>();
        var evaluators = new Dictionary<Precision, CandidateEvaluator>();
        foreach (var p in precisions) evaluators[p] = new CandidateEvaluator(supermodel, task, options.FineTune, p, options.TrainThreads);
        Stage(PipelineStage.Search, () =>
        {
            var order = options.CompareFp32Search ? new[] { options.Precision, Other(options.Precision) } : new[] { options.Precision };
            foreach (var p in order)
                searches.Add(RunSearch(store, p, bounds, predictors[p], evaluators[p], profiler, measuredPath, task, cancel));
            return 0;
        });
        var baselines = new List<BaselineResult>();
        if (options.Baselines.Count > 0)
            Stage(PipelineStage.Baselines, () =>
            {
                foreach (var p in new[] { Precision.Fp32, Precision.Int8 })
                    baselines.Add(RunBaselines(store, p, predictors[p], evaluators[p], profiler, task, cancel));
                return 0;
            });

        var staging = Path.Combine(work, StagingFolder);
        try
        {
            var results = new RunResults($"SpeedLimit on '{task.Task.Name}'", DateTimeOffset.UtcNow, searches, baselines);
            Stage(PipelineStage.Report, () => { RunReport.Write(staging, results); return 0; });
            var winners = Stage(PipelineStage.Export, () => ExportWinners(searches[0], evaluators[options.Precision], task, staging, cancel));
            Stage(PipelineStage.Verification, () => { VerifyWinners(winners, profiler, staging); return 0; });
            AppendDeploymentSection(Path.Combine(staging, RunReport.ReportFile), winners);
            WriteJsonAtomically(Path.Combine(staging, "deployment.json"), new { winners = winners.Select(DescribeWinner), notes = _notes, stageSeconds = _stageSeconds });
            store.Dispose(); // closing the only connection checkpoints the WAL into study.db before it is copied
            File.Copy(latencyPath, Path.Combine(staging, "latency.jsonl"));
            foreach (var f in new[] { "measured.jsonl", "study.db" })
                if (File.Exists(Path.Combine(work, f))) File.Copy(Path.Combine(work, f), Path.Combine(staging, f));
            foreach (var f in Directory.GetFiles(work, "predictor-*.json")) File.Copy(f, Path.Combine(staging, Path.GetFileName(f)));
            Directory.Move(staging, output);
            Directory.Delete(work, recursive: true);
            return new PipelineResult(output, results, winners, _stageSeconds, _notes);
        }
        catch
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            throw;
        }
    }

    /// <summary>Refuses an existing output, an unfinished run without --resume, and a resume with other settings (naming them).</summary>
    private void CheckFolders(string output, string work)
    {
        if (Directory.Exists(output) || File.Exists(output))
            throw new UserInputException($"output '{options.Output.Folder}' already exists; choose another --output or remove it");
        if (!Directory.Exists(work)) return;
        if (!options.Output.Resume)
            throw new UserInputException($"an unfinished run is in '{work}'; pass --resume to continue it, or delete that folder to start over");
        var fingerprintPath = Path.Combine(work, OptionsFile);
        if (File.Exists(fingerprintPath) && OptionsFingerprint.Differences(File.ReadAllText(fingerprintPath), options.Fingerprint()) is { Count: > 0 } diffs)
            throw new UserInputException($"the unfinished run in '{work}' used different settings ({string.Join("; ", diffs.Take(4))}{(diffs.Count > 4 ? $"; and {diffs.Count - 4} more" : "")}); resume it with the same flags, or delete that folder to start over");
    }

    /// <summary>Creates (or reopens) the work folder; clears what a killed export left. True when this run created it.</summary>
    private bool CreateWorkFolder(string output, string work)
    {
        bool existed = Directory.Exists(work);
        if (existed) _notes.Add("resumed an unfinished run");
        Directory.CreateDirectory(work);
        var staging = Path.Combine(work, StagingFolder);
        if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        // Staging folders of earlier versions lived beside the output.
        foreach (var old in Directory.GetDirectories(Path.GetDirectoryName(output)!, $".{Path.GetFileName(output)}.staging-*"))
            Directory.Delete(old, recursive: true);
        WriteTextAtomically(Path.Combine(work, OptionsFile), options.Fingerprint());
        return !existed;
    }

    private const string OptionsFile = "options.json";
    private const string StagingFolder = "staging";

    private static bool CliFacingError(Exception ex) => ex is UserInputException or ArgumentException or InvalidDataException or FileNotFoundException;

    /// <summary>Each searched precision must have at least one architecture predicted within each bound, before the supermodel is trained.</summary>
    private void CheckFeasible(IReadOnlyList<double> bounds, IReadOnlyDictionary<Precision, LatencyPredictor> predictors)
    {
        var searched = options.CompareFp32Search ? new[] { options.Precision, Other(options.Precision) } : new[] { options.Precision };
        foreach (var p in searched)
            foreach (var b in bounds)
                SpaceNarrowing.Narrow(options.Space, predictors[p], b); // throws naming the fastest architecture
    }

    private EncodedTask LoadTask()
    {
        Report(PipelineStage.Data, $"loading task '{options.Data.Task}' and checking the request", 0, 1);
        var (task, warnings) = RunPreflight.Run(options);
        foreach (var w in warnings) _notes.Add($"warning: {w}");
        Report(PipelineStage.Data, $"{task.Task.Name}: {task.Train.Count} train / {task.Dev.Count} dev examples, vocabulary {task.Encoder.VocabSize}", 1, 1);
        return task;
    }

    private int Profile(LatencyProfiler profiler, IReadOnlyList<Precision> precisions, string datasetPath, CancellationToken cancel)
    {
        var rng = new Random(options.Seed);
        var all = options.Space.Enumerate().ToList();
        IEnumerable<Architecture> sample = all.Count <= options.Profiling.Count + 2
            ? all
            : new[] { options.Space.Smallest, options.Space.Largest }.Concat(all.OrderBy(_ => rng.Next()).Take(options.Profiling.Count)).Distinct();
        var clock = Stopwatch.StartNew();
        profiler.ProfileAll(sample, precisions, datasetPath, (record, done, total) =>
            Report(PipelineStage.Profiling, record is null ? $"{total} measurements to take" : $"{record.Arch} {record.Precision}: {record.MedianMs:F3} ms",
                done, total, Eta(clock.Elapsed, done, total)), cancel);
        return 0;
    }

    private LatencyPredictor FitPredictor(IReadOnlyList<LatencyRecord> records, Precision precision, string work)
    {
        var report = LatencyPredictorFitter.Fit(records, new LatencyFitOptions
        {
            Precision = precision, Batch = 1, SequenceLength = options.Profiling.SequenceLength, Threads = options.Profiling.Threads, Seed = options.Seed,
            Model = options.Predictor.Model, BoundStatistic = options.Search.VerifyStatistic,
        });
        report.Predictor.Save(Path.Combine(work, $"predictor-{precision.ToString().ToLowerInvariant()}.json"));
        var held = report.HeldOut;
        Report(PipelineStage.Predictor, $"{precision} predictor: {report.Chosen}" + (held is null ? "" : $", held-out MAPE {held.MapePercent:F2} %") +
            $", margin {report.Predictor.RelativeMargin:P1} on {LatencyBound.Name(options.Search.VerifyStatistic)}", 1, 1);
        foreach (var w in report.Warnings) _notes.Add(w);
        return report.Predictor;
    }

    private List<double> AutoBounds(IReadOnlyList<LatencyRecord> records, Precision precision)
    {
        var ms = records
            .Where(r => r.Precision == precision && r.Threads == options.Profiling.Threads && r.SequenceLength == options.Profiling.SequenceLength)
            .Select(r => LatencyBound.Estimate(r, options.Search.VerifyStatistic)).Order().ToArray();
        var bounds = options.AutoBoundQuantiles.Select(q => Math.Round(ms[(int)Math.Clamp(q * (ms.Length - 1), 0, ms.Length - 1)], 3)).Distinct().ToList();
        _notes.Add($"bounds chosen at the {string.Join(", ", options.AutoBoundQuantiles.Select(q => q.ToString("P0", CultureInfo.InvariantCulture)))} quantiles of profiled {precision} {LatencyBound.Name(options.Search.VerifyStatistic)} latency: {string.Join(", ", bounds.Select(b => $"{b} ms"))}");
        return bounds;
    }

    private SearchResult RunSearch(StudyStore store, Precision precision, IReadOnlyList<double> bounds, LatencyPredictor predictor,
        CandidateEvaluator evaluator, LatencyProfiler profiler, string measuredPath, EncodedTask task, CancellationToken cancel)
    {
        var definition = new SearchDefinition(task.Task.Name, precision, options.Space, bounds, options.Seed, options.FineTune.Describe(), options.Search);
        var search = new EvolutionarySearch(predictor, evaluator, new OnnxLatencyMeasurer(profiler, precision))
        {
            Label = precision == Precision.Int8 ? "int8 search (SpeedLimit)" : "fp32 search (AutoTinyBERT-style)",
            // The search recalibrates the predictor's margin from these measurements itself (bound by bound).
            OnMeasured = r => LatencyDataset.Append(measuredPath, r),
        };
        search.Progress = new SyncProgress<SearchProgress>(p =>
        {
            SearchProgress?.Report(p);
            Report(PipelineStage.Search, $"[{precision}] {p.Message}", p.Completed, p.Total, p.EstimatedRemaining);
        });
        string study = $"search-{precision.ToString().ToLowerInvariant()}";
        return store.Exists(study) ? search.Resume(store, study, definition, cancel) : search.Run(definition, store, study, cancel);
    }

    private BaselineResult RunBaselines(StudyStore store, Precision precision, LatencyPredictor predictor, CandidateEvaluator evaluator,
        LatencyProfiler profiler, EncodedTask task, CancellationToken cancel)
    {
        var definition = new BaselineDefinition(task.Task.Name, precision,
            options.Baselines.Select(a => new BaselineArchitecture($"uniform {a}", a)).ToList(), options.Seed, options.FineTune.Describe());
        var search = new EvolutionarySearch(predictor, evaluator, new OnnxLatencyMeasurer(profiler, precision))
        {
            Progress = new SyncProgress<SearchProgress>(p => Report(PipelineStage.Baselines, $"[{precision}] {p.Message}", p.Completed, p.Total, p.EstimatedRemaining)),
        };
        return search.EvaluateBaselines(definition, store, $"baselines-{precision.ToString().ToLowerInvariant()}", $"uniform {precision} baselines", cancel);
    }

    /// <summary>Rebuilds each bound's winner (fine-tuning is deterministic per seed), exports it as int8 ONNX and scores it on ORT.</summary>
    private List<DeployedWinner> ExportWinners(SearchResult search, CandidateEvaluator evaluator, EncodedTask task, string folder, CancellationToken cancel)
    {
        var winners = new List<DeployedWinner>();
        var bounds = search.Bounds.Where(b => b.Winner is not null).ToList();
        if (bounds.Count == 0) throw new UserInputException("no candidate met any bound by measurement; loosen the bound or widen the search space");
        int i = 0;
        foreach (var b in bounds)
        {
            var arch = b.Winner!.Arch;
            Report(PipelineStage.Export, $"rebuilding {arch} for {b.BoundMs:G4} ms", i, bounds.Count);
            var model = evaluator.FineTune(arch, EvolutionarySearch.CandidateSeed(options.Seed, arch), cancel);
            string name = bounds.Count == 1 ? "best" : $"best-{b.BoundMs.ToString("0.###", CultureInfo.InvariantCulture)}ms";
            var onnx = Path.Combine(folder, name + ".onnx");
            var ckpt = Path.Combine(folder, name + ".safetensors");
            BertOnnxExporter.Save(model.Config, model.Layout, model.Parameters, onnx,
                new OnnxExportOptions { Precision = options.Precision });
            BertCheckpoint.Save(ckpt, model.Config, model.Parameters);
            double engine = task.EvaluateDev(model, options.Precision == Precision.Int8 ? new Quantization.Int8Simulation(model) : null).Primary;
            double ort;
            using (var runner = new OnnxRunner(onnx, new OnnxRunnerOptions { IntraOpThreads = options.TrainThreads }))
            {
                var logits = runner.Predict(task.Dev.Select(e => e.InputIds).ToList(), task.Dev.Select(e => e.TokenTypeIds).ToList());
                ort = task.Score(logits).Primary;
            }
            if (Math.Abs(engine - b.Winner.Metric) > 1e-9)
                _notes.Add($"{arch}: rebuilt metric {engine:F4} differs from the searched {b.Winner.Metric:F4}");
            winners.Add(new DeployedWinner(b.BoundMs, arch, Path.GetFileName(onnx), Path.GetFileName(ckpt), engine, ort, null!, false));
            Report(PipelineStage.Export, $"{name}.onnx: engine int8 metric {engine:F4}, ONNX Runtime {ort:F4}", ++i, bounds.Count);
        }
        return winners;
    }

    /// <summary>Measures each exported file with the profiler protocol; the bound is checked against this measurement.</summary>
    private void VerifyWinners(List<DeployedWinner> winners, LatencyProfiler profiler, string folder)
    {
        var protocol = options.Profiling.VerificationProtocol;
        for (int i = 0; i < winners.Count; i++)
        {
            var w = winners[i];
            var bound = new LatencyBound(w.BoundMs, options.Search.VerifyStatistic);
            Report(PipelineStage.Verification, $"measuring {w.OnnxFile} ({protocol.Name} protocol, {bound})", i, winners.Count);
            var record = profiler.ProfileFile(Path.Combine(folder, w.OnnxFile), w.Arch, options.Precision, bound, protocol: protocol);
            var judgement = bound.Judge(record);
            winners[i] = w with { Measured = record, MeetsBound = judgement.Meets, Judgement = judgement };
            if (judgement.Verdict == BoundVerdict.Fails)
                _notes.Add($"{w.OnnxFile}: the final measurement fails the bound ({judgement.Describe()}), although the search's screening measurement had it within; the machine is slower now or noisy (see the reference model's latency in deployment.json): re-measure with 'speedlimit profile', or choose a model for a tighter bound");
            else if (judgement.Verdict == BoundVerdict.Uncertain)
                _notes.Add($"{w.OnnxFile}: uncertain after the verification protocol's limit ({judgement.Describe()}): the bound lies inside the confidence interval of its {LatencyBound.Name(bound.Statistic)}");
            if (record.Protocol is { Drifted: true } note)
                _notes.Add($"{w.OnnxFile}: the reference model drifted {note.DriftPercent:F0} % during the final measurement (after {note.Attempts} attempt(s)); the machine's speed changed while measuring");
            Report(PipelineStage.Verification, $"{w.OnnxFile}: {judgement.Describe()}", i + 1, winners.Count);
        }
    }

    private static object DescribeWinner(DeployedWinner w) => new
    {
        boundMs = w.BoundMs, arch = w.Arch.ToString(), onnx = w.OnnxFile, checkpoint = w.CheckpointFile,
        engineInt8Metric = w.EngineMetric, onnxRuntimeMetric = w.OnnxMetric, measured = w.Measured, meetsBound = w.MeetsBound,
        verdict = w.Judgement is { } j ? LatencyBound.Name(j.Verdict) : null,
        statistic = w.Judgement is { } k ? LatencyBound.Name(k.Bound.Statistic) : null,
        intervalMs = w.Judgement is { } l ? new { estimate = l.EstimateMs, lower = l.LowerMs, upper = l.UpperMs, confidence = l.Confidence } : null,
    };

    private void AppendDeploymentSection(string reportPath, IReadOnlyList<DeployedWinner> winners)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder(File.ReadAllText(reportPath));
        sb.AppendLine().AppendLine("## Deployable models").AppendLine();
        string stat = LatencyBound.Name(options.Search.VerifyStatistic);
        sb.AppendLine($"| bound (ms) | architecture | file | dev metric (engine int8) | dev metric (ONNX Runtime) | measured p50 / p90 / p99 (ms) | {stat} confidence interval (ms) | runs | verdict |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var w in winners)
        {
            var s = w.Measured.Summary;
            string quantiles = s is null ? string.Create(inv, $"{w.Measured.MedianMs:F3} / {w.Measured.P90Ms:F3} / –") : string.Create(inv, $"{s.P50Ms:F3} / {s.P90Ms:F3} / {s.P99Ms:F3}");
            string interval = w.Judgement is { Confidence: double c } j
                ? string.Create(inv, $"[{(j.LowerMs is double lo ? lo.ToString("F3", inv) : "open")}, {(j.UpperMs is double up ? up.ToString("F3", inv) : "open")}] at {c:P0}")
                : "–";
            string verdict = w.Judgement is { } jj ? (jj.Meets ? "meets" : $"**{LatencyBound.Name(jj.Verdict)}**") : (w.MeetsBound ? "meets" : "**fails**");
            sb.AppendLine(string.Create(inv, $"| {w.BoundMs:G4} | {w.Arch} | `{w.OnnxFile}` | {w.EngineMetric:F4} | {w.OnnxMetric:F4} | {quantiles} | {interval} | {w.Measured.Runs:N0} | {verdict} |"));
        }
        if (winners.Count > 0)
        {
            var m = winners[0].Measured;
            sb.AppendLine().AppendLine(string.Create(inv, $"The bound is on the **{stat}** latency. A model **meets** it when the upper limit of the distribution-free (order-statistic) confidence interval of its {stat} is within the bound, **fails** when the lower limit exceeds it, and is **uncertain** otherwise (then it was sampled longer, up to the protocol's limit)."));
            sb.AppendLine().AppendLine(string.Create(inv, $"Measured on {m.Device}, batch {m.Batch} × {m.SequenceLength} tokens, {m.Clock} clock; {(m.Protocol is { } note ? $"{note.Isolation}; protocol {note.Protocol}; the fixed reference model's median was {note.ReferenceP50Ms:F3} ms with {note.DriftPercent:F1} % drift across rounds{(note.Drifted ? " (**drifted**)" : "")}" : $"{m.Runs} timed runs")}."));
            sb.AppendLine().AppendLine("Same seed, same result: a rerun with the same flags, seed and latency dataset (`--latency-data`) repeats the search; measurements on a noisy machine can differ between runs, so a fresh dataset can pick a different winner.");
        }
        if (_notes.Count > 0)
        {
            sb.AppendLine().AppendLine("## Notes").AppendLine();
            foreach (var n in _notes) sb.AppendLine($"- {n}");
        }
        sb.AppendLine().AppendLine("## Stage timings").AppendLine();
        foreach (var (stage, s) in _stageSeconds) sb.AppendLine(string.Create(inv, $"- {stage}: {s:F1} s"));
        WriteTextAtomically(reportPath, sb.ToString());
    }

    private T Stage<T>(PipelineStage stage, Func<T> body)
    {
        var clock = Stopwatch.StartNew();
        var result = body();
        _stageSeconds[stage] = clock.Elapsed.TotalSeconds;
        return result;
    }

    private void Report(PipelineStage stage, string message, int done, int total, TimeSpan? eta = null) =>
        Progress?.Report(new PipelineProgress(stage, message, done, total, eta));

    internal static TimeSpan? Eta(TimeSpan elapsed, int done, int total) =>
        done <= 0 || total <= done ? null : TimeSpan.FromSeconds(elapsed.TotalSeconds / done * (total - done));

    private static Precision Other(Precision p) => p == Precision.Int8 ? Precision.Fp32 : Precision.Int8;

    private static void WriteTextAtomically(string path, string text) => AtomicFile.WriteAllText(path, text);

    private static void WriteJsonAtomically(string path, object value) =>
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(value, SearchJson.Indented));
}
