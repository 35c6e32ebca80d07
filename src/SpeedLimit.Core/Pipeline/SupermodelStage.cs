using System.Diagnostics;
using SpeedLimit.Checkpoints;
using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Pipeline;

/// <summary>Supermodel training as a resumable stage: batches in a seeded order, a checkpoint (weights + AdamW state) every N steps.</summary>
public static class SupermodelStage
{
    /// <summary>Trains (or resumes) the supermodel at the space's largest architecture, checkpointing as it goes.</summary>
    public static ElasticSupermodel Train(PipelineOptions options, EncodedTask task, string checkpoint, IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        var config = task.ConfigFor(options.Space.Largest, options.Space.Heads, options.LatencySequenceLength);
        int perEpoch = (task.Train.Count + options.SupermodelBatchSize - 1) / options.SupermodelBatchSize;
        long totalSteps = (long)options.SupermodelEpochs * perEpoch;
        var training = new TrainingOptions { LearningRate = options.SupermodelLearningRate, Seed = options.Seed, Threads = options.TrainThreads, WarmupRatio = 0.1f };
        BertModel model;
        BertCheckpointData? resumed = null;
        if (File.Exists(checkpoint))
        {
            resumed = BertCheckpoint.Load(checkpoint);
            if (resumed.Config != config) throw new UserInputException($"supermodel checkpoint '{checkpoint}' is for {resumed.Config.Arch}, not {config.Arch}; delete it to retrain");
            model = new BertModel(config, resumed.Parameters);
        }
        else model = BertModel.CreateRandom(config, options.Seed);
        model.Threads = options.TrainThreads;
        var super = new ElasticSupermodel(model);
        var trainer = new SupermodelTrainer(super, options.Space, training, options.Supermodel, totalSteps);
        if (resumed is { HasOptimizerState: true }) resumed.RestoreOptimizer(trainer.Optimizer);
        long done = trainer.Steps;
        if (done > 0) notes.Add($"supermodel resumed at step {done} of {totalSteps}");
        var clock = Stopwatch.StartNew();
        long startStep = done, step = 0;
        float lastLoss = float.NaN;
        for (int epoch = 0; epoch < options.SupermodelEpochs; epoch++)
            foreach (var batch in task.TrainBatches(options.SupermodelBatchSize, options.Seed, epoch))
            {
                if (step++ < done) continue; // already trained before a resume: same batches, same order
                cancel.ThrowIfCancellationRequested();
                var result = trainer.Step(batch, new Random(Seeds.Combine(options.Seed, step)));
                lastLoss = result.Loss;
                if (result.SkippedNonFinite is { } bad) notes.Add($"supermodel step {step}: non-finite value in {bad.TensorName}; step skipped");
                if (step % options.CheckpointEverySteps == 0 || step == totalSteps)
                    BertCheckpoint.SaveTraining(checkpoint, config, model.Parameters, trainer.Optimizer);
                progress?.Report(new PipelineProgress(PipelineStage.Supermodel, $"epoch {epoch + 1}/{options.SupermodelEpochs}, loss {lastLoss:F4}",
                    (int)step, (int)totalSteps, SpeedLimitPipeline.Eta(clock.Elapsed, (int)(step - startStep), (int)(totalSteps - startStep))));
            }
        if (totalSteps == 0) progress?.Report(new PipelineProgress(PipelineStage.Supermodel, "no supermodel training requested (0 epochs)", 0, 0));
        return super;
    }

}

/// <summary>An IProgress that reports on the caller's thread, in order (System.Progress posts to the thread pool).</summary>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
