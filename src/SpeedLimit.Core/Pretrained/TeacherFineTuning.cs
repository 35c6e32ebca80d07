using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Onnx;
using SpeedLimit.Pipeline;
using SpeedLimit.Quantization;
using SpeedLimit.Training;

namespace SpeedLimit.Pretrained;

/// <summary>
/// How a pretrained encoder is fine-tuned into the task's teacher. Defaults are Hugging Face's usual
/// GLUE recipe: AdamW (β 0.9/0.999, ε 1e-8, weight decay 0.01), peak learning rate 5e-5 (the Trainer's
/// default; 2e-5…5e-5 is the usual range), linear warm-up over 10 % of the steps then linear decay,
/// 3 epochs, batch 32, dropout 0.1, gradient clipping at norm 1.
/// </summary>
public sealed record TeacherFineTuneOptions
{
    public int Epochs { get; init; } = 3;
    public int BatchSize { get; init; } = 32;
    public float LearningRate { get; init; } = 5e-5f;
    public float WarmupRatio { get; init; } = 0.1f;
    public float WeightDecay { get; init; } = 0.01f;
    public float Dropout { get; init; } = 0.1f;
    /// <summary>Stop after this many optimizer steps (null: the epochs' worth), e.g. for a quick trial.</summary>
    public long? MaxSteps { get; init; }
    public int CheckpointEverySteps { get; init; } = 200;
    public int Seed { get; init; } = 42;
    public int Threads { get; init; } = Environment.ProcessorCount;

    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentException($"--epochs {Epochs} must be at least 1");
        if (BatchSize < 1) throw new ArgumentException($"--batch-size {BatchSize} must be at least 1");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ArgumentException($"--lr {LearningRate} must be a positive number (Hugging Face's range: 2e-5 to 5e-5)");
        if (!(WarmupRatio is >= 0 and <= 1)) throw new ArgumentException($"--warmup-ratio {WarmupRatio} must be in [0, 1]");
        if (!(WeightDecay >= 0)) throw new ArgumentException($"weight decay {WeightDecay} must be ≥ 0");
        if (!(Dropout is >= 0 and < 1)) throw new ArgumentException($"--dropout {Dropout} must be in [0, 1)");
        if (MaxSteps is < 1) throw new ArgumentException($"--max-steps {MaxSteps} must be at least 1");
        if (CheckpointEverySteps < 1) throw new ArgumentException($"--checkpoint-every {CheckpointEverySteps} must be at least 1");
        if (Threads < 1) throw new ArgumentException($"--threads {Threads} must be at least 1");
    }

    /// <summary>The optimisation settings the <see cref="Trainer"/> takes.</summary>
    public TrainingOptions ToTraining() => new()
    {
        LearningRate = LearningRate, WarmupRatio = WarmupRatio, WeightDecay = WeightDecay, Seed = Seed, Threads = Threads,
        Beta1 = 0.9f, Beta2 = 0.999f, Epsilon = 1e-8f, MaxGradNorm = 1f,
    };
}

/// <summary>Progress of a fine-tuning run: steps done, the last loss, and dev metrics as epochs end.</summary>
public sealed record FineTuneProgress(string Message, long Step, long TotalSteps, TimeSpan? Eta);

/// <summary>What <see cref="TeacherFineTuning.Run"/> wrote and measured.</summary>
/// <param name="DevMetric">The task's primary dev metric of the fp32 teacher (engine).</param>
/// <param name="DevMetricInt8">The same with every linear layer int8-simulated as the exported int8 graph computes.</param>
/// <param name="OnnxDevMetricFp32">The exported fp32 ONNX file scored on dev by ONNX Runtime (the paper's "Baseline BERT").</param>
/// <param name="OnnxDevMetricInt8">The exported int8 ONNX file scored by ONNX Runtime (the paper's "Quantized BERT").</param>
public sealed record TeacherResult(BertModel Model, string MetricName, double DevMetric, double DevMetricInt8, double OnnxDevMetricFp32, double OnnxDevMetricInt8,
    long Steps, double TrainSeconds,
    string CheckpointFile, string Fp32OnnxFile, string Int8OnnxFile, string HuggingFaceFolder, string SummaryFile, IReadOnlyList<string> Notes);

