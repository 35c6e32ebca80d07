using System.Diagnostics;
using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pretrained;
using SpeedLimit.Quantization;
using SpeedLimit.Training;

namespace SpeedLimit.Pipeline;

/// <summary>Supermodel training as a resumable stage: batches in a seeded order, a checkpoint (weights + AdamW state) every N steps.</summary>
public static class SupermodelStage
{
    /// <summary>
    /// Trains (or resumes) the supermodel at the space's largest architecture on the task,
    /// checkpointing as it goes; first pretrains it with masked-LM on <see cref="PipelineOptions.PretrainCorpus"/>
    /// when given, and distils from <see cref="PipelineOptions.TeacherCheckpoint"/> when given.
    /// </summary>
    public static ElasticSupermodel Train(PipelineOptions options, EncodedTask task, string checkpoint, IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        var config = task.ConfigFor(options.Space.Largest, options.Space.Heads, options.LatencySequenceLength);
        int perEpoch = (task.Train.Count + options.SupermodelBatchSize - 1) / options.SupermodelBatchSize;
        long totalSteps = (long)options.SupermodelEpochs * perEpoch;
        var (model, resumed) = LoadOrCreate(checkpoint, config, options);
        if (resumed is null && options.PretrainCorpus.Count > 0)
        {
            var pretrained = Pretrain(options, task, Path.ChangeExtension(checkpoint, ".pretrain.safetensors"), progress, notes, cancel);
            CopyEncoder(pretrained, model);
        }
        var super = new ElasticSupermodel(model);
        var trainer = new SupermodelTrainer(super, options.Space, Training(options), options.Supermodel, totalSteps);
        if (options.TeacherCheckpoint is { } teacherPath) trainer.Teacher = LoadTeacher(teacherPath, task, options);
        if (resumed is { HasOptimizerState: true }) resumed.RestoreOptimizer(trainer.Optimizer);
        RunSteps("supermodel", trainer, checkpoint, config, model, totalSteps, perEpoch, options, progress, notes, cancel,
            epoch => task.TrainBatches(options.SupermodelBatchSize, options.Seed, epoch), (t, b, rng) => t.Step(b, rng));
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
    public static PretrainedSupermodel TrainFromPretrained(PipelineOptions options, PretrainedStartOptions start, EncodedTask task, BertModel pretrained,
        string work, IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        start.Validate();
        var config = pretrained.Config;
        if (config.Head != task.Head) throw new ArgumentException($"the pretrained model carries a {config.Head} head; the task needs {task.Head}");
        if (config.VocabSize != task.Encoder.VocabSize)
            throw new UserInputException($"the pretrained model has a vocabulary of {config.VocabSize}, the task's tokenizer {task.Encoder.VocabSize}; tokenize with the model's own vocab.txt");
        if (config.MaxPositions < task.MaxLength)
            throw new UserInputException($"the pretrained model embeds {config.MaxPositions} positions, the task uses up to {task.MaxLength}; lower --max-length");
        PretrainedSpace.Check(options.Space, config);
        pretrained.Threads = options.TrainThreads;

        var clock = Stopwatch.StartNew();
        var teacher = options.TeacherCheckpoint is { } teacherPath
            ? LoadTeacher(teacherPath, task, options)
            : FineTuneTeacher(options, start, task, pretrained, Path.Combine(work, "teacher.safetensors"), progress, notes, cancel);
        double teacherSeconds = clock.Elapsed.TotalSeconds;
        double teacherFp32 = task.EvaluateDev(teacher).Primary;
        double teacherInt8 = task.EvaluateDev(teacher, new Int8Simulation(teacher)).Primary;
        notes.Add($"teacher {teacher.Config.Arch}: dev {task.Task.PrimaryMetric} {teacherFp32:F4} (fp32), {teacherInt8:F4} (int8)");

        var checkpoint = Path.Combine(work, "supermodel.safetensors");
        var (model, resumed) = LoadOrCreate(checkpoint, config, options);
        bool sameShape = teacher.Config == config;
        var importanceBatches = task.TrainBatches(options.SupermodelBatchSize, options.Seed, epoch: 0).Take(start.ImportanceBatches);
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

        int perEpoch = (task.Train.Count + options.SupermodelBatchSize - 1) / options.SupermodelBatchSize;
        long totalSteps = (long)options.SupermodelEpochs * perEpoch;
        var super = new ElasticSupermodel(model);
        var trainer = new SupermodelTrainer(super, options.Space, Training(options), options.Supermodel, totalSteps) { Teacher = teacher };
        if (resumed is { HasOptimizerState: true }) resumed.RestoreOptimizer(trainer.Optimizer);
        else if (resumed is null) BertCheckpoint.Save(checkpoint, config, model.Parameters); // the reordered start, so a resume never reorders twice
        RunSteps("supermodel", trainer, checkpoint, config, model, totalSteps, perEpoch, options, progress, notes, cancel,
            epoch => task.TrainBatches(options.SupermodelBatchSize, options.Seed, epoch), (t, b, rng) => t.Step(b, rng));
        return new PretrainedSupermodel(super, teacher, teacherFp32, teacherInt8, teacherSeconds);
    }

    /// <summary>Fine-tunes the pretrained model on the task (the teacher), resumable from its own checkpoint.</summary>
    private static BertModel FineTuneTeacher(PipelineOptions options, PretrainedStartOptions start, EncodedTask task, BertModel pretrained, string path,
        IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        var config = pretrained.Config;
        var partial = Path.ChangeExtension(path, ".partial.safetensors");
        if (File.Exists(path))
        {
            var done = BertCheckpoint.Load(path);
            if (done.Config != config) throw new UserInputException($"teacher checkpoint '{path}' is for {done.Config.Arch}, not {config.Arch}; delete it to fine-tune again");
            notes.Add("teacher reused from the unfinished run");
            return new BertModel(config, done.Parameters) { Threads = options.TrainThreads };
        }
        var model = new BertModel(config, pretrained.Parameters.ToArray()) { Threads = options.TrainThreads };
        int perEpoch = (task.Train.Count + start.TeacherBatchSize - 1) / start.TeacherBatchSize;
        long total = (long)start.TeacherEpochs * perEpoch;
        var training = new TrainingOptions { LearningRate = start.TeacherLearningRate, WarmupRatio = 0.1f, Seed = options.Seed, Threads = options.TrainThreads };
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
            foreach (var batch in task.TrainBatches(start.TeacherBatchSize, options.Seed, epoch))
            {
                if (n++ < skip) continue;
                cancel.ThrowIfCancellationRequested();
                var r = trainer.Step(batch);
                if (r.SkippedNonFinite is { } bad) notes.Add($"teacher step {n}: non-finite value in {bad.TensorName}; step skipped");
                if (n % options.CheckpointEverySteps == 0 && n < total) BertCheckpoint.SaveTraining(partial, config, model.Parameters, trainer.Optimizer);
                progress?.Report(new PipelineProgress(PipelineStage.Supermodel, $"teacher fine-tuning: epoch {epoch + 1}/{start.TeacherEpochs}, loss {r.Loss:F4}",
                    (int)n, (int)total, SpeedLimitPipeline.Eta(clock.Elapsed, (int)(n - skip), (int)(total - skip))));
            }
        BertCheckpoint.Save(path, config, model.Parameters);
        if (File.Exists(partial)) File.Delete(partial);
        notes.Add($"teacher: {config.Arch} fine-tuned from the pretrained weights for {start.TeacherEpochs} epoch(s) × {task.Train.Count} examples at lr {start.TeacherLearningRate:G3} in {clock.Elapsed.TotalSeconds:F0} s");
        return model;
    }

    /// <summary>Masked-LM pretraining of a supermodel with the same encoder shape, on plain-text files.</summary>
    private static BertModel Pretrain(PipelineOptions options, EncodedTask task, string checkpoint, IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        foreach (var f in options.PretrainCorpus)
            if (!File.Exists(f)) throw new FileNotFoundException($"pretraining corpus file '{f}' does not exist");
        int segment = Math.Min(options.MaxSequenceLength, 128);
        var config = new BertConfig(options.Space.Largest, options.Space.Heads, task.Encoder.VocabSize, HeadKind.MaskedLm,
            maxPositions: Math.Max(options.LatencySequenceLength, options.MaxSequenceLength));
        var corpus = new MaskedLmCorpus(options.PretrainCorpus, task.Encoder, new MaskedLmOptions { SegmentLength = segment, Seed = options.Seed });
        int perEpoch = corpus.Batches(options.SupermodelBatchSize, 0).Count(); // one streaming pass to size the schedule
        long totalSteps = (long)options.PretrainEpochs * perEpoch;
        var (model, resumed) = LoadOrCreate(checkpoint, config, options);
        var trainer = new SupermodelTrainer(new ElasticSupermodel(model), options.Space, Training(options), options.Supermodel, totalSteps);
        if (resumed is { HasOptimizerState: true }) resumed.RestoreOptimizer(trainer.Optimizer);
        RunSteps("masked-LM pretraining", trainer, checkpoint, config, model, totalSteps, perEpoch, options, progress, notes, cancel,
            epoch => corpus.Batches(options.SupermodelBatchSize, epoch).Select(b => b.ToMaskedLmBatch()), (t, b, rng) => t.Step(b, rng));
        return model;
    }

    /// <summary>The shared loop: seeded batch order, skip what a resumed checkpoint already did, checkpoint every N steps.</summary>
    private static void RunSteps<TBatch>(string what, SupermodelTrainer trainer, string checkpoint, BertConfig config, BertModel model, long totalSteps, int perEpoch,
        PipelineOptions options, IProgress<PipelineProgress>? progress, ICollection<string> notes, CancellationToken cancel,
        Func<int, IEnumerable<TBatch>> epochBatches, Func<SupermodelTrainer, TBatch, Random, StepResult> step)
    {
        long done = trainer.Steps;
        if (done > 0) notes.Add($"{what} resumed at step {done} of {totalSteps}");
        if (totalSteps == 0 || perEpoch == 0) return;
        long epochs = (totalSteps + perEpoch - 1) / perEpoch;
        var clock = Stopwatch.StartNew();
        long startStep = done, n = 0;
        for (int epoch = 0; epoch < epochs; epoch++)
            foreach (var batch in epochBatches(epoch))
            {
                if (n >= totalSteps) break;
                if (n++ < done) continue; // already trained before a resume: same batches, same order
                cancel.ThrowIfCancellationRequested();
                var result = step(trainer, batch, new Random(Seeds.Combine(options.Seed, n, what.Length)));
                if (result.SkippedNonFinite is { } bad) notes.Add($"{what} step {n}: non-finite value in {bad.TensorName}; step skipped");
                if (n % options.CheckpointEverySteps == 0 || n == totalSteps)
                    BertCheckpoint.SaveTraining(checkpoint, config, model.Parameters, trainer.Optimizer);
                progress?.Report(new PipelineProgress(PipelineStage.Supermodel, $"{what}: epoch {epoch + 1}/{epochs}, loss {result.Loss:F4}",
                    (int)n, (int)totalSteps, SpeedLimitPipeline.Eta(clock.Elapsed, (int)(n - startStep), (int)(totalSteps - startStep))));
            }
    }

    private static (BertModel Model, BertCheckpointData? Resumed) LoadOrCreate(string checkpoint, BertConfig config, PipelineOptions options)
    {
        BertModel model;
        BertCheckpointData? resumed = null;
        if (File.Exists(checkpoint))
        {
            resumed = BertCheckpoint.Load(checkpoint);
            if (resumed.Config != config) throw new UserInputException($"checkpoint '{checkpoint}' is for {resumed.Config.Arch} ({resumed.Config.Head}), not {config.Arch} ({config.Head}); delete it to retrain");
            model = new BertModel(config, resumed.Parameters);
        }
        else model = BertModel.CreateRandom(config, options.Seed);
        model.Threads = options.TrainThreads;
        return (model, resumed);
    }

    private static TrainingOptions Training(PipelineOptions options) =>
        new() { LearningRate = options.SupermodelLearningRate, Seed = options.Seed, Threads = options.TrainThreads, WarmupRatio = 0.1f };

    /// <summary>Copies every encoder tensor (embeddings, layers) of a pretrained model into a task model of the same encoder shape.</summary>
    internal static void CopyEncoder(BertModel from, BertModel to)
    {
        foreach (var t in to.Layout.Tensors)
            if (t.Name.StartsWith("bert.embeddings.", StringComparison.Ordinal) || t.Name.StartsWith("bert.encoder.", StringComparison.Ordinal))
                from.Tensor(t.Name).CopyTo(to.Tensor(t.Name));
    }

    private static BertModel LoadTeacher(string path, EncodedTask task, PipelineOptions options)
    {
        var data = BertCheckpoint.Load(path);
        if (data.Config.VocabSize != task.Encoder.VocabSize)
            throw new UserInputException($"teacher '{path}' has a vocabulary of {data.Config.VocabSize}, the task's tokenizer {task.Encoder.VocabSize}; use a teacher trained with the same vocabulary");
        if (data.Config.MaxPositions < task.MaxLength)
            throw new UserInputException($"teacher '{path}' handles {data.Config.MaxPositions} positions, the task uses up to {task.MaxLength}; lower --max-length");
        return new BertModel(data.Config, data.Parameters) { Threads = options.TrainThreads };
    }
}

/// <summary>What <see cref="SupermodelStage.TrainFromPretrained"/> built: the supermodel, its teacher and the teacher's dev metrics.</summary>
public sealed record PretrainedSupermodel(ElasticSupermodel Supermodel, BertModel Teacher, double TeacherMetricFp32, double TeacherMetricInt8, double TeacherSeconds);

/// <summary>An IProgress that reports on the caller's thread, in order (System.Progress posts to the thread pool).</summary>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
