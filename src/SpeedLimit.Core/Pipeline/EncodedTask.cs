using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Quantization;
using SpeedLimit.Training;

namespace SpeedLimit.Pipeline;

/// <summary>A task with its train and dev splits tokenized once, shared by every training and evaluation.</summary>
public sealed class EncodedTask
{
    public EncodedTask(TaskDataset task, ITextEncoder encoder, int maxLength)
    {
        if (maxLength < 4) throw new ArgumentException($"max sequence length {maxLength} is too short; use at least 4 tokens");
        if (task.Train.Count == 0) throw new UserInputException($"task '{task.Name}' has no training examples");
        if (task.Dev.Count == 0) throw new UserInputException($"task '{task.Name}' has no dev examples to score candidates on");
        if (UndefinedMetricReason(task) is { } why)
            throw new UserInputException($"task '{task.Name}': {why}, so every candidate would score the same; use more dev examples (--max-dev-examples) or another dev file");
        Task = task;
        Encoder = encoder;
        MaxLength = maxLength;
        Train = TokenBatcher.Encode(task.Train, encoder, maxLength);
        Dev = TokenBatcher.Encode(task.Dev, encoder, maxLength);
    }

    /// <summary>A task whose splits arrive already tokenized (a worker's copy of the coordinator's, see <see cref="CandidatePackage"/>).</summary>
    internal EncodedTask(TaskDataset task, ITextEncoder encoder, int maxLength, IReadOnlyList<EncodedExample> train, IReadOnlyList<EncodedExample> dev)
    {
        if (train.Count == 0 || dev.Count == 0) throw new InvalidDataException($"task '{task.Name}': a published task needs training and dev examples");
        Task = task;
        Encoder = encoder;
        MaxLength = maxLength;
        Train = train;
        Dev = dev;
    }

    /// <summary>
    /// The task a run's options name: read (or generated), cut to the example limits with a seeded
    /// draw, and tokenized with its own vocabulary or the BERT vocabulary found from the options (or with
    /// <paramref name="encoder"/> when given, e.g. a pretrained model's own tokenizer).
    /// </summary>
    public static EncodedTask Load(DataOptions options, int seed, ITextEncoder? encoder = null)
    {
        var dataset = Subsample(TaskCatalog.Load(options.Task, options.DataDir, seed), options, seed);
        encoder ??= TaskCatalog.EncoderFor(dataset, options.VocabPath, options.DataDir, AppContext.BaseDirectory, Environment.CurrentDirectory);
        return new EncodedTask(dataset, encoder, options.MaxSequenceLength);
    }

    /// <summary>Applies the example limits with a seeded draw (order kept, so batching stays reproducible).</summary>
    private static TaskDataset Subsample(TaskDataset d, DataOptions options, int seed)
    {
        static IReadOnlyList<TaskExample> Take(IReadOnlyList<TaskExample> list, int? max, int seed)
        {
            if (max is not int n || n >= list.Count) return list;
            var rng = new Random(seed);
            return Enumerable.Range(0, list.Count).OrderBy(_ => rng.Next()).Take(n).Order().Select(i => list[i]).ToList();
        }
        if (options.MaxTrainExamples is null && options.MaxDevExamples is null) return d;
        return new TaskDataset(d.Name, d.Kind, d.LabelNames, d.PrimaryMetric, Take(d.Train, options.MaxTrainExamples, seed),
            Take(d.Dev, options.MaxDevExamples, seed + 7919), d.Test, d.DevCarvedFromTrain, d.BuiltinEncoder);
    }

    /// <summary>
    /// Why the task's primary metric is undefined on its dev split whatever a model predicts
    /// (a correlation over fewer than two examples or over one gold value), or null. Such a split
    /// cannot rank candidates: refused up front rather than scored as 0.
    /// </summary>
    internal static string? UndefinedMetricReason(TaskDataset task)
    {
        if (task.PrimaryMetric is not (PrimaryMetric.Matthews or PrimaryMetric.PearsonSpearman)) return null;
        var name = task.PrimaryMetric == PrimaryMetric.Matthews ? "the Matthews correlation" : "the Pearson/Spearman correlation";
        if (task.Dev.Count < 2) return $"{name} is undefined on a dev split of {task.Dev.Count} example";
        bool constant = task.Kind == TaskKind.Regression
            ? task.Dev.All(e => e.Score == task.Dev[0].Score)
            : task.Dev.All(e => e.ClassId == task.Dev[0].ClassId);
        return constant ? $"{name} is undefined on a dev split whose {task.Dev.Count} examples all have the same gold value" : null;
    }

