using System.Collections.Concurrent;
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
/// <param name="threads">Engine threads of one evaluation.</param>
/// <param name="concurrentEvaluations">Evaluations a search may run side by side (<see cref="ICandidateEvaluator.ConcurrentEvaluations"/>),
/// each on <paramref name="threads"/> threads: small models use two threads poorly, so two candidates on one thread each
/// evaluate more per hour than one on two. The results are the same bits either way (the engine does not depend on its
/// thread count).</param>
public sealed class CandidateEvaluator(ElasticSupermodel supermodel, EncodedTask task, FineTuneOptions options, Precision precision, int threads,
    int concurrentEvaluations = 1) : ICandidateEvaluator
{
    // Candidate memories (workspace, parameters, gradients, moments, int8 scratch), one per evaluation running at the
    // moment, each handed to one candidate after another.
    private readonly ConcurrentStack<CandidateMemory> _memories = new();

    public int ConcurrentEvaluations { get; } = concurrentEvaluations >= 1 ? concurrentEvaluations
        : throw new ArgumentException($"concurrent evaluations {concurrentEvaluations} must be at least 1");

    public CandidateResult Evaluate(Architecture arch, int seed, CancellationToken cancellation)
    {
        var clock = Stopwatch.StartNew();
        var (model, memory) = FineTuneInMemory(arch, seed, cancellation);
        try
        {
            Int8Simulation? int8 = null;
            if (precision == Precision.Int8) memory.Int8 = int8 = new Int8Simulation(model, memory.Int8);
            double metric = task.EvaluateDev(model, int8).Primary;
            return new CandidateResult(arch, metric, clock.Elapsed.TotalSeconds);
        }
        finally
        {
            GiveBack(memory, model);
        }
    }

    /// <summary>
    /// Fine-tunes <paramref name="arch"/> in the evaluator's reused memory (<see cref="CandidateMemory"/>): the same bits as
    /// <see cref="FineTune(Architecture, int, CancellationToken)"/>. The model and the memory stay the caller's until
    /// <see cref="GiveBack"/>; the next candidate overwrites the model's buffers.
    /// </summary>
    internal (BertModel Model, CandidateMemory Memory) FineTuneInMemory(Architecture arch, int seed, CancellationToken cancellation)
    {
        var memory = TakeMemory();
        BertModel? model = null;
        try
        {
            var (parameters, gradients) = memory.ModelStorage;
            model = supermodel.Extract(arch, parameters, gradients);
            Lend(memory, model);
            FineTune(model, seed, memory, cancellation);
            return (model, memory);
        }
        catch
        {
            GiveBack(memory, model);
            throw;
        }
    }

    /// <summary>The candidate's fine-tuned fp32 weights (quantization happens at export / in simulation): the same bits as <see cref="Evaluate"/> trains, in buffers of its own.</summary>
    public BertModel FineTune(Architecture arch, int seed, CancellationToken cancellation = default)
    {
        var memory = TakeMemory();
        var model = supermodel.Extract(arch);
        Lend(memory, model);
        try
        {
            FineTune(model, seed, memory: null, cancellation);
            return model;
        }
        finally
        {
            GiveBack(memory, model);
        }
    }

    /// <summary>Fine-tunes <paramref name="model"/> in place on the task; AdamW's moments live in <paramref name="memory"/> when given.</summary>
    private void FineTune(BertModel model, int seed, CandidateMemory? memory, CancellationToken cancellation)
    {
        options.Validate();
        model.Threads = threads;
        int examples = Math.Min(options.MaxExamples ?? int.MaxValue, task.Train.Count);
        long steps = (long)options.Epochs * ((examples + options.BatchSize - 1) / options.BatchSize);
        if (steps == 0) return;
        var training = new TrainingOptions { LearningRate = options.LearningRate, Seed = seed, Threads = threads, WarmupRatio = 0.1f };
        var trainer = new Trainer(model, training, steps, options.Dropout, memory?.MomentStorage);
        trainer.DeferUntouchedEmbeddingRows(); // a batch touches a few hundred of the table's 30k rows
        for (int epoch = 0; epoch < options.Epochs; epoch++)
            foreach (var batch in task.TrainBatches(options.BatchSize, seed, epoch, options.MaxExamples))
            {
                cancellation.ThrowIfCancellationRequested();
                trainer.Step(batch);
            }
        trainer.SettleParameters();
    }

    // A memory is created when no idle one is left, sized at once for the largest pass any candidate makes (the
    // supermodel's shape, the longer of the training and dev batches, the longest sequence): grown on demand, the
    // workspace was reallocated whenever a candidate first went past the earlier ones in some dimension.
    private CandidateMemory TakeMemory()
    {
        if (_memories.TryPop(out var memory)) return memory;
        var workspace = BertActivations.Ensure(null, supermodel.Config, Math.Max(options.BatchSize, EncodedTask.DevBatchSize), task.MaxLength, 0);
        return new CandidateMemory(supermodel.Supermodel.Layout.TotalLength, workspace);
    }

    private static void Lend(CandidateMemory memory, BertModel model)
    {
        model.Workspace = memory.Workspace;
        memory.Workspace = null;
    }

    internal void GiveBack(CandidateMemory memory, BertModel? model)
    {
        if (model is not null)
        {
            memory.Workspace = model.Workspace ?? memory.Workspace; // a pass may have replaced it with a larger one
            model.Workspace = null;
        }
        _memories.Push(memory);
    }
}
