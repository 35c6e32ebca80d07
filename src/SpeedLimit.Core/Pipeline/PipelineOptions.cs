using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using SpeedLimit.Data;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Latency.Remote;
using SpeedLimit.Search;
using SpeedLimit.Training;

namespace SpeedLimit.Pipeline;

/// <summary>
/// A whole SpeedLimit run: the problem (space, bounds, precision, baselines, seed) and one
/// immutable options record per stage, each validating itself. The defaults are the built-in
/// demo. Serialized, it is the run's fingerprint: every setting that decides the result is in
/// it by construction, so a resumed run is compared setting by setting (<see cref="OptionsFingerprint"/>).
/// </summary>
public sealed record PipelineOptions
{
    // The problem
    public SearchSpace Space { get; init; } = SearchSpace.Demo;
    /// <summary>Latency bounds (ms). When empty, bounds are picked at <see cref="AutoBoundQuantiles"/> of the profiled latencies.</summary>
    public IReadOnlyList<double> BoundsMs { get; init; } = [];
    public IReadOnlyList<double> AutoBoundQuantiles { get; init; } = [0.35, 0.7];
    public Precision Precision { get; init; } = Precision.Int8;
    /// <summary>Also run the AutoTinyBERT-style search on fp32 latency, for comparison.</summary>
    public bool CompareFp32Search { get; init; }
    /// <summary>Fixed architectures evaluated at fp32 and int8 as uniform baselines.</summary>
    public IReadOnlyList<Architecture> Baselines { get; init; } = [];
    public int Seed { get; init; } = 1;
    /// <summary>Training threads (part of the fingerprint: thread partitioning may change float summation order).</summary>
    public int TrainThreads { get; init; } = Environment.ProcessorCount;
    /// <summary>Largest int8 weight magnitude the quantization uses (fixed by this build); in the fingerprint so a study scored with another range is not resumed.</summary>
    public int Int8WeightQMax => Quantization.DynamicQuantization.WeightQMax;

    // The stages, in the order they run
    public DataOptions Data { get; init; } = new();
    public ProfilingOptions Profiling { get; init; } = new();
    public PredictorOptions Predictor { get; init; } = new();
    public SupermodelTrainingOptions Supermodel { get; init; } = new();
    /// <summary>Start from a pretrained encoder (<c>--pretrained</c>): teacher, importance reordering, space from its shape. Null: train from scratch.</summary>
    public PretrainedStartOptions? Pretrained { get; init; }
    public FineTuneOptions FineTune { get; init; } = new() { Epochs = 2, MaxExamples = 2000, LearningRate = 5e-4f };
    public SearchOptions Search { get; init; } = new() { Generations = 3, CandidatesPerGeneration = 6, Parents = 3 };
    /// <summary>Where the run folder goes; not part of the fingerprint.</summary>
    [JsonIgnore]
    public OutputOptions Output { get; init; } = new();
    /// <summary>Where the study lives and whether workers help (scale-out); not part of the fingerprint.</summary>
    [JsonIgnore]
    public StudyOptions Study { get; init; } = new();

    /// <summary>Largest search space a run accepts: narrowing predicts every architecture, and beyond this it would take minutes and gigabytes.</summary>
    public const long MaxSpaceArchitectures = 2_000_000;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first bad setting and the flag that fixes it.</summary>
    public void Validate()
    {
        if (Space.Count > MaxSpaceArchitectures)
            throw new ArgumentException($"the search space has {Space.Count:N0} architectures, more than the {MaxSpaceArchitectures:N0} a run narrows; use larger steps or tighter ranges in --space");
        foreach (var b in BoundsMs)
            if (!double.IsFinite(b) || b <= 0) throw new ArgumentException($"latency bound {b} ms must be a positive number of milliseconds (--bound-ms)");
        if (BoundsMs.Count == 0 && (AutoBoundQuantiles.Count == 0 || AutoBoundQuantiles.Any(q => q is <= 0 or >= 1)))
            throw new ArgumentException("give at least one latency bound (--bound-ms), or automatic bound quantiles strictly between 0 and 1");
        if (!Enum.IsDefined(Precision)) throw new ArgumentException($"unknown precision {Precision}; use --precision int8 or fp32");
        if (TrainThreads < 1) throw new ArgumentException($"--threads {TrainThreads} must be at least 1");
        foreach (var a in Baselines)
        {
            if (a.Layers < 1 || a.Hidden < 1 || a.Ffn < 1)
                throw new ArgumentException($"baseline {a} has a zero or negative dimension; give --baseline e,h,f with every value ≥ 1");
            if (Pretrained is { DeriveSpace: true }) continue; // the space comes from the pretrained model; checked again once it is derived
            if (a.Hidden % Space.Heads != 0)
                throw new ArgumentException($"baseline {a}: hidden size {a.Hidden} is not a multiple of the space's {Space.Heads} heads; pick a hidden size divisible by {Space.Heads}");
            if (!a.FitsIn(Space.Largest))
                throw new ArgumentException($"baseline {a} does not fit in the search space's supermodel {Space.Largest}; pick a smaller --baseline or a larger --space");
        }
        Data.Validate();
        Profiling.Validate();
        Predictor.Validate();
        Supermodel.Validate();
        FineTune.Validate();
        Search.Validate();
        Output.Validate();
        Study.Validate();
        Pretrained?.Validate();
    }