    public TaskDataset Task { get; }
    public ITextEncoder Encoder { get; }
    public int MaxLength { get; }
    public IReadOnlyList<EncodedExample> Train { get; }
    public IReadOnlyList<EncodedExample> Dev { get; }

    public HeadKind Head => Task.Kind == TaskKind.Regression ? HeadKind.Regression : HeadKind.Classification;

    /// <summary>The model config of an architecture for this task (positions cover the latency protocol's 128 tokens too).</summary>
    public BertConfig ConfigFor(Architecture arch, int heads, int maxPositions = 128) =>
        new(arch, heads, Encoder.VocabSize, Head, Math.Max(2, Task.NumLabels), Math.Max(maxPositions, MaxLength));

    /// <summary>Training batches of one epoch (length-bucketed, shuffled by seed and epoch), optionally from the first <paramref name="limit"/> examples.</summary>
    public IEnumerable<LabeledBatch> TrainBatches(int batchSize, int seed, int epoch, int? limit = null)
    {
        var examples = limit is int n && n < Train.Count ? Train.Take(n).ToList() : Train;
        var options = new BatchOptions { BatchSize = batchSize, Shuffle = true, Seed = seed };
        foreach (var b in TokenBatcher.Batches(examples, options, Encoder.PadId, epoch))
            yield return ToLabeled(b);
    }

    public LabeledBatch ToLabeled(TokenBatch b) =>
        new(new EncoderInput(b.BatchSize, b.SeqLength, b.InputIds, b.TokenTypeIds, b.AttentionMask),
            Head == HeadKind.Classification ? b.ClassLabels : null, Head == HeadKind.Regression ? b.Targets : null);

    /// <summary>Examples per forward pass when scoring the dev split.</summary>
    public const int DevBatchSize = 64;

    /// <summary>The task's GLUE metrics of <paramref name="model"/> on the dev split (int8-simulated when <paramref name="int8"/> is given).</summary>
    public MetricReport EvaluateDev(BertModel model, Int8Simulation? int8 = null, int batchSize = DevBatchSize)
    {
        var logits = PredictDev(model, int8, batchSize);
        return Score(logits);
    }

    /// <summary>Logits per dev example, in dev order.</summary>
    public float[][] PredictDev(BertModel model, Int8Simulation? int8 = null, int batchSize = DevBatchSize)
    {
        var result = new float[Dev.Count][];
        var options = new BatchOptions { BatchSize = batchSize, Shuffle = false };
        int width = model.Config.Labels;
        foreach (var b in TokenBatcher.Batches(Dev, options, Encoder.PadId))
        {
            var input = new EncoderInput(b.BatchSize, b.SeqLength, b.InputIds, b.TokenTypeIds, b.AttentionMask);
            var logits = model.Forward(input, int8: int8);
            for (int i = 0; i < b.BatchSize; i++) result[b.ExampleIndices[i]] = logits.Slice(i * width, width).ToArray();
        }
        return result;
    }

    /// <summary>Scores logits (one row per dev example, in dev order) with the task's metrics.</summary>
    public MetricReport Score(IReadOnlyList<float[]> logits)
    {
        if (Head == HeadKind.Regression)
        {
            var predicted = logits.Select(l => (double)l[0]).ToArray();
            var gold = Dev.Select(e => (double)e.Score).ToArray();
            return GlueMetrics.Evaluate(predicted, gold);
        }
        var pred = logits.Select(ArgMax).ToArray();
        var labels = Dev.Select(e => e.ClassId).ToArray();
        return GlueMetrics.Evaluate(Task.PrimaryMetric, pred, labels);
    }

    private static int ArgMax(float[] row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}
