using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Latency.Remote;
using SpeedLimit.Model;
using SpeedLimit.Onnx;
using SpeedLimit.Pretrained;
using SpeedLimit.Reporting;
using SpeedLimit.Search;
using SpeedLimit.Training;

namespace SpeedLimit.Pipeline;

public enum PipelineStage { Data, Profiling, Predictor, Supermodel, Search, Baselines, Export, Verification, Report }

/// <summary>Progress of one stage: <paramref name="Completed"/> of <paramref name="Total"/> units.</summary>
public sealed record PipelineProgress(PipelineStage Stage, string Message, int Completed, int Total, TimeSpan? Eta = null);

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
    /// <summary>The fingerprint of the device latency is measured on, and its name when remote.</summary>
    private (DeviceFingerprint? Fingerprint, string? Name) _measuringDevice;
    private (int Completed, int Total) _searchCounts;

    public static string WorkFolderFor(string output) => Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar) + ".partial";

    public PipelineResult Run(CancellationToken cancel = default)
    {
        options.Validate();
        var work = WorkFolderFor(options.Output.Folder);
        try
        {
            return RunOnce(cancel);
        }
        catch (LatencyEndpointException ex) when (Directory.Exists(work))
        {
            // The endpoint stopped answering (or refused) mid-run: what was measured is in the work folder.
            throw new LatencyEndpointException($"{ex.Message}; the unfinished run is kept in '{work}': rerun the same command with --resume to continue", ex);
        }
    }

    private PipelineResult RunOnce(CancellationToken cancel)
    {
        var output = Path.GetFullPath(options.Output.Folder).TrimEnd(Path.DirectorySeparatorChar);
        var work = WorkFolderFor(output);
        // Checked before anything is written (only the lock file, which goes with the run): a bad request leaves nothing behind.
        using var runLock = RunLock.Acquire(output);
        if (runLock.StalePid is int stale) _notes.Add($"took over the lock of run {stale}, which is no longer running");
        CheckFolders(output, work);
        // The device latency is measured on; a remote one is asked for its fingerprint now, so one that is down or refuses the token fails the run before any work.
        using var remote = options.Profiling.Endpoint is { } endpoint ? new HttpLatencyDevice(endpoint) : null;
        ILatencyDevice device = remote ?? ChildProcessLatencyDevice.Shared;
        var measuring = device.Fingerprint(options.Profiling.Threads);
        _measuringDevice = (measuring, remote?.Name);
        if (remote is not null) _notes.Add($"latency measured on the deployment machine, {remote.Name}: {measuring}");
        PretrainedEncoder? encoder = null;
        if (options.Pretrained is { } pre)
        {
            // The pretrained model decides the tokenizer (its vocabulary) and, unless --space was given, the search space.
            encoder = Stage(PipelineStage.Data, () => LoadPretrained(pre));
            var space = pre.DeriveSpace ? PretrainedSpace.Derive(encoder.Config, pre.SpaceSteps) : options.Space;
            PretrainedSpace.Check(space, encoder.Config, $"pretrained model '{encoder.Source}'");
            options = options with { Space = space };
            options.Validate(); // baselines against the derived space
            _notes.Add($"pretrained {encoder.Source} {encoder.Arch}, {encoder.Config.Heads} heads; search space {space}");
        }
        var task = Stage(PipelineStage.Data, () => LoadTask(encoder));
        bool created = CreateWorkFolder(output, work);

        var profiler = new LatencyProfiler(new LatencyProfilerOptions
        {
            Batch = 1, SequenceLength = options.Profiling.SequenceLength, Threads = options.Profiling.Threads,
            Heads = options.Space.Heads, VocabSize = task.Encoder.VocabSize, Seed = options.Seed, Protocol = options.Profiling.Protocol, Clock = options.Profiling.Clock,
        }, device);
        var latencyPath = options.Profiling.DatasetPath is { } shared ? Path.GetFullPath(shared) : Path.Combine(work, "latency.jsonl");
        // A resumed run's own records must come from the device it measures on now (a shared --latency-data file was checked in the preflight).
        if (options.Profiling.DatasetPath is null && !created && File.Exists(latencyPath))
            RunPreflight.CheckLatencyDataset(latencyPath, options.Profiling, measuring, remote?.Name,
                "resume against the device the run started on (the same --latency-endpoint, or none), or pass --allow-other-devices");
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
            bounds = options.BoundsMs.Count > 0 ? options.BoundsMs.ToList() : AutoBounds(profiled, options.Precision, predictors[options.Precision]);
            CheckFeasible(bounds, predictors);
        }
        catch (Exception ex) when (created && CliFacingError(ex))
        {
            // Nothing worth resuming yet (a reused latency dataset keeps its records): leave no work folder to trip the corrected rerun.
            Directory.Delete(work, recursive: true);
            throw;
        }

        var job = new SupermodelJob(options.Supermodel, options.Space, options.Seed, options.TrainThreads, options.Profiling.SequenceLength);
        PretrainedSupermodel? fromPretrained = null;
        var supermodel = Stage(PipelineStage.Supermodel, () =>
        {
            if (encoder is null) return SupermodelStage.Train(job, task, Path.Combine(work, "supermodel.safetensors"), Progress, _notes, cancel);
            var start = encoder.CreateModel(task.Head, task.ConfigFor(options.Space.Largest, options.Space.Heads).Labels, options.Seed, out var fresh);
            if (fresh.Count > 0) _notes.Add($"initialized from scratch (not in the pretrained model): {string.Join(", ", fresh)}");
            fromPretrained = SupermodelStage.TrainFromPretrained(job, options.Pretrained!, task, start, work, Progress, _notes, cancel);
            return fromPretrained.Supermodel;
        });

        using var store = StudyStore.Open(options.Study.Location ?? Path.Combine(work, "study.db"));
        var searches = new List<SearchResult>();
        var evaluators = new Dictionary<Precision, CandidateEvaluator>();
        // Candidates side by side on a share of the threads each, unless workers evaluate them (a queue hands out one at a time).
        var (sideBySide, threadsEach) = options.Study.Coordinates ? (1, options.TrainThreads) : options.Search.SideBySide(options.TrainThreads);
        foreach (var p in precisions) evaluators[p] = new CandidateEvaluator(supermodel, task, options.FineTune, p, threadsEach, sideBySide);
        // With an explicit study store this run coordinates: one queue per precision, its package published once.
        var queues = new Dictionary<Precision, CandidateQueue>();
        using var closeQueues = new QueueSet(queues);
        if (options.Study.Coordinates)
            foreach (var p in precisions)
            {
                var package = CandidatePackage.Publish(store, supermodel, task, options.FineTune, p, options.TrainThreads, work, options.Study.PublishFolder);
                queues[p] = new CandidateQueue(store, package.ToJson(), options.Study.QueueOptions()) { Waiting = WaitingReporter(p) };
            }
        if (options.Study.Coordinates)
            _notes.Add($"studies in {store.Path}: {string.Join(", ", precisions.Select(p => options.Study.StudyName($"search-{p.ToString().ToLowerInvariant()}", output)))}" +
                (options.Study.EvaluateLocally ? "" : " (evaluated by workers only)"));
        Stage(PipelineStage.Search, () =>
        {
            var order = options.CompareFp32Search ? new[] { options.Precision, Other(options.Precision) } : new[] { options.Precision };
            foreach (var p in order)
                searches.Add(RunSearch(store, queues.GetValueOrDefault(p), p, bounds, predictors[p], evaluators[p], profiler, measuredPath, task, output, cancel));
            return 0;
        });
        var baselines = new List<BaselineResult>();
        if (options.Baselines.Count > 0)
            Stage(PipelineStage.Baselines, () =>
            {
                foreach (var p in new[] { Precision.Fp32, Precision.Int8 })
                    baselines.Add(RunBaselines(store, queues.GetValueOrDefault(p), p, predictors[p], evaluators[p], profiler, task, output, cancel));
                return 0;
            });

        if (fromPretrained is not null)
            Stage(PipelineStage.Baselines, () => { baselines.AddRange(MeasureTeacher(fromPretrained, profiler, task, work)); return 0; });

        // The tail runs one way: export → verify → complete winner records → the report, written once from them.
        var staging = Path.Combine(work, StagingFolder);
        try
        {
            Directory.CreateDirectory(staging);
            var contract = RunPackage.Contract(task.Task, task.Encoder, task.MaxLength);
            var exported = Stage(PipelineStage.Export, () => ExportWinners(searches[0], evaluators[options.Precision], task, contract, staging, cancel));
            var winners = Stage(PipelineStage.Verification, () => VerifyWinners(exported, profiler, staging));
            closeQueues.Dispose(); // hands the studies back (coordinator leases) before the store closes
            store.Dispose(); // closing the only connection checkpoints the WAL into study.db before it is copied
            var results = new RunResults($"SpeedLimit on '{task.Task.Name}'", DateTimeOffset.UtcNow, searches, baselines);
            var deployment = new Deployment(contract, winners, [.. _notes], _stageSeconds.ToDictionary(kv => kv.Key.ToString(), kv => Math.Round(kv.Value, 2)));
            Stage(PipelineStage.Report, () =>
            {
                RunReport.WriteInto(staging, results, deployment);
                File.Copy(latencyPath, Path.Combine(staging, "latency.jsonl"));
                foreach (var f in new[] { "measured.jsonl", "study.db" })
                    if (File.Exists(Path.Combine(work, f))) File.Copy(Path.Combine(work, f), Path.Combine(staging, f));
                foreach (var f in Directory.GetFiles(work, "predictor-*.json")) File.Copy(f, Path.Combine(staging, Path.GetFileName(f)));
                return 0;
            });
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

    /// <param name="encoder">A pretrained model whose vocabulary tokenizes the task (null: the options' vocabulary).</param>
    private EncodedTask LoadTask(PretrainedEncoder? encoder)
    {
        Report(PipelineStage.Data, $"loading task '{options.Data.Task}' and checking the request", 0, 1);
        string? vocab = null;
        try
        {
            var checkedOptions = options;
            if (encoder is not null)
            {
                // The tokenizer reads a vocab.txt; the model's goes to a temporary file (the work folder does not exist yet).
                vocab = Path.Combine(Path.GetTempPath(), $"speedlimit-vocab-{Guid.NewGuid():N}.txt");
                AtomicFile.WriteAllText(vocab, string.Join('\n', encoder.Vocab) + "\n");
                checkedOptions = options with { Data = options.Data with { VocabPath = vocab } };
            }
            var (task, warnings) = RunPreflight.Run(checkedOptions, _measuringDevice.Fingerprint, _measuringDevice.Name);
            foreach (var w in warnings) _notes.Add($"warning: {w}");
            Report(PipelineStage.Data, $"{task.Task.Name}: {task.Train.Count} train / {task.Dev.Count} dev examples, vocabulary {task.Encoder.VocabSize}", 1, 1);
            return task;
        }
        finally
        {
            if (vocab is not null) File.Delete(vocab);
        }
    }

    /// <summary>Imports the pretrained model (nothing is written).</summary>
    private PretrainedEncoder LoadPretrained(PretrainedStartOptions pre)
    {
        Report(PipelineStage.Data, $"importing pretrained model '{pre.Source}'", 0, 1);
        var encoder = PretrainedLoader.Load(pre.Source, pre.VocabPath);
        if (!encoder.LowerCase) _notes.Add($"{encoder.Source} is cased, but the task tokenizer lower-cases; accuracy may suffer");
        foreach (var n in encoder.Notes) _notes.Add(n);
        Report(PipelineStage.Data, $"pretrained {encoder.Source}: {encoder.Arch}, {encoder.Config.Heads} heads, vocabulary {encoder.Config.VocabSize}", 1, 1);
        return encoder;
    }

    /// <summary>The fine-tuned teacher as the paper's "Baseline BERT" (fp32) and "Quantized BERT" (int8): exported, measured, placed beside the searches.</summary>
    private IEnumerable<BaselineResult> MeasureTeacher(PretrainedSupermodel built, LatencyProfiler profiler, EncodedTask task, string work)
    {
        var teacher = built.Teacher;
        foreach (var (precision, metric) in new[] { (Precision.Fp32, built.TeacherMetricFp32), (Precision.Int8, built.TeacherMetricInt8) })
        {
            var path = Path.Combine(work, $"teacher-{precision.ToString().ToLowerInvariant()}.onnx");
            Report(PipelineStage.Baselines, $"measuring the teacher at {precision}", 0, 1);
            BertOnnxExporter.Save(teacher.Config, teacher.Layout, teacher.Parameters, path, new OnnxExportOptions { Precision = precision });
            var started = DateTimeOffset.UtcNow;
            var record = profiler.ProfileFile(path, teacher.Config.Arch, precision);
            File.Delete(path);
            var candidate = new CandidateRecord(teacher.Config.Arch, 0, task.Task.Name, precision, "fine-tuned teacher", options.Seed, metric, null,
                built.TeacherSeconds, built.TeacherSeconds, started, DateTimeOffset.UtcNow, record.MedianMs, record);
            var definition = new BaselineDefinition(task.Task.Name, precision, [new BaselineArchitecture(PaperComparison.TeacherLabel, teacher.Config.Arch)], options.Seed, "fine-tuned teacher");
            yield return new BaselineResult($"{PaperComparison.TeacherLabel} (fine-tuned pretrained, {EvolutionarySearch.PrecisionName(precision)})", null, definition,
                [new BaselineEntry(PaperComparison.TeacherLabel, candidate)]);
        }
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

    /// <summary>
    /// Bounds at quantiles of the profiled latencies, each raised to what the predictor can promise for the
    /// fastest architecture (its prediction with the margin), so an automatic bound is never infeasible — on a
    /// noisy machine the margin is wide and the quantiles alone can fall below every upper prediction.
    /// </summary>
    private List<double> AutoBounds(IReadOnlyList<LatencyRecord> records, Precision precision, LatencyPredictor predictor)
    {
        var ms = records
            .Where(r => r.Precision == precision && r.Threads == options.Profiling.Threads && r.SequenceLength == options.Profiling.SequenceLength)
            .Select(r => LatencyBound.Estimate(r, options.Search.VerifyStatistic)).Order().ToArray();
        double fastestUpperMs = options.Space.Enumerate().Min(a => predictor.PredictMs(a)) * (1 + predictor.RelativeMargin);
        double floorMs = Math.Ceiling(fastestUpperMs * 1.02 * 1000) / 1000;
        var quantiles = options.AutoBoundQuantiles.Select(q => Math.Round(ms[(int)Math.Clamp(q * (ms.Length - 1), 0, ms.Length - 1)], 3)).ToList();
        var bounds = quantiles.Select(b => Math.Max(b, floorMs)).Distinct().ToList();
        _notes.Add($"bounds chosen at the {string.Join(", ", options.AutoBoundQuantiles.Select(q => q.ToString("P0", CultureInfo.InvariantCulture)))} quantiles of profiled {precision} {LatencyBound.Name(options.Search.VerifyStatistic)} latency: {string.Join(", ", bounds.Select(b => $"{b} ms"))}");
        if (quantiles.Any(b => b < floorMs))
            _notes.Add($"automatic bounds below {floorMs} ms were raised to it: the fastest architecture is predicted within {fastestUpperMs:0.###} ms only with the predictor's {predictor.RelativeMargin:P0} margin (noisy latencies widen it)");
        return bounds;
    }

    private SearchResult RunSearch(StudyStore store, CandidateQueue? queue, Precision precision, IReadOnlyList<double> bounds, LatencyPredictor predictor,
        CandidateEvaluator evaluator, LatencyProfiler profiler, string measuredPath, EncodedTask task, string output, CancellationToken cancel)
    {
        var definition = new SearchDefinition(task.Task.Name, precision, options.Space, bounds, options.Seed, options.FineTune.Describe(), options.Search);
        var search = new EvolutionarySearch(predictor, evaluator, new OnnxLatencyMeasurer(profiler, precision))
        {
            Label = precision == Precision.Int8 ? "int8 search (SpeedLimit)" : "fp32 search (AutoTinyBERT-style)",
            Queue = queue,
            // The search recalibrates the predictor's margin from these measurements itself (bound by bound).
            OnMeasured = r => LatencyDataset.Append(measuredPath, r),
        };
        search.Progress = new SyncProgress<SearchProgress>(p =>
        {
            _searchCounts = (p.Completed, p.Total);
            SearchProgress?.Report(p);
            Report(PipelineStage.Search, $"[{precision}] {p.Message}", p.Completed, p.Total, p.EstimatedRemaining);
        });
        string study = options.Study.StudyName($"search-{precision.ToString().ToLowerInvariant()}", output);
        return store.Exists(study) ? search.Resume(store, study, definition, cancel) : search.Run(definition, store, study, cancel);
    }

    private BaselineResult RunBaselines(StudyStore store, CandidateQueue? queue, Precision precision, LatencyPredictor predictor, CandidateEvaluator evaluator,
        LatencyProfiler profiler, EncodedTask task, string output, CancellationToken cancel)
    {
        var definition = new BaselineDefinition(task.Task.Name, precision,
            options.Baselines.Select(a => new BaselineArchitecture($"uniform {a}", a)).ToList(), options.Seed, options.FineTune.Describe());
        var search = new EvolutionarySearch(predictor, evaluator, new OnnxLatencyMeasurer(profiler, precision))
        {
            Progress = new SyncProgress<SearchProgress>(p => Report(PipelineStage.Baselines, $"[{precision}] {p.Message}", p.Completed, p.Total, p.EstimatedRemaining)),
            Queue = queue,
        };
        return search.EvaluateBaselines(definition, store, options.Study.StudyName($"baselines-{precision.ToString().ToLowerInvariant()}", output), $"uniform {precision} baselines", cancel);
    }

    /// <summary>One exported winner before its latency is verified (every field known).</summary>
    private sealed record ExportedModel(double BoundMs, Architecture Arch, string OnnxFile, string CheckpointFile, string HuggingFaceFolder,
        long OnnxBytes, DevScore Engine, DevScore OnnxRuntime, PaddingEffect Padding);

    /// <summary>Padded batch size of the padding-effect measurement (the runner's default batch).</summary>
    private const int PaddedBatch = 32;

    /// <summary>
    /// Rebuilds each bound's winner (fine-tuning is deterministic per seed), exports it with the
    /// contract in its metadata, writes the tokenizer files beside it and the same weights as a Hugging
    /// Face folder (so users load what we found in their own stack), and scores it on the dev split:
    /// on the engine, and on ONNX Runtime each example alone (as the run folder's README calls it)
    /// and in padded batches (how much int8 outputs depend on padding).
    /// </summary>
    private List<ExportedModel> ExportWinners(SearchResult search, CandidateEvaluator evaluator, EncodedTask task, ModelContract contract,
        string folder, CancellationToken cancel)
    {
        var bounds = search.Bounds.Where(b => b.Winner is not null).ToList();
        if (bounds.Count == 0) throw new UserInputException("no candidate met any bound by measurement; loosen the bound or widen the search space");
        RunPackage.WriteTokenizer(folder, task.Encoder, contract);
        var vocab = RunPackage.Vocabulary(task.Encoder);
        var exported = new List<ExportedModel>();
        var ids = task.Dev.Select(e => e.InputIds).ToList();
        var types = task.Dev.Select(e => e.TokenTypeIds).ToList();
        bool int8 = options.Precision == Precision.Int8;
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
                new OnnxExportOptions { Precision = options.Precision, Contract = contract });
            BertCheckpoint.Save(ckpt, model.Config, model.Parameters);
            var hf = Path.Combine(folder, name + "-hf");
            HuggingFaceFolder.Write(hf, model, vocab, contract.DoLowerCase, labelNames: contract.Labels.Count > 0 ? contract.Labels : null, overwrite: true);
            double engine = task.EvaluateDev(model, int8 ? new Quantization.Int8Simulation(model) : null).Primary;
            float[][] alone, batched;
            using (var runner = new OnnxRunner(onnx, new OnnxRunnerOptions { IntraOpThreads = options.TrainThreads }))
            {
                alone = runner.Predict(ids, types, batchSize: 1);
                batched = runner.Predict(ids, types, batchSize: PaddedBatch);
            }
            double ort = task.Score(alone).Primary;
            if (Math.Abs(engine - b.Winner.Metric) > 1e-9)
                _notes.Add($"{arch}: rebuilt metric {engine:F4} differs from the searched {b.Winner.Metric:F4}");
            exported.Add(new ExportedModel(b.BoundMs, arch, Path.GetFileName(onnx), Path.GetFileName(ckpt), Path.GetFileName(hf), new FileInfo(onnx).Length,
                new DevScore(engine, int8 ? "engine int8 simulation" : "engine fp32", "length-sorted padded batches of 64"),
                new DevScore(ort, $"ONNX Runtime {OnnxRunner.RuntimeVersion}", RunPackage.OnnxScoring),
                MeasurePadding(alone, batched, task)));
            Report(PipelineStage.Export, $"{name}.onnx: engine metric {engine:F4}, ONNX Runtime {ort:F4}", ++i, bounds.Count);
        }
        return exported;
    }

    /// <summary>How far padded-batch logits are from each example's logits alone, and how often the top class differs.</summary>
    internal static PaddingEffect MeasurePadding(float[][] alone, float[][] batched, EncodedTask task)
    {
        double maxDelta = 0;
        int flips = 0;
        for (int e = 0; e < alone.Length; e++)
        {
            for (int j = 0; j < alone[e].Length; j++) maxDelta = Math.Max(maxDelta, Math.Abs(alone[e][j] - batched[e][j]));
            if (alone[e].Length > 1 && ArgMax(alone[e]) != ArgMax(batched[e])) flips++;
        }
        return new PaddingEffect(PaddedBatch, alone.Length, maxDelta, flips, task.Score(batched).Primary);
    }

    private static int ArgMax(float[] row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }

    /// <summary>Measures each exported file with the profiler protocol; the bound is checked against this measurement.</summary>
    private List<DeployedWinner> VerifyWinners(IReadOnlyList<ExportedModel> exported, LatencyProfiler profiler, string folder)
    {
        var protocol = options.Profiling.VerificationProtocol;
        var winners = new List<DeployedWinner>();
        for (int i = 0; i < exported.Count; i++)
        {
            var e = exported[i];
            var bound = new LatencyBound(e.BoundMs, options.Search.VerifyStatistic);
            Report(PipelineStage.Verification, $"measuring {e.OnnxFile} ({protocol.Name} protocol, {bound})", i, exported.Count);
            var record = profiler.ProfileFile(Path.Combine(folder, e.OnnxFile), e.Arch, options.Precision, bound, cancel: default, protocol: protocol);
            var judgement = bound.Judge(record);
            var verdict = new LatencyVerdict(LatencyBound.Name(bound.Statistic), judgement.EstimateMs, e.BoundMs, judgement.Meets, record,
                judgement.LowerMs, judgement.UpperMs, judgement.Confidence, LatencyBound.Name(judgement.Verdict));
            if (judgement.Verdict == BoundVerdict.Fails)
                _notes.Add($"{e.OnnxFile}: the final measurement fails the bound ({judgement.Describe()}), although the search's screening measurement had it within; the machine is slower now or noisy (compare the reference model's latency in deployment.json): re-measure with 'speedlimit profile', or deploy the winner of a tighter bound");
            else if (judgement.Verdict == BoundVerdict.Uncertain)
                _notes.Add($"{e.OnnxFile}: uncertain at the verification protocol's limit ({judgement.Describe()}): the bound lies inside the confidence interval of its {LatencyBound.Name(bound.Statistic)}");
            if (record.Protocol is { Drifted: true } note)
                _notes.Add($"{e.OnnxFile}: the reference model drifted {note.DriftPercent:F0} % during the final measurement (after {note.Attempts} attempt(s)): the machine's speed changed while measuring");
            winners.Add(new DeployedWinner(e.BoundMs, e.Arch, e.OnnxFile, e.CheckpointFile, e.HuggingFaceFolder, e.OnnxBytes,
                Reporting.RunReport.EncoderParameters(e.Arch), e.Engine, e.OnnxRuntime, e.Padding, verdict));
            Report(PipelineStage.Verification, $"{e.OnnxFile}: {judgement.Describe()}", i + 1, exported.Count);
        }
        return winners;
    }

    /// <summary>While the coordinator waits: how many of the generation's candidates are done and who runs the others (at most every 2 s).</summary>
    private Action<IReadOnlyList<QueueEntry>> WaitingReporter(Precision precision)
    {
        var last = DateTime.MinValue;
        return entries =>
        {
            if ((DateTime.UtcNow - last).TotalSeconds < 2) return;
            last = DateTime.UtcNow;
            var running = entries.Where(e => e.State == StudyStore.Running).Select(e => $"{e.Arch} on {e.Worker}").ToList();
            int done = entries.Count(e => e.State == StudyStore.Done);
            Report(PipelineStage.Search, $"[{precision}] generation: {done}/{entries.Count} done" +
                (running.Count > 0 ? $", running {string.Join(", ", running)}" : "") + (entries.Count - done - running.Count is > 0 and var q ? $", {q} queued" : ""),
                _searchCounts.Completed, _searchCounts.Total);
        };
    }

    /// <summary>Disposes the run's candidate queues once (releasing their coordinator leases).</summary>
    private sealed class QueueSet(Dictionary<Precision, CandidateQueue> queues) : IDisposable
    {
        public void Dispose()
        {
            foreach (var q in queues.Values) q.Dispose();
            queues.Clear();
        }
    }

    private T Stage<T>(PipelineStage stage, Func<T> body)
    {
        var clock = Stopwatch.StartNew();
        var result = body();
        _stageSeconds[stage] = _stageSeconds.GetValueOrDefault(stage) + clock.Elapsed.TotalSeconds; // a stage may run in parts (data: import, then task)
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
