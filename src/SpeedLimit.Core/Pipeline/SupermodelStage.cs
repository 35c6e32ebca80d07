using System.Diagnostics;
using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Search;
using SpeedLimit.Training;

namespace SpeedLimit.Pipeline;

/// <summary>What the supermodel stage trains: its options, the space whose largest architecture it is, and the machine settings.</summary>
/// <param name="MaxPositions">Positions the model embeds (covers the latency protocol's input as well as the task's).</param>
public sealed record SupermodelJob(SupermodelTrainingOptions Options, SearchSpace Space, int Seed, int Threads, int MaxPositions);

/// <summary>Supermodel training as a resumable stage: batches in a seeded order, a checkpoint (weights + AdamW state) every N steps.</summary>
public static class SupermodelStage
{
    /// <summary>Consecutive steps skipped for non-finite values after which training stops with an error instead of shipping an untrained model.</summary>
    internal const int MaxConsecutiveSkippedSteps = 20;

    /// <summary>
    /// Trains (or resumes) the supermodel at the space's largest architecture on the task,
    /// checkpointing as it goes; first pretrains it with masked-LM on <see cref="SupermodelTrainingOptions.PretrainCorpus"/>
    /// when given, and distils from <see cref="SupermodelTrainingOptions.TeacherCheckpoint"/> when given.
    /// </summary>
    public static ElasticSupermodel Train(SupermodelJob job, EncodedTask task, string checkpoint, IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        var options = job.Options;
        var config = task.ConfigFor(job.Space.Largest, job.Space.Heads, job.MaxPositions);
        int perEpoch = (task.Train.Count + options.BatchSize - 1) / options.BatchSize;
        long totalSteps = (long)options.Epochs * perEpoch;
        var (model, resumed) = LoadOrCreate(checkpoint, config, job);
        if (resumed is null && options.PretrainCorpus.Count > 0)
        {
            var pretrained = Pretrain(job, task, Path.ChangeExtension(checkpoint, ".pretrain.safetensors"), progress, notes, cancel);
            CopyEncoder(pretrained, model);
        }
        var super = new ElasticSupermodel(model);
        var trainer = new SupermodelTrainer(super, job.Space, Training(job), options.Sandwich, totalSteps);
        if (options.TeacherCheckpoint is { } teacherPath) trainer.Teacher = LoadTeacher(teacherPath, task, job.Threads);
        if (resumed is { HasOptimizerState: true }) resumed.RestoreOptimizer(trainer.Optimizer);
        RunSteps("supermodel", trainer, checkpoint, config, model, totalSteps, perEpoch, job, progress, notes, cancel,
            epoch => task.TrainBatches(options.BatchSize, job.Seed, epoch), (t, b, rng) => t.Step(b, rng));
        if (totalSteps == 0) progress?.Report(new PipelineProgress(PipelineStage.Supermodel, "no supermodel training requested (0 epochs)", 0, 0));
        return super;
    }

    /// <summary>Masked-LM pretraining of a supermodel with the same encoder shape, on plain-text files.</summary>
    private static BertModel Pretrain(SupermodelJob job, EncodedTask task, string checkpoint, IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        var options = job.Options;
        foreach (var f in options.PretrainCorpus)
            if (!File.Exists(f)) throw new FileNotFoundException($"pretraining corpus file '{f}' does not exist");
        int segment = Math.Min(task.MaxLength, 128);
        var config = new BertConfig(job.Space.Largest, job.Space.Heads, task.Encoder.VocabSize, HeadKind.MaskedLm,
            maxPositions: Math.Max(job.MaxPositions, task.MaxLength));
        var corpus = new MaskedLmCorpus(options.PretrainCorpus, task.Encoder, new MaskedLmOptions { SegmentLength = segment, Seed = job.Seed });
        int perEpoch = corpus.Batches(options.BatchSize, 0).Count(); // one streaming pass to size the schedule
        long totalSteps = (long)options.PretrainEpochs * perEpoch;
        var (model, resumed) = LoadOrCreate(checkpoint, config, job);
        var trainer = new SupermodelTrainer(new ElasticSupermodel(model), job.Space, Training(job), options.Sandwich, totalSteps);
        if (resumed is { HasOptimizerState: true }) resumed.RestoreOptimizer(trainer.Optimizer);
        RunSteps("masked-LM pretraining", trainer, checkpoint, config, model, totalSteps, perEpoch, job, progress, notes, cancel,
            epoch => corpus.Batches(options.BatchSize, epoch).Select(b => b.ToMaskedLmBatch()), (t, b, rng) => t.Step(b, rng));
        return model;
    }