/// <summary>
/// <c>speedlimit finetune</c>: a pretrained encoder fine-tuned on a task with Hugging Face's recipe into the
/// teacher (the paper's "Baseline BERT"), written as a SpeedLimit checkpoint, fp32 and int8 ONNX (the
/// paper's "Quantized BERT"), and a Hugging Face folder. Training checkpoints (weights + AdamW state +
/// position) every N steps into <c>work/</c>; a rerun with the same settings resumes there, with the same
/// batches in the same order.
/// </summary>
public static class TeacherFineTuning
{
    public const string CheckpointFile = "teacher.safetensors";
    public const string Fp32OnnxFile = "teacher.fp32.onnx";
    public const string Int8OnnxFile = "teacher.int8.onnx";
    public const string HuggingFaceSubfolder = "teacher-hf";
    public const string VocabFile = "vocab.txt";
    public const string SummaryFile = "finetune.json";
    public const string TrainingStateFile = "work/training.safetensors";
    private const string FingerprintKey = "speedlimit.finetune.fingerprint";
    private const string StepKey = "speedlimit.finetune.step";

    /// <summary>
    /// The task tokenized with the pretrained model's own vocabulary (written to <paramref name="outputDir"/>/vocab.txt),
    /// cut to the example limits of <paramref name="data"/> with a seeded draw.
    /// </summary>
    public static EncodedTask LoadTask(PretrainedEncoder encoder, DataOptions data, int seed, string outputDir)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(data);
        data.Validate();
        if (string.Equals(data.Task, BuiltinTask.Name, StringComparison.OrdinalIgnoreCase))
            throw new UserInputException($"the built-in task has its own word-level vocabulary, which a pretrained model does not know; fine-tune on a GLUE task (--task sst2 --data-dir …)");
        if (data.MaxSequenceLength > encoder.Config.MaxPositions)
            throw new UserInputException($"--max-length {data.MaxSequenceLength} exceeds the {encoder.Config.MaxPositions} positions of '{encoder.Source}'; use at most {encoder.Config.MaxPositions}");
        Directory.CreateDirectory(outputDir);
        var vocabPath = Path.Combine(outputDir, VocabFile);
        AtomicFile.WriteAllText(vocabPath, string.Concat(encoder.Vocab.Select(v => v + "\n")));
        var tokenizer = BertTextEncoder.FromVocabFile(vocabPath, encoder.LowerCase);
        return EncodedTask.Load(data, seed, tokenizer);
    }

    /// <summary>Fine-tunes, evaluates and writes the teacher and its exports into <paramref name="outputDir"/>.</summary>
    public static TeacherResult Run(PretrainedEncoder encoder, EncodedTask task, TeacherFineTuneOptions options, string outputDir,
        IProgress<FineTuneProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (task.Encoder.VocabSize != encoder.Config.VocabSize)
            throw new UserInputException($"the task's tokenizer has {task.Encoder.VocabSize} tokens but '{encoder.Source}' embeds {encoder.Config.VocabSize}; tokenize with the model's own vocab.txt");
        Directory.CreateDirectory(outputDir);
        var notes = new List<string>(encoder.Notes);
        int labels = Math.Max(2, task.Task.NumLabels);
        var model = encoder.CreateModel(task.Head, labels, options.Seed, out var randomTensors);
        if (randomTensors.Count > 0) notes.Add($"initialized for the task (not in '{encoder.Source}'): {string.Join(", ", randomTensors)}");
        var fingerprint = Fingerprint(encoder, task, options);
        var clock = Stopwatch.StartNew();
        long steps = Train(model, task, options, Path.Combine(outputDir, TrainingStateFile), fingerprint, progress, notes, cancel);
        double trainSeconds = clock.Elapsed.TotalSeconds;

        progress?.Report(new FineTuneProgress("evaluating on dev (fp32 and int8)", steps, steps, null));
        double fp32 = task.EvaluateDev(model).Primary;
        double int8 = task.EvaluateDev(model, new Int8Simulation(model)).Primary;

        progress?.Report(new FineTuneProgress("writing the teacher, its ONNX exports and a Hugging Face folder", steps, steps, null));
        var checkpoint = Path.Combine(outputDir, CheckpointFile);
        var meta = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["speedlimit.pretrained.source"] = encoder.Source,
            ["speedlimit.task"] = task.Task.Name,
            ["speedlimit.dev_metric"] = fp32.ToString("R", CultureInfo.InvariantCulture),
        };
        BertCheckpoint.Save(checkpoint, model.Config, model.Parameters, meta);
        var fp32Onnx = Path.Combine(outputDir, Fp32OnnxFile);
        var int8Onnx = Path.Combine(outputDir, Int8OnnxFile);
        BertOnnxExporter.Save(model.Config, model.Layout, model.Parameters, fp32Onnx, new OnnxExportOptions { Precision = Precision.Fp32 });
        BertOnnxExporter.Save(model.Config, model.Layout, model.Parameters, int8Onnx, new OnnxExportOptions { Precision = Precision.Int8 });
        progress?.Report(new FineTuneProgress("scoring the exported ONNX files on dev with ONNX Runtime", steps, steps, null));
        double ortFp32 = ScoreOnnx(fp32Onnx, task, options.Threads), ortInt8 = ScoreOnnx(int8Onnx, task, options.Threads);
        var hf = Path.Combine(outputDir, HuggingFaceSubfolder);
        HuggingFaceFolder.Write(hf, model, encoder.Vocab, encoder.LowerCase, labelNames: task.Task.LabelNames, overwrite: true);

        var summary = new JsonObject
        {
            ["pretrained"] = encoder.Source,
            ["architecture"] = model.Config.Arch.ToString(),
            ["heads"] = model.Config.Heads,
            ["task"] = task.Task.Name,
            ["metric"] = task.Task.PrimaryMetric.ToString(),
            ["dev_metric_fp32"] = fp32,
            ["dev_metric_int8_simulated"] = int8,
            ["dev_metric_onnx_fp32"] = ortFp32,
            ["dev_metric_onnx_int8"] = ortInt8,
            ["train_examples"] = task.Train.Count,
            ["dev_examples"] = task.Dev.Count,
            ["max_length"] = task.MaxLength,
            ["optimizer_steps"] = steps,
            ["train_seconds_this_process"] = trainSeconds,
            ["options"] = JsonSerializer.SerializeToNode(options, OptionsFingerprint.Json),
            ["files"] = new JsonArray(CheckpointFile, Fp32OnnxFile, Int8OnnxFile, HuggingFaceSubfolder, VocabFile),
            ["notes"] = new JsonArray(notes.Select(n => (JsonNode)n!).ToArray()),
        };
        var summaryPath = Path.Combine(outputDir, SummaryFile);
        AtomicFile.WriteAllText(summaryPath, summary.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        var state = Path.Combine(outputDir, TrainingStateFile);
        if (File.Exists(state)) File.Delete(state); // finished: the teacher replaces the training state
        var work = Path.GetDirectoryName(state)!;
        if (Directory.Exists(work) && !Directory.EnumerateFileSystemEntries(work).Any()) Directory.Delete(work);
        return new TeacherResult(model, task.Task.PrimaryMetric.ToString(), fp32, int8, ortFp32, ortInt8, steps, trainSeconds, checkpoint, fp32Onnx, int8Onnx, hf, summaryPath, notes);
    }

    /// <summary>
    /// The training loop (Hugging Face's recipe through <see cref="Trainer"/>): seeded batch order per epoch,
    /// a training checkpoint every N steps (when <paramref name="statePath"/> is given), resumed from it when
    /// present and made with the same settings (the same batches, dropout masks and updates as an
    /// uninterrupted run). Returns the optimizer steps done.
    /// </summary>
    public static long Train(BertModel model, EncodedTask task, TeacherFineTuneOptions options, string? statePath, string fingerprint,
        IProgress<FineTuneProgress>? progress, ICollection<string> notes, CancellationToken cancel)
    {
        options.Validate();
        int perEpoch = (task.Train.Count + options.BatchSize - 1) / options.BatchSize;
        long total = (long)options.Epochs * perEpoch;
        if (options.MaxSteps is long max && max < total) total = max;
        model.Threads = options.Threads;
        var trainer = new Trainer(model, options.ToTraining(), total, options.Dropout);
        long done = 0;
        if (statePath is not null && File.Exists(statePath))
        {
            var saved = BertCheckpoint.Load(statePath);
            if (!saved.Metadata.TryGetValue(FingerprintKey, out var before) || before != fingerprint)
            {
                var diff = before is null ? ["(no settings recorded)"] : OptionsFingerprint.Differences(before, fingerprint);
                throw new UserInputException($"'{statePath}' was written by a fine-tuning run with other settings ({string.Join("; ", diff.Take(4))}); rerun with the same settings to resume, or delete it to start over");
            }
            if (saved.Config != model.Config) throw new UserInputException($"'{statePath}' holds a {saved.Config.Arch} model, not {model.Config.Arch}; delete it to start over");
            saved.Parameters.AsSpan().CopyTo(model.Parameters);
            saved.RestoreOptimizer(trainer.Optimizer);
            if (!saved.Metadata.TryGetValue(StepKey, out var stepText) || !long.TryParse(stepText, NumberStyles.None, CultureInfo.InvariantCulture, out done))
                throw new UserInputException($"'{statePath}' does not record its step ('{StepKey}'); delete it to start over");
            trainer.ResumeDropoutAt(done);
            notes.Add($"resumed from '{statePath}' at step {done} of {total}");
        }
        if (statePath is not null) Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(statePath))!);
        var clock = Stopwatch.StartNew();
        long n = 0, start = done;
        float lossSum = 0; int lossCount = 0;
        for (int epoch = 0; n < total; epoch++)
            foreach (var batch in task.TrainBatches(options.BatchSize, options.Seed, epoch))
            {
                if (n >= total) break;
                if (n++ < done) continue; // trained before the resume: the same batches in the same order
                cancel.ThrowIfCancellationRequested();
                var step = trainer.Step(batch);
                if (step.SkippedNonFinite is { } bad) notes.Add($"step {n}: non-finite value in {bad.TensorName}; step skipped");
                lossSum += step.Loss; lossCount++;
                if (statePath is not null && (n % options.CheckpointEverySteps == 0 || n == total))
                {
                    var meta = new Dictionary<string, string>(StringComparer.Ordinal)
                    {
                        [FingerprintKey] = fingerprint,
                        [StepKey] = n.ToString(CultureInfo.InvariantCulture),
                    };
                    BertCheckpoint.SaveTraining(statePath, model.Config, model.Parameters, trainer.Optimizer, meta);
                }
                var eta = n > start ? TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / (n - start) * (total - n)) : (TimeSpan?)null;
                progress?.Report(new FineTuneProgress($"epoch {epoch + 1}/{(total + perEpoch - 1) / perEpoch}, loss {lossSum / lossCount:F4}", n, total, eta));
                if (n % 50 == 0) { lossSum = 0; lossCount = 0; }
            }
        return total;
    }

    private static double ScoreOnnx(string path, EncodedTask task, int threads)
    {
        using var runner = new OnnxRunner(path, new OnnxRunnerOptions { IntraOpThreads = threads });
        var logits = runner.Predict(task.Dev.Select(e => e.InputIds).ToList(), task.Dev.Select(e => e.TokenTypeIds).ToList());
        return task.Score(logits).Primary;
    }

    /// <summary>The settings a resumed run must share with the one that wrote the training state.</summary>
    private static string Fingerprint(PretrainedEncoder encoder, EncodedTask task, TeacherFineTuneOptions options)
    {
        var o = new JsonObject
        {
            ["pretrained"] = encoder.Source,
            ["architecture"] = encoder.Arch.ToString(),
            ["task"] = task.Task.Name,
            ["trainExamples"] = task.Train.Count,
            ["maxLength"] = task.MaxLength,
            ["options"] = JsonSerializer.SerializeToNode(options with { Threads = 0 }, OptionsFingerprint.Json),
        };
        return o.ToJsonString(OptionsFingerprint.Json);
    }
}
