using System.Text.Json;
using SpeedLimit.Data;
using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Search;
using SpeedLimit.Training;

namespace SpeedLimit.Pipeline;

/// <summary>Everything a SpeedLimit run needs; the defaults are the built-in demo.</summary>
public sealed class PipelineOptions
{
    // Task
    public string Task { get; set; } = BuiltinTask.Name;
    public string? DataDir { get; set; }
    public string? VocabPath { get; set; }
    public int MaxSequenceLength { get; set; } = 64;
    /// <summary>Use a seeded random subset of at most this many training / dev examples (faster runs on big tasks).</summary>
    public int? MaxTrainExamples { get; set; }
    public int? MaxDevExamples { get; set; }

    // Search problem
    public SearchSpace Space { get; set; } = SearchSpace.Demo;
    /// <summary>Latency bounds (ms). When empty, bounds are picked at <see cref="AutoBoundQuantiles"/> of the profiled latencies.</summary>
    public List<double> BoundsMs { get; set; } = [];
    public List<double> AutoBoundQuantiles { get; set; } = [0.35, 0.7];
    public Precision Precision { get; set; } = Precision.Int8;
    /// <summary>Also run the AutoTinyBERT-style search on fp32 latency, for comparison.</summary>
    public bool CompareFp32Search { get; set; }
    /// <summary>Fixed architectures evaluated at fp32 and int8 as uniform baselines.</summary>
    public List<Architecture> Baselines { get; set; } = [];
    public int Seed { get; set; } = 1;

    // Machine
    public int TrainThreads { get; set; } = Environment.ProcessorCount;
    /// <summary>Intra-op threads of the deployed model (the latency the bound is about).</summary>
    public int LatencyThreads { get; set; } = 1;
    /// <summary>Latency protocol input: batch 1 × this many tokens (paper: 128).</summary>
    public int LatencySequenceLength { get; set; } = 128;
    public int LatencyTimedRuns { get; set; } = 10;
    /// <summary>
    /// A profiled-latency dataset to reuse and extend (JSONL), so several runs on one machine share
    /// their measurements; default: a fresh one in the run's work folder.
    /// </summary>
    public string? LatencyDatasetPath { get; set; }

    // Stage budgets
    /// <summary>Architectures profiled to fit the latency predictor (besides the smallest and largest).</summary>
    public int ProfileCount { get; set; } = 40;
    public int SupermodelEpochs { get; set; } = 8;
    public int SupermodelBatchSize { get; set; } = 32;
    public float SupermodelLearningRate { get; set; } = 1e-3f;
    public int CheckpointEverySteps { get; set; } = 50;
    public SupermodelOptions Supermodel { get; set; } = new();
    /// <summary>Plain-text files for masked-LM pretraining of the supermodel before task training (none: task only).</summary>
    public List<string> PretrainCorpus { get; set; } = [];
    public int PretrainEpochs { get; set; } = 1;
    /// <summary>A fine-tuned model (safetensors checkpoint, same vocabulary and head) to distil from instead of in-place distillation.</summary>
    public string? TeacherCheckpoint { get; set; }
    public FineTuneOptions FineTune { get; set; } = new() { Epochs = 2, MaxExamples = 2000, LearningRate = 5e-4f };
    public SearchOptions Search { get; set; } = new() { Generations = 3, CandidatesPerGeneration = 6, Parents = 3 };

    // Output
    public string OutputFolder { get; set; } = "runs/demo";
    public bool Resume { get; set; }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Task)) throw new ArgumentException("no task given; use --task builtin or a GLUE task name");
        if (MaxSequenceLength < 4) throw new ArgumentException($"max sequence length {MaxSequenceLength} must be at least 4");
        foreach (var b in BoundsMs)
            if (!double.IsFinite(b) || b <= 0) throw new ArgumentException($"latency bound {b} ms must be a positive number of milliseconds");
        if (BoundsMs.Count == 0 && (AutoBoundQuantiles.Count == 0 || AutoBoundQuantiles.Any(q => q is <= 0 or >= 1)))
            throw new ArgumentException("give at least one latency bound (--bound-ms), or automatic bound quantiles strictly between 0 and 1");
        if (MaxTrainExamples is < 1 || MaxDevExamples is < 1) throw new ArgumentException("example limits must be at least 1");
        if (TrainThreads < 1 || LatencyThreads < 1) throw new ArgumentException("thread counts must be at least 1");
        if (LatencySequenceLength < 1) throw new ArgumentException($"latency sequence length {LatencySequenceLength} must be positive");
        if (LatencyTimedRuns < 3) throw new ArgumentException($"latency timed runs {LatencyTimedRuns} must be at least 3");
        if (ProfileCount < 14) throw new ArgumentException($"profile count {ProfileCount} must be at least 14: the predictor holds some out and calibrates its margin on the rest");
        if (SupermodelEpochs < 0 || SupermodelBatchSize < 1) throw new ArgumentException("supermodel epochs must be ≥ 0 and batch size ≥ 1");
        if (!(SupermodelLearningRate > 0)) throw new ArgumentException($"supermodel learning rate {SupermodelLearningRate} must be positive");
        if (PretrainEpochs < 1) throw new ArgumentException($"pretraining epochs {PretrainEpochs} must be at least 1");
        if (TeacherCheckpoint is { } t && !File.Exists(t)) throw new ArgumentException($"teacher checkpoint '{t}' does not exist");
        if (CheckpointEverySteps < 1) throw new ArgumentException($"checkpoint interval {CheckpointEverySteps} must be at least 1 step");
        if (string.IsNullOrWhiteSpace(OutputFolder)) throw new ArgumentException("no output folder given; use --output runs/NAME");
        Supermodel.Validate();
        FineTune.Validate();
        Search.Validate();
        foreach (var a in Baselines)
            if (!Space.Contains(a) && !a.FitsIn(Space.Largest))
                throw new ArgumentException($"baseline {a} does not fit in the search space's supermodel {Space.Largest}");
    }

    /// <summary>The settings that decide a run's results, compared when a run is resumed.</summary>
    public string Fingerprint() => JsonSerializer.Serialize(new
    {
        Task, DataDir, MaxSequenceLength, MaxTrainExamples, MaxDevExamples, Space, BoundsMs, AutoBoundQuantiles, Precision = Precision.ToString(), CompareFp32Search,
        Baselines = Baselines.Select(b => b.ToString()), Seed, LatencyThreads, LatencySequenceLength, ProfileCount,
        SupermodelEpochs, SupermodelBatchSize, SupermodelLearningRate, PretrainCorpus, PretrainEpochs, TeacherCheckpoint,
        Sandwich = new { Supermodel.RandomSubModels, Supermodel.DistillWeight, Supermodel.Temperature, Supermodel.Dropout },
        FineTune = FineTune.Describe(), Search = Search,
    }, new JsonSerializerOptions { WriteIndented = true });
}