    /// <summary>The settings that decide a run's results as JSON, compared when a run is resumed.</summary>
    public string Fingerprint() => JsonSerializer.Serialize(this, OptionsFingerprint.Json);
}

/// <summary>The task and how it is read and tokenized.</summary>
public sealed record DataOptions
{
    public string Task { get; init; } = BuiltinTask.Name;
    public string? DataDir { get; init; }
    public string? VocabPath { get; init; }
    public int MaxSequenceLength { get; init; } = 64;
    /// <summary>Use a seeded random subset of at most this many training / dev examples (faster runs on big tasks).</summary>
    public int? MaxTrainExamples { get; init; }
    public int? MaxDevExamples { get; init; }

    /// <summary>Most positions a BERT-style model of ours embeds; longer inputs are refused.</summary>
    public const int MaxSupportedLength = 512;

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Task)) throw new ArgumentException("no task given; use --task builtin or a GLUE task name");
        if (MaxSequenceLength < 4) throw new ArgumentException($"--max-length {MaxSequenceLength} must be at least 4 tokens");
        if (MaxSequenceLength > MaxSupportedLength) throw new ArgumentException($"--max-length {MaxSequenceLength} exceeds the {MaxSupportedLength} positions a BERT encoder embeds; use at most {MaxSupportedLength}");
        if (MaxTrainExamples is < 1) throw new ArgumentException($"--max-train-examples {MaxTrainExamples} must be at least 1");
        if (MaxDevExamples is < 1) throw new ArgumentException($"--max-dev-examples {MaxDevExamples} must be at least 1");
        if (DataDir is { } d && !Directory.Exists(d)) throw new ArgumentException($"data folder '{d}' (--data-dir) does not exist; point it at the folder holding the task's train/dev files");
        if (VocabPath is { } v && !File.Exists(v)) throw new ArgumentException($"vocabulary '{v}' (--vocab) does not exist; give the path of a WordPiece vocab.txt");
    }
}

/// <summary>
/// How latency is measured: the deployed model's shape and threads, the protocol for profiling and finalists
/// (screening) and for the final verification of each winner, and the profiling sample size. The bound's
/// statistic is <see cref="SearchOptions.VerifyStatistic"/>.
/// </summary>
public sealed record ProfilingOptions
{
    /// <summary>Intra-op threads of the deployed model (the latency the bound is about).</summary>
    public int Threads { get; init; } = 1;
    /// <summary>Latency protocol input: batch 1 × this many tokens (paper: 128).</summary>
    public int SequenceLength { get; init; } = 128;
    /// <summary>Protocol of profiling and of the search's finalists (default ≥ 100 runs and ≥ 1 s per model).</summary>
    public LatencyProtocol Protocol { get; init; } = LatencyProtocol.Screening;
    /// <summary>Protocol of each winner's final measurement (default ≥ 1,000 runs and ≥ 10 s).</summary>
    public LatencyProtocol VerificationProtocol { get; init; } = LatencyProtocol.Verification;
    /// <summary>Wall time (what the deployment sees), or the inference thread's CPU time (robust on a loaded machine; 1 thread only).</summary>
    public LatencyClock Clock { get; init; } = LatencyClock.Wall;
    /// <summary>Architectures profiled to fit the latency predictor (besides the smallest and largest).</summary>
    public int Count { get; init; } = 40;
    /// <summary>
    /// A profiled-latency dataset to reuse and extend (JSONL), so several runs on one machine share
    /// their measurements; default: a fresh one in the run's work folder.
    /// </summary>
    public string? DatasetPath { get; init; }
    /// <summary>Fit on records measured on another device too (normally refused: their latencies are not this machine's).</summary>
    public bool AllowOtherDevices { get; init; }
    /// <summary>
    /// Measure on the deployment machine, a <c>speedlimit latency serve</c> (<c>--latency-endpoint</c>), instead of here.
    /// Not part of the run's fingerprint (the device is checked by its records' fingerprints, so a resume may reach the
    /// same server at a new address), and its token is never written.
    /// </summary>
    [JsonIgnore]
    public LatencyEndpointOptions? Endpoint { get; init; }

