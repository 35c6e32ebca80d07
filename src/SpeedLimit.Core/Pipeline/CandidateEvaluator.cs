using System.Diagnostics;
using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Quantization;
using SpeedLimit.Search;
using SpeedLimit.Training;

namespace SpeedLimit.Pipeline;

/// <summary>How much one candidate is fine-tuned before it is scored.</summary>
public sealed record FineTuneOptions
{
    public int Epochs { get; init; } = 1;
    /// <summary>Fine-tune on at most this many training examples (the first ones), to bound the cost per candidate.</summary>
    public int? MaxExamples { get; init; }
    public int BatchSize { get; init; } = 32;
    public float LearningRate { get; init; } = 1e-4f;
    public float Dropout { get; init; } = 0.1f;

    public void Validate()
    {
        if (Epochs < 0) throw new ArgumentException($"fine-tuning epochs {Epochs} must be ≥ 0");
        if (BatchSize < 1) throw new ArgumentException($"fine-tuning batch size {BatchSize} must be ≥ 1");
        if (MaxExamples is < 1) throw new ArgumentException($"fine-tuning example limit {MaxExamples} must be ≥ 1");
        if (!(LearningRate > 0)) throw new ArgumentException($"fine-tuning learning rate {LearningRate} must be positive");
    }

    /// <summary>The budget as recorded with every candidate.</summary>
    public string Describe() => $"{Epochs} epoch(s) × {(MaxExamples is int n ? $"≤{n}" : "all")} examples, batch {BatchSize}, lr {LearningRate:G3}";
}

/// <summary>
/// Scores a candidate as SpeedLimit does: extract (e, h, f) from the supermodel, fine-tune it
/// briefly on the task, quantize (int8, simulated exactly as the deployed graph computes) and
/// take the task metric on the dev split. Deterministic for an (architecture, seed), so a
/// winner's weights can be rebuilt later instead of storing every candidate.
/// </summary>
public sealed class CandidateEvaluator(ElasticSupermodel supermodel, EncodedTask task, FineTuneOptions options, Precision precision, int threads)
    : ICandidateEvaluator
{
    // One activation workspace for every candidate (each extracted model would otherwise allocate its own, and
    // regrow it at each longer batch: about 1 GB of fresh memory per SST-2 candidate, with the page faults and
    // collections that go with it). Buffers are used as prefixes, so one sized for a larger model holds a smaller one.
    private BertActivations? _workspace;

    public CandidateResult Evaluate(Architecture arch, int seed, CancellationToken cancellation)
    {
        var clock = Stopwatch.StartNew();
        var model = FineTune(arch, seed, cancellation);
        var int8 = precision == Precision.Int8 ? new Int8Simulation(model) : null;
        double metric = task.EvaluateDev(model, int8).Primary;
        ReturnWorkspace(model);
        return new CandidateResult(arch, metric, clock.Elapsed.TotalSeconds);
    }

    // Taken and given back atomically, so concurrent evaluations never share one (they just allocate their own).
    private void LendWorkspace(BertModel model) => model.Workspace = Interlocked.Exchange(ref _workspace, null);

    private void ReturnWorkspace(BertModel model)
    {
        var used = model.Workspace;
        model.Workspace = null;
        if (used is not null) Interlocked.Exchange(ref _workspace, used);
    }

    /// <summary>The candidate's fine-tuned fp32 weights (quantization happens at export / in simulation).</summary>
    public BertModel FineTune(Architecture arch, int seed, CancellationToken cancellation = default)
    {
        options.Validate();
        var model = supermodel.Extract(arch);
        model.Threads = threads;
        LendWorkspace(model);
        int examples = Math.Min(options.MaxExamples ?? int.MaxValue, task.Train.Count);
        long steps = (long)options.Epochs * ((examples + options.BatchSize - 1) / options.BatchSize);
        if (steps == 0) return model;
        var training = new TrainingOptions { LearningRate = options.LearningRate, Seed = seed, Threads = threads, WarmupRatio = 0.1f };
        var trainer = new Trainer(model, training, steps, options.Dropout);
        trainer.DeferUntouchedEmbeddingRows(); // a batch touches a few hundred of the table's 30k rows
        for (int epoch = 0; epoch < options.Epochs; epoch++)
            foreach (var batch in task.TrainBatches(options.BatchSize, seed, epoch, options.MaxExamples))
            {
                cancellation.ThrowIfCancellationRequested();
                trainer.Step(batch);
            }
        trainer.SettleParameters();
        return model;
    }
}