    /// <summary>The shared loop: seeded batch order, skip what a resumed checkpoint already did, checkpoint every N steps.</summary>
    private static void RunSteps<TBatch>(string what, SupermodelTrainer trainer, string checkpoint, BertConfig config, BertModel model, long totalSteps, int perEpoch,
        SupermodelJob job, IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel,
        Func<int, IEnumerable<TBatch>> epochBatches, Func<SupermodelTrainer, TBatch, Random, StepResult> step)
    {
        long done = trainer.Steps;
        if (done > 0) notes.Add($"{what} resumed at step {done} of {totalSteps}");
        if (totalSteps == 0 || perEpoch == 0) return;
        long epochs = (totalSteps + perEpoch - 1) / perEpoch;
        var clock = Stopwatch.StartNew();
        long startStep = done, n = 0;
        int skippedInARow = 0;
        for (int epoch = 0; epoch < epochs; epoch++)
            foreach (var batch in epochBatches(epoch))
            {
                if (n >= totalSteps) break;
                if (n++ < done) continue; // already trained before a resume: same batches, same order
                cancel.ThrowIfCancellationRequested();
                var result = step(trainer, batch, new Random(Seeds.Combine(job.Seed, n, what.Length)));
                if (result.SkippedNonFinite is { } bad)
                {
                    notes.Add($"{what} step {n}: non-finite value in {bad.TensorName}; step skipped");
                    // A model whose every step is skipped never trains: stop rather than ship it as if it had.
                    if (++skippedInARow >= Math.Min(MaxConsecutiveSkippedSteps, totalSteps - startStep))
                        throw new UserInputException($"{what}: {skippedInARow} steps in a row hit a non-finite value in {bad.TensorName} and were skipped, so the model is not training; check the teacher and the starting weights for NaN/Inf, or lower the learning rate");
                }
                else skippedInARow = 0;
                if (n % job.Options.CheckpointEverySteps == 0 || n == totalSteps)
                    BertCheckpoint.SaveTraining(checkpoint, config, model.Parameters, trainer.Optimizer);
                progress?.Report(new PipelineProgress(PipelineStage.Supermodel, $"{what}: epoch {epoch + 1}/{epochs}, loss {result.Loss:F4}",
                    (int)n, (int)totalSteps, SpeedLimitPipeline.Eta(clock.Elapsed, (int)(n - startStep), (int)(totalSteps - startStep))));
            }
    }

    private static (BertModel Model, BertCheckpointData? Resumed) LoadOrCreate(string checkpoint, BertConfig config, SupermodelJob job)
    {
        BertModel model;
        BertCheckpointData? resumed = null;
        if (File.Exists(checkpoint))
        {
            resumed = BertCheckpoint.Load(checkpoint);
            if (resumed.Config != config) throw new UserInputException($"checkpoint '{checkpoint}' is for {resumed.Config.Arch} ({resumed.Config.Head}), not {config.Arch} ({config.Head}); delete it to retrain");
            model = new BertModel(config, resumed.Parameters);
        }
        else model = BertModel.CreateRandom(config, job.Seed);
        model.Threads = job.Threads;
        return (model, resumed);
    }

    private static TrainingOptions Training(SupermodelJob job) =>
        new() { LearningRate = job.Options.LearningRate, Seed = job.Seed, Threads = job.Threads, WarmupRatio = 0.1f };

    /// <summary>Copies every encoder tensor (embeddings, layers) of a pretrained model into a task model of the same encoder shape.</summary>
    internal static void CopyEncoder(BertModel from, BertModel to)
    {
        foreach (var t in to.Layout.Tensors)
            if (t.Name.StartsWith("bert.embeddings.", StringComparison.Ordinal) || t.Name.StartsWith("bert.encoder.", StringComparison.Ordinal))
                from.Tensor(t.Name).CopyTo(to.Tensor(t.Name));
    }

    internal static BertModel LoadTeacher(string path, EncodedTask task, int threads)
    {
        var data = BertCheckpoint.Load(path);
        if (data.Config.VocabSize != task.Encoder.VocabSize)
            throw new UserInputException($"teacher '{path}' has a vocabulary of {data.Config.VocabSize}, the task's tokenizer {task.Encoder.VocabSize}; use a teacher trained with the same vocabulary");
        if (data.Config.MaxPositions < task.MaxLength)
            throw new UserInputException($"teacher '{path}' handles {data.Config.MaxPositions} positions, the task uses up to {task.MaxLength}; lower --max-length");
        return new BertModel(data.Config, data.Parameters) { Threads = threads };
    }
}

/// <summary>An IProgress that reports on the caller's thread, in order (System.Progress posts to the thread pool).</summary>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