    public void Validate()
    {
        if (Clock == LatencyClock.ThreadCpu && Threads != 1) throw new ArgumentException($"--latency-clock thread-cpu times the one inference thread; use it with --latency-threads 1, not {Threads}");
        if (Threads < 1) throw new ArgumentException($"--latency-threads {Threads} must be at least 1");
        if (SequenceLength is < 1 or > DataOptions.MaxSupportedLength) throw new ArgumentException($"latency sequence length {SequenceLength} must be between 1 and {DataOptions.MaxSupportedLength}");
        Protocol.Validate();
        VerificationProtocol.Validate();
        if (Count < 14) throw new ArgumentException($"--profile-count {Count} must be at least 14: the predictor holds some out and calibrates its margin on the rest");
    }
}

/// <summary>Which latency model the run fits to the profiled records.</summary>
public sealed record PredictorOptions
{
    /// <summary>
    /// The operator-feature model fits in milliseconds and beats the paper's MLP here (docs/latency-predictor.md);
    /// the MLP (minutes of training) stays available through 'speedlimit latency fit --model mlp'.
    /// </summary>
    public LatencyModelKind Model { get; init; } = LatencyModelKind.Features;

    public void Validate()
    {
        if (!Enum.IsDefined(Model)) throw new ArgumentException($"unknown latency model {Model}");
    }
}

/// <summary>The weight-sharing supermodel's training: budget, sandwich rule, optional masked-LM pretraining and teacher.</summary>
public sealed record SupermodelTrainingOptions
{
    public int Epochs { get; init; } = 8;
    public int BatchSize { get; init; } = 32;
    public float LearningRate { get; init; } = 1e-3f;
    public int CheckpointEverySteps { get; init; } = 50;
    public SupermodelOptions Sandwich { get; init; } = new();
    /// <summary>Plain-text files for masked-LM pretraining of the supermodel before task training (none: task only).</summary>
    public IReadOnlyList<string> PretrainCorpus { get; init; } = [];
    public int PretrainEpochs { get; init; } = 1;
    /// <summary>A fine-tuned model (safetensors checkpoint, same vocabulary and head) to distil from instead of in-place distillation.</summary>
    public string? TeacherCheckpoint { get; init; }

    public void Validate()
    {
        if (Epochs < 0) throw new ArgumentException($"--supermodel-epochs {Epochs} must be ≥ 0");
        if (BatchSize < 1) throw new ArgumentException($"supermodel batch size {BatchSize} must be ≥ 1");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ArgumentException($"supermodel learning rate {LearningRate} must be a positive number");
        if (PretrainEpochs < 1) throw new ArgumentException($"--pretrain-epochs {PretrainEpochs} must be at least 1");
        if (CheckpointEverySteps < 1) throw new ArgumentException($"checkpoint interval {CheckpointEverySteps} must be at least 1 step");
        foreach (var f in PretrainCorpus)
            if (!File.Exists(f)) throw new ArgumentException($"pretraining corpus file '{f}' (--pretrain-corpus) does not exist; give existing plain-text files");
        if (TeacherCheckpoint is { } t && !File.Exists(t)) throw new ArgumentException($"teacher checkpoint '{t}' (--teacher) does not exist; give a fine-tuned .safetensors checkpoint");
        Sandwich.Validate();
    }
}

/// <summary>Where the run folder goes, and whether an unfinished one is continued.</summary>
public sealed record OutputOptions
{
    public string Folder { get; init; } = "runs/demo";
    public bool Resume { get; init; }

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Folder)) throw new ArgumentException("no output folder given; use --output runs/NAME");
    }
}

/// <summary>Serializes options records for the resume check and names the settings that differ.</summary>
internal static class OptionsFingerprint
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>The settings (as JSON paths) whose values differ between two fingerprints, with both values.</summary>
    public static IReadOnlyList<string> Differences(string before, string now)
    {
        var result = new List<string>();
        Compare(Parse(before), Parse(now), "", result);
        return result;
    }

    private static JsonNode? Parse(string json)
    {
        try { return JsonNode.Parse(json); }
        catch (JsonException) { return JsonValue.Create("(unreadable)"); }
    }

    private static void Compare(JsonNode? a, JsonNode? b, string path, List<string> diffs)
    {
        if (a is JsonObject oa && b is JsonObject ob)
        {
            foreach (var key in oa.Select(kv => kv.Key).Union(ob.Select(kv => kv.Key)))
            {
                var sub = path.Length == 0 ? key : $"{path}.{key}";
                if (!oa.ContainsKey(key) || !ob.ContainsKey(key))
                    diffs.Add($"{sub}: {(oa.ContainsKey(key) ? Text(oa[key]) : "(absent)")} then, {(ob.ContainsKey(key) ? Text(ob[key]) : "(absent)")} now");
                else Compare(oa[key], ob[key], sub, diffs);
            }
            return;
        }
        string sa = Text(a), sb = Text(b);
        if (sa != sb) diffs.Add($"{path}: {sa} then, {sb} now");
    }

    private static string Text(JsonNode? node)
    {
        var s = node?.ToJsonString() ?? "null";
        return s.Length <= 60 ? s : s[..57] + "…";
    }
}
