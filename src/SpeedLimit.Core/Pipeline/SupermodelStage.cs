using System.Diagnostics;
using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pretrained;
using SpeedLimit.Quantization;
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
        trainer.ReserveWorkspace(options.BatchSize, task.MaxLength);
        if (resumed is { HasOptimizerState: true }) resumed.RestoreOptimizer(trainer.Optimizer);
        RunSteps("supermodel", trainer, checkpoint, config, model, totalSteps, perEpoch, job, progress, notes, cancel,
            epoch => task.TrainBatches(options.BatchSize, job.Seed, epoch), (t, b, rng) => t.Step(b, rng));
        if (totalSteps == 0) progress?.Report(new PipelineProgress(PipelineStage.Supermodel, "no supermodel training requested (0 epochs)", 0, 0));
        return super;
    }

    /// <summary>
    /// The supermodel from a pretrained encoder, as DynaBERT and BootstrapNAS start: the teacher is the
    /// given fine-tuned checkpoint or <paramref name="pretrained"/> fine-tuned on the task here
    /// (checkpointed, resumable); the supermodel starts from the teacher's weights when it has the
    /// pretrained shape (else from the pretrained encoder with a fresh head), reordered by importance so
    /// leading slices hold the most important units, then sandwich-trained with every sub-model
    /// distilling from the teacher's logits.
    /// </summary>
    /// <param name="pretrained">The pretrained encoder under the task's head (a fresh classifier is fine).</param>
    public static PretrainedSupermodel TrainFromPretrained(SupermodelJob job, PretrainedStartOptions start, EncodedTask task, BertModel pretrained,
        string work, IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        start.Validate();
        var config = pretrained.Config;
        if (config.Head != task.Head) throw new ArgumentException($"the pretrained model carries a {config.Head} head; the task needs {task.Head}");
        if (config.VocabSize != task.Encoder.VocabSize)
            throw new UserInputException($"the pretrained model has a vocabulary of {config.VocabSize}, the task's tokenizer {task.Encoder.VocabSize}; tokenize with the model's own vocab.txt");
        if (config.MaxPositions < task.MaxLength)
            throw new UserInputException($"the pretrained model embeds {config.MaxPositions} positions, the task uses up to {task.MaxLength}; lower --max-length");
        PretrainedSpace.Check(job.Space, config);
        pretrained.Threads = job.Threads;

        var clock = Stopwatch.StartNew();
        var teacher = job.Options.TeacherCheckpoint is { } teacherPath
            ? LoadTeacher(teacherPath, task, job.Threads)
            : FineTuneTeacher(job, start, task, pretrained, Path.Combine(work, "teacher.safetensors"), progress, notes, cancel);
        double teacherSeconds = clock.Elapsed.TotalSeconds;
        double teacherFp32 = task.EvaluateDev(teacher).Primary;
        double teacherInt8 = task.EvaluateDev(teacher, new Int8Simulation(teacher)).Primary;
        notes.Add($"teacher {teacher.Config.Arch}: dev {task.Task.PrimaryMetric} {teacherFp32:F4} (fp32), {teacherInt8:F4} (int8)");

        var checkpoint = Path.Combine(work, "supermodel.safetensors");
        var (model, resumed) = LoadOrCreate(checkpoint, config, job);
        bool sameShape = teacher.Config == config;
        if (!sameShape && job.Options.Sandwich.HiddenDistillWeight > 0)
            throw new UserInputException($"hidden-state distillation needs a teacher of the pretrained shape {config.Arch} (its channels are reordered with the supermodel's); the teacher is {teacher.Config.Arch}: drop --hidden-distill or --teacher");
        var importanceBatches = task.TrainBatches(job.Options.BatchSize, job.Seed, epoch: 0).Take(start.ImportanceBatches);
        string how = start.Importance == ImportanceKind.Gradient
            ? $"gradient importance (DynaBERT, |Σ w·g| over {start.ImportanceBatches} task batches)"
            : "L1 magnitude importance (BootstrapNAS)";
        if (sameShape)
        {
            // Reorder the teacher itself (same function, deterministic), then start the supermodel from it: both
            // share one channel order, so the teacher's hidden states line up with every sub-model's slices.
            ImportanceReordering.Reorder(teacher, start.Importance, importanceBatches, cancel);
            if (resumed is null) teacher.Parameters.AsSpan().CopyTo(model.Parameters);
            notes.Add($"supermodel starts from the teacher, reordered by {how}");
        }
        else if (resumed is null)
        {
            pretrained.Parameters.AsSpan().CopyTo(model.Parameters);
            ImportanceReordering.Reorder(model, start.Importance, importanceBatches, cancel);
            notes.Add($"teacher {teacher.Config.Arch} differs from the pretrained shape {config.Arch}: the supermodel starts from the pretrained encoder with a fresh task head, reordered by {how}");
        }

        int perEpoch = (task.Train.Count + job.Options.BatchSize - 1) / job.Options.BatchSize;
        long totalSteps = (long)job.Options.Epochs * perEpoch;
        var super = new ElasticSupermodel(model);
        var trainer = new SupermodelTrainer(super, job.Space, Training(job), job.Options.Sandwich, totalSteps) { Teacher = teacher };
        trainer.ReserveWorkspace(job.Options.BatchSize, task.MaxLength);
        if (resumed is { HasOptimizerState: true }) resumed.RestoreOptimizer(trainer.Optimizer);
        else if (resumed is null) BertCheckpoint.Save(checkpoint, config, model.Parameters); // the reordered start, so a resume never reorders twice
        RunSteps("supermodel", trainer, checkpoint, config, model, totalSteps, perEpoch, job, progress, notes, cancel,
            epoch => task.TrainBatches(job.Options.BatchSize, job.Seed, epoch), (t, b, rng) => t.Step(b, rng));
        return new PretrainedSupermodel(super, teacher, teacherFp32, teacherInt8, teacherSeconds);
    }

    /// <summary>Fine-tunes the pretrained model on the task (the teacher), resumable from its own checkpoint.</summary>
    private static BertModel FineTuneTeacher(SupermodelJob job, PretrainedStartOptions start, EncodedTask task, BertModel pretrained, string path,
        IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        var config = pretrained.Config;
        var partial = Path.ChangeExtension(path, ".partial.safetensors");
        if (File.Exists(path))
        {
            var done = BertCheckpoint.Load(path);
            if (done.Config != config) throw new UserInputException($"teacher checkpoint '{path}' is for {done.Config.Arch}, not {config.Arch}; delete it to fine-tune again");
            notes.Add("teacher reused from the unfinished run");
            return new BertModel(config, done.Parameters) { Threads = job.Threads };
        }
        var model = new BertModel(config, pretrained.Parameters.ToArray()) { Threads = job.Threads };
        int perEpoch = (task.Train.Count + start.TeacherBatchSize - 1) / start.TeacherBatchSize;
        long total = (long)start.TeacherEpochs * perEpoch;
        var training = new TrainingOptions { LearningRate = start.TeacherLearningRate, WarmupRatio = 0.1f, Seed = job.Seed, Threads = job.Threads };
        var trainer = new Trainer(model, training, total, dropout: 0.1f);
        long skip = 0;
        if (File.Exists(partial))
        {
            var resumed = BertCheckpoint.Load(partial);
            if (resumed.Config == config && resumed.HasOptimizerState)
            {
                resumed.Parameters.AsSpan().CopyTo(model.Parameters);
                resumed.RestoreOptimizer(trainer.Optimizer);
                skip = trainer.OptimizerSteps;
                notes.Add($"teacher fine-tuning resumed at step {skip} of {total}");
            }
        }
        var clock = Stopwatch.StartNew();
        long n = 0;
        for (int epoch = 0; epoch < start.TeacherEpochs; epoch++)
            foreach (var batch in task.TrainBatches(start.TeacherBatchSize, job.Seed, epoch))
            {
                if (n++ < skip) continue;
                cancel.ThrowIfCancellationRequested();
                var r = trainer.Step(batch);
                if (r.SkippedNonFinite is { } bad) notes.Add($"teacher step {n}: non-finite value in {bad.TensorName}; step skipped");
                if (n % job.Options.CheckpointEverySteps == 0 && n < total) BertCheckpoint.SaveTraining(partial, config, model.Parameters, trainer.Optimizer);
                progress?.Report(new PipelineProgress(PipelineStage.Supermodel, $"teacher fine-tuning: epoch {epoch + 1}/{start.TeacherEpochs}, loss {r.Loss:F4}",
                    (int)n, (int)total, SpeedLimitPipeline.Eta(clock.Elapsed, (int)(n - skip), (int)(total - skip))));
            }
        BertCheckpoint.Save(path, config, model.Parameters);
        if (File.Exists(partial)) File.Delete(partial);
        notes.Add($"teacher: {config.Arch} fine-tuned from the pretrained weights for {start.TeacherEpochs} epoch(s) × {task.Train.Count} examples at lr {start.TeacherLearningRate:G3} in {clock.Elapsed.TotalSeconds:F0} s");
        return model;
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

/// <summary>What <see cref="SupermodelStage.TrainFromPretrained"/> built: the supermodel, its teacher and the teacher's dev metrics.</summary>
public sealed record PretrainedSupermodel(ElasticSupermodel Supermodel, BertModel Teacher, double TeacherMetricFp32, double TeacherMetricInt8, double TeacherSeconds);

/// <summary>An IProgress that reports on the caller's thread, in order (System.Progress posts to the thread pool).</summary>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
