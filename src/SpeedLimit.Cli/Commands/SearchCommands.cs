using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Pretrained;
using SpeedLimit.Reporting;
using SpeedLimit.Search;
using Spectre.Console;

namespace SpeedLimit.Cli.Commands;

/// <summary>`speedlimit search` and `speedlimit demo`: the whole SpeedLimit run.</summary>
public static class SearchCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return CreateSearch();
        yield return CreateDemo();
    }

    /// <summary>Candidate fine-tuning learning rate when the supermodel comes from a pretrained model.</summary>
    internal const float PretrainedCandidateLearningRate = 2e-4f;

    /// <summary>The flags shared by search and demo, bound to <see cref="PipelineOptions"/>.</summary>
    private sealed class RunFlags
    {
        public readonly Option<string> Task = new("--task") { Description = "Task: builtin, or a GLUE task (sst2, cola, mrpc, stsb, qqp, mnli, qnli, rte, wnli).", DefaultValueFactory = _ => "builtin" };
        public readonly Option<string?> DataDir = new("--data-dir") { Description = "Folder with the GLUE task's train.tsv/dev.tsv." };
        public readonly Option<string?> Vocab = new("--vocab") { Description = "WordPiece vocabulary (bert-base-uncased vocab.txt) for GLUE tasks." };
        public readonly Option<int> MaxLength = new("--max-length") { Description = "Max tokens per training/dev example.", DefaultValueFactory = _ => 64 };
        public readonly Option<int?> MaxTrain = new("--max-train-examples") { Description = "Use a seeded random subset of at most this many training examples." };
        public readonly Option<int?> MaxDev = new("--max-dev-examples") { Description = "Use a seeded random subset of at most this many dev examples." };
        public readonly Option<string?> Space = new("--space") { Description = "Search space JSON (default: a small demo space; 'paper' for the paper's Table 1)." };
        public readonly Option<double[]> Bounds = new("--bound-ms") { Description = "Latency bound(s) in ms, e.g. --bound-ms 2.5 --bound-ms 4 (default: two bounds picked from the profiled latencies).", AllowMultipleArgumentsPerToken = true };
        public readonly Option<string> Precision = new("--precision") { Description = "Precision searched and deployed: int8 (SpeedLimit) or fp32.", DefaultValueFactory = _ => "int8" };
        public readonly Option<bool> CompareFp32 = new("--compare-fp32") { Description = "Also run the AutoTinyBERT-style search on fp32 latency, for comparison." };
        public readonly Option<string[]> Baselines = new("--baseline") { Description = "Uniform baseline architecture e,h,f (repeatable), evaluated at fp32 and int8.", AllowMultipleArgumentsPerToken = true };
        public readonly Option<int> Seed = new("--seed") { Description = "Seed of everything random.", DefaultValueFactory = _ => 1 };
        public readonly Option<int> Threads = new("--threads") { Description = "Training threads.", DefaultValueFactory = _ => Environment.ProcessorCount };
        public readonly Option<string> BoundStatistic = new("--bound-statistic") { Description = "The latency quantile the bounds are on: p50, p90 (default, as MLPerf single-stream) or p99. A model meets a bound when the upper confidence limit of that quantile is within it.", DefaultValueFactory = _ => "p90" };
        public readonly Option<string> LatencyProtocol = new("--latency-protocol") { Description = "Protocol for profiling and finalists: screening (≥ 100 runs & ≥ 1 s per model), verification, or one with overrides, e.g. screening:runs=200,seconds=2.", DefaultValueFactory = _ => "screening" };
        public readonly Option<string> VerifyProtocol = new("--verify-protocol") { Description = "Protocol for each winner's final measurement: verification (≥ 1,000 runs & ≥ 10 s; uncertain verdicts up to 30 s), or with overrides.", DefaultValueFactory = _ => "verification" };
        public readonly Option<int> LatencyThreads = new("--latency-threads") { Description = "ONNX Runtime threads of the deployed model (the latency the bound is about).", DefaultValueFactory = _ => 1 };
        public readonly Option<string?> LatencyData = new("--latency-data") { Description = "Profiled latencies (JSONL) to reuse and extend across runs on this machine." };
        public readonly Option<bool> AllowOtherDevices = new("--allow-other-devices") { Description = "Fit the latency predictor on --latency-data records measured on another CPU/runtime too (refused by default)." };
        public readonly Option<int> ProfileCount = new("--profile-count") { Description = "Architectures profiled to fit the latency predictor.", DefaultValueFactory = _ => 40 };
        public readonly Option<int> SupermodelEpochs = new("--supermodel-epochs") { Description = "Epochs of weight-sharing supermodel training on the task.", DefaultValueFactory = _ => 8 };
        public readonly Option<string[]> PretrainCorpus = new("--pretrain-corpus") { Description = "Plain-text file(s) for masked-LM pretraining of the supermodel before task training.", AllowMultipleArgumentsPerToken = true };
        public readonly Option<int> PretrainEpochs = new("--pretrain-epochs") { Description = "Masked-LM pretraining epochs.", DefaultValueFactory = _ => 1 };
        public readonly Option<string?> Teacher = new("--teacher") { Description = "Fine-tuned checkpoint to distil the supermodel from (default: in-place distillation from its largest sub-model)." };
        public readonly Option<int> FineTuneEpochs = new("--finetune-epochs") { Description = "Fine-tuning epochs per candidate.", DefaultValueFactory = _ => 2 };
        public readonly Option<int> FineTuneExamples = new("--finetune-examples") { Description = "Training examples per candidate fine-tune.", DefaultValueFactory = _ => 2000 };
        public readonly Option<int> Generations = new("--generations") { Description = "Evolutionary generations per bound (paper: 4; AutoTinyBERT: 25).", DefaultValueFactory = _ => 3 };
        public readonly Option<int> Population = new("--population") { Description = "Candidates per generation.", DefaultValueFactory = _ => 6 };
        public readonly Option<int> ConcurrentCandidates = new("--concurrent-candidates") { Description = "Candidates fine-tuned side by side, sharing the training threads (0: one per thread, at most 4; 1: one at a time on all threads). The results are the same either way.", DefaultValueFactory = _ => 0 };
        public readonly Option<string?> Pretrained = new("--pretrained") { Description = "Start from a pretrained BERT: a Hugging Face folder (config.json, model.safetensors, vocab.txt), an ONNX export, or minilm-l6 (built in). The search space is derived from its shape unless --space is given." };
        public readonly Option<string> Importance = new("--importance") { Description = "With --pretrained: how units are ranked before supermodel training: gradient (DynaBERT, from the task loss) or magnitude (L1, BootstrapNAS).", DefaultValueFactory = _ => "gradient" };
        public readonly Option<int> TeacherEpochs = new("--teacher-epochs") { Description = "With --pretrained and no --teacher: epochs of fine-tuning the pretrained model on the task (the teacher).", DefaultValueFactory = _ => 3 };
        public readonly Option<float?> TeacherLr = new("--teacher-lr") { Description = "Teacher fine-tuning learning rate (default 5e-5)." };
        public readonly Option<float?> SupermodelLr = new("--supermodel-lr") { Description = "Supermodel learning rate (default 1e-3 from scratch, 5e-5 from a pretrained model)." };
        public readonly Option<float?> FineTuneLr = new("--finetune-lr") { Description = "Candidate fine-tuning learning rate (default 5e-4 from scratch, 2e-4 from a pretrained model)." };
        public readonly Option<int?> HiddenStep = new("--hidden-step") { Description = "With --pretrained: hidden-size step of the derived space (a multiple of the head count; default the head count)." };
        public readonly Option<int?> FfnStep = new("--ffn-step") { Description = "With --pretrained: FFN-size step of the derived space (default FFN/64)." };
        public readonly Option<int?> MinHidden = new("--min-hidden") { Description = "With --pretrained: smallest hidden size of the derived space (default hidden/4)." };
        public readonly Option<int?> MinFfn = new("--min-ffn") { Description = "With --pretrained: smallest FFN size of the derived space (default FFN/8)." };
        public readonly Option<string> LatencyClock = new("--latency-clock") { Description = "wall (default: what the deployment sees), or thread-cpu (the inference thread's CPU time; robust on a loaded machine, needs --latency-threads 1).", DefaultValueFactory = _ => "wall" };
        public readonly Option<float> HiddenDistill = new("--hidden-distill") { Description = "With --pretrained: weight of hidden-state distillation from the (reordered) teacher besides its logits (0 = logits only).", DefaultValueFactory = _ => 0f };
        public readonly Option<double[]> BoundQuantiles = new("--bound-quantile") { Description = "Without --bound-ms: pick bounds at these quantiles of the profiled latencies (default 0.35 0.7).", AllowMultipleArgumentsPerToken = true };
        public readonly Option<bool> Resume = new("--resume") { Description = "Continue an unfinished run with the same --output (nothing finished is redone)." };
        public readonly Option<bool> Json = new("--json") { Description = "Print the result as JSON on stdout (progress goes to stderr)." };
        public readonly Option<string?> Study = new("--study") { Description = "Study store shared with workers: a PostgreSQL connection string (or a SQLite file); this run then coordinates 'speedlimit worker' processes (docs/scale-out.md). Default: a SQLite file in the run's work folder." };
        public readonly Option<string?> StudyName = new("--study-name") { Description = "Prefix of this run's study names in the --study store (default: the --output folder's name)." };
        public readonly Option<string?> PublishDir = new("--publish-dir") { Description = "With --study: publish the supermodel and tokenized task into this folder (every worker must read it at the same path) instead of the database." };
        public readonly Option<double> LeaseSeconds = new("--lease-seconds") { Description = "With --study: a worker silent this long is dead and its candidate goes back to the queue.", DefaultValueFactory = _ => 60 };
        public readonly Option<bool> NoLocalEvaluation = new("--no-local-evaluation") { Description = "With --study: leave every candidate to the workers (this process only coordinates and measures latency)." };

        public readonly LatencyEndpointFlags Endpoint = new();

        public IEnumerable<Option> All => [.. Endpoint.All, Task, DataDir, Vocab, MaxLength, MaxTrain, MaxDev, Space, Bounds, Precision, CompareFp32, Baselines, Seed, Threads, LatencyThreads,
            BoundStatistic, LatencyProtocol, VerifyProtocol, LatencyData, AllowOtherDevices, ProfileCount, SupermodelEpochs, PretrainCorpus, PretrainEpochs, Teacher, FineTuneEpochs, FineTuneExamples, Generations, Population, ConcurrentCandidates,
            Pretrained, Importance, TeacherEpochs, TeacherLr, SupermodelLr, FineTuneLr, HiddenStep, FfnStep, MinHidden, MinFfn, HiddenDistill, LatencyClock, BoundQuantiles, Resume, Json,
            Study, StudyName, PublishDir, LeaseSeconds, NoLocalEvaluation];

        public PipelineOptions Bind(ParseResult parse, string output)
        {
            int population = parse.GetValue(Population);
            var defaults = new PipelineOptions();
            var pretrained = parse.GetValue(Pretrained) is { } source ? new PretrainedStartOptions
            {
                Source = source,
                VocabPath = parse.GetValue(Vocab),
                Importance = ImportanceReordering.ParseKind(parse.GetValue(Importance)!),
                TeacherEpochs = parse.GetValue(TeacherEpochs),
                TeacherLearningRate = parse.GetValue(TeacherLr) ?? new PretrainedStartOptions().TeacherLearningRate,
                DeriveSpace = parse.GetValue(Space) is null,
                SpaceSteps = new PretrainedSpaceOptions { HiddenStep = parse.GetValue(HiddenStep), FfnStep = parse.GetValue(FfnStep), MinHidden = parse.GetValue(MinHidden), MinFfn = parse.GetValue(MinFfn) },
            } : null;
            // Pretrained weights want the small learning rates of fine-tuning, not those of training from scratch.
            float supermodelLr = parse.GetValue(SupermodelLr) ?? (pretrained is null ? defaults.Supermodel.LearningRate : 5e-5f);
            // From a pretrained supermodel, 5e-5 (the full model's recipe) leaves shallow candidates at the majority class
            // within a candidate's ~125 steps; 2e-4 lifts them (docs/paper-comparison.md, "Candidate fine-tuning").
            float fineTuneLr = parse.GetValue(FineTuneLr) ?? (pretrained is null ? defaults.FineTune.LearningRate : PretrainedCandidateLearningRate);
            return new PipelineOptions
            {
                Pretrained = pretrained,
                AutoBoundQuantiles = parse.GetValue(BoundQuantiles) is { Length: > 0 } q ? q : defaults.AutoBoundQuantiles,
                Space = SearchSpace.FromOption(parse.GetValue(Space), SearchSpace.Demo),
                BoundsMs = parse.GetValue(Bounds) ?? [],
                Precision = Precisions.Parse(parse.GetValue(Precision)!),
                CompareFp32Search = parse.GetValue(CompareFp32),
                Baselines = (parse.GetValue(Baselines) ?? []).Select(Architecture.Parse).ToList(),
                Seed = parse.GetValue(Seed),
                TrainThreads = parse.GetValue(Threads),
                Data = new DataOptions
                {
                    Task = parse.GetValue(Task)!,
                    DataDir = parse.GetValue(DataDir),
                    VocabPath = parse.GetValue(Vocab),
                    MaxSequenceLength = parse.GetValue(MaxLength),
                    MaxTrainExamples = parse.GetValue(MaxTrain),
                    MaxDevExamples = parse.GetValue(MaxDev),
                },
                Profiling = new ProfilingOptions
                {
                    Threads = parse.GetValue(LatencyThreads),
                    Count = parse.GetValue(ProfileCount),
                    DatasetPath = parse.GetValue(LatencyData),
                    Clock = LatencyProfilerClock.Parse(parse.GetValue(LatencyClock)!),
                    Protocol = SpeedLimit.Latency.LatencyProtocol.Parse(parse.GetValue(LatencyProtocol)!),
                    VerificationProtocol = SpeedLimit.Latency.LatencyProtocol.Parse(parse.GetValue(VerifyProtocol)!),
                    AllowOtherDevices = parse.GetValue(AllowOtherDevices),
                    Endpoint = Endpoint.Bind(parse),
                },
                Supermodel = new SupermodelTrainingOptions
                {
                    Epochs = parse.GetValue(SupermodelEpochs),
                    PretrainCorpus = parse.GetValue(PretrainCorpus) ?? [],
                    PretrainEpochs = parse.GetValue(PretrainEpochs),
                    TeacherCheckpoint = parse.GetValue(Teacher),
                    LearningRate = supermodelLr,
                    Sandwich = defaults.Supermodel.Sandwich with { HiddenDistillWeight = parse.GetValue(HiddenDistill) },
                },
                FineTune = defaults.FineTune with { Epochs = parse.GetValue(FineTuneEpochs), MaxExamples = parse.GetValue(FineTuneExamples), LearningRate = fineTuneLr },
                Search = defaults.Search with
                {
                    Generations = parse.GetValue(Generations),
                    VerifyStatistic = LatencyBound.ParseStatistic(parse.GetValue(BoundStatistic)!),
                    CandidatesPerGeneration = population,
                    ConcurrentCandidates = parse.GetValue(ConcurrentCandidates),
                    Parents = Math.Max(1, Math.Min(defaults.Search.Parents, population)),
                },
                Output = new OutputOptions { Folder = output, Resume = parse.GetValue(Resume) },
                Study = new StudyOptions
                {
                    Location = parse.GetValue(Study), Name = parse.GetValue(StudyName), PublishFolder = parse.GetValue(PublishDir),
                    LeaseSeconds = parse.GetValue(LeaseSeconds), EvaluateLocally = !parse.GetValue(NoLocalEvaluation),
                },
            };
        }
    }

    private static Command CreateSearch()
    {
        var flags = new RunFlags();
        var output = new Option<string>("--output") { Description = "Run folder to create (best.onnx, report.md, results.json, plots).", Required = true };
        var cmd = new Command("search", "Find the most accurate int8 encoder that meets the latency bound(s) on this machine (or on --latency-endpoint).");
        foreach (var o in flags.All) cmd.Options.Add(o);
        cmd.Options.Add(output);
        cmd.SetAction(parse => CliErrors.Guard(() => Execute(flags.Bind(parse, parse.GetValue(output)!), parse.GetValue(flags.Json))));
        return cmd;
    }

    private static Command CreateDemo()
    {
        var flags = new RunFlags();
        var output = new Option<string?>("--output") { Description = "Run folder to create (default: runs/demo-TIMESTAMP)." };
        var cmd = new Command("demo", "Run SpeedLimit end to end on the built-in task with the defaults (about 8 minutes on 2 vCPUs; no downloads).");
        foreach (var o in flags.All) cmd.Options.Add(o);
        cmd.Options.Add(output);
        cmd.SetAction(parse => CliErrors.Guard(() =>
        {
            var folder = parse.GetValue(output) ?? Path.Combine("runs", $"demo-{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}");
            return Execute(flags.Bind(parse, folder), parse.GetValue(flags.Json));
        }));
        return cmd;
    }

    private static int Execute(PipelineOptions options, bool json)
    {
        options.Validate();
        var pipeline = new SpeedLimitPipeline(options);
        using var cancel = new CancelOnSignals();
        var console = json ? AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }) : AnsiConsole.Console;
        console.MarkupLineInterpolated($"[bold]SpeedLimit[/]: task [bold]{options.Data.Task}[/], space {(options.Pretrained is { DeriveSpace: true } p ? $"derived from {p.Source}" : options.Space.ToString())}, {options.Precision} → [bold]{options.Output.Folder}[/]");
        foreach (var w in RunPreflight.Warnings(options)) console.MarkupLineInterpolated($"[yellow]warning:[/] {w}");
        PipelineResult result;
        if (ConsoleProgress.IsLive(console, writesToStandardError: json)) result = RunWithProgressBars(pipeline, console, cancel.Token);
        else
        {
            // Redirected output (CI, logs): a line per stage change and at most one every few seconds.
            pipeline.Progress = ConsoleProgress.Lines<PipelineProgress>(console, p =>
                (p.Stage.ToString(), p.Completed, p.Total, p.Eta is { } e ? $"~{e.TotalSeconds:F0} s left: {p.Message}" : p.Message));
            result = pipeline.Run(cancel.Token);
        }
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                runFolder = result.RunFolder,
                winners = result.Winners.Select(w => new { onnxPath = Path.Combine(result.RunFolder, w.OnnxFile), winner = w }),
                stageSeconds = result.StageSeconds.ToDictionary(kv => kv.Key.ToString(), kv => Math.Round(kv.Value, 2)),
                notes = result.Notes,
            }, SpeedLimit.Search.SearchJson.Indented));
            return 0;
        }
        var table = new Table().Title("Deployable models").AddColumns(WinnerTable.Header);
        foreach (var w in result.Winners)
        {
            var cells = WinnerTable.Cells(w).Select(Markup.Escape).ToArray();
            cells[^1] = w.MeetsBound ? $"[green]{cells[^1]}[/]" : $"[red]{cells[^1]}[/]";
            table.AddRow(cells);
        }
        AnsiConsole.Write(table);
        foreach (var n in result.Notes) AnsiConsole.MarkupLineInterpolated($"[grey]note:[/] {n}");
        AnsiConsole.MarkupLineInterpolated($"report: [bold]{Path.Combine(result.RunFolder, "report.md")}[/]");
        return 0;
    }

    private static PipelineResult RunWithProgressBars(SpeedLimitPipeline pipeline, IAnsiConsole console, CancellationToken cancel)
    {
        PipelineResult result = null!;
        console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var tasks = new Dictionary<PipelineStage, ProgressTask>();
                pipeline.Progress = new SyncProgress<PipelineProgress>(p =>
                {
                    if (!tasks.TryGetValue(p.Stage, out var task))
                    {
                        foreach (var t in tasks.Values) if (t.StopTime is null) { t.Value = t.MaxValue; t.StopTask(); } // freezes its elapsed time
                        tasks[p.Stage] = task = ctx.AddTask(p.Stage.ToString(), maxValue: Math.Max(1, p.Total));
                    }
                    task.MaxValue = Math.Max(1, p.Total);
                    task.Value = Math.Min(p.Completed, task.MaxValue);
                    task.Description = $"{p.Stage,-12} {Markup.Escape(Trim(p.Message, 70))}";
                });
                result = pipeline.Run(cancel);
                foreach (var t in tasks.Values) if (t.StopTime is null) { t.Value = t.MaxValue; t.StopTask(); }
            });
        return result;
    }

    private static string Trim(string s, int max) => s.Length <= max ? s : s[..(max - 1)] + "…";
}
