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
    // One candidate's memory (workspace, parameters, gradients, moments, int8 scratch) for every candidate, taken and
    // given back atomically: concurrent evaluations never share one (the others allocate their own).
    private CandidateMemory? _memory;
    private int _memoryCreated;

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
            var (parameters, gradients) = memory.ModelStorage(new BertParameterLayout(supermodel.SubConfig(arch)).TotalLength);
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
        var trainer = new Trainer(model, training, steps, options.Dropout, memory?.MomentStorage(model.Layout.TotalLength));
        trainer.DeferUntouchedEmbeddingRows(); // a batch touches a few hundred of the table's 30k rows
        for (int epoch = 0; epoch < options.Epochs; epoch++)
            foreach (var batch in task.TrainBatches(options.BatchSize, seed, epoch, options.MaxExamples))
            {
                cancellation.ThrowIfCancellationRequested();
                trainer.Step(batch);
            }
        trainer.SettleParameters();
    }

    // The first evaluation creates the memory, sized at once for the largest pass any candidate makes (the supermodel's
    // shape, the longer of the training and dev batches, the longest sequence): grown on demand, the workspace was
    // reallocated whenever a candidate first went past the earlier ones in some dimension.
    private CandidateMemory TakeMemory()
    {
        var memory = Interlocked.Exchange(ref _memory, null);
        if (memory is not null) return memory;
        if (Interlocked.Exchange(ref _memoryCreated, 1) == 1) return new CandidateMemory(0, null); // another evaluation holds the first
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
        Interlocked.Exchange(ref _memory, memory);
    }
}
