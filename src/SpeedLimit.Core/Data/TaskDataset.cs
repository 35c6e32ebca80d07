namespace SpeedLimit.Data;

public enum TaskKind { Classification, Regression }

/// <summary>The figure a task is judged by, as GLUE reports it.</summary>
public enum PrimaryMetric
{
    Accuracy,
    /// <summary>Matthews correlation (CoLA).</summary>
    Matthews,
    /// <summary>Mean of F1 (positive class 1) and accuracy (MRPC, QQP).</summary>
    F1Accuracy,
    /// <summary>Mean of Pearson and Spearman correlation (STS-B).</summary>
    PearsonSpearman,
}

/// <summary>
/// One example. Classification: <see cref="ClassId"/> ≥ 0; regression: <see cref="Score"/> is a
/// number. Unlabeled (test) examples have ClassId -1 and Score NaN.
/// </summary>
public sealed record TaskExample(string TextA, string? TextB, int ClassId = -1, float Score = float.NaN)
{
    public bool HasLabel => ClassId >= 0 || !float.IsNaN(Score);
}

/// <summary>A task with its splits. Build through the readers or <see cref="BuiltinTask"/>; immutable once built.</summary>
public sealed class TaskDataset
{
    public TaskDataset(string name, TaskKind kind, IReadOnlyList<string> labelNames, PrimaryMetric primaryMetric,
        IReadOnlyList<TaskExample> train, IReadOnlyList<TaskExample> dev, IReadOnlyList<TaskExample>? test = null,
        bool devCarvedFromTrain = false, ITextEncoder? builtinEncoder = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(labelNames);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(dev);
        if (kind == TaskKind.Classification && labelNames.Count < 2)
            throw new ArgumentException($"task '{name}': a classification task needs at least 2 labels, got {labelNames.Count}");
        if (kind == TaskKind.Regression && labelNames.Count != 0)
            throw new ArgumentException($"task '{name}': a regression task has no label names");
        Name = name;
        Kind = kind;
        LabelNames = labelNames;
        PrimaryMetric = primaryMetric;
        Train = train;
        Dev = dev;
        Test = test ?? [];
        DevCarvedFromTrain = devCarvedFromTrain;
        BuiltinEncoder = builtinEncoder;
        foreach (var (split, list) in new[] { ("train", train), ("dev", dev) })
            for (int i = 0; i < list.Count; i++)
                CheckLabel(list[i], split, i);
    }

    public string Name { get; }
    public TaskKind Kind { get; }
    /// <summary>Class names by id (empty for regression).</summary>
    public IReadOnlyList<string> LabelNames { get; }
    public int NumLabels => Kind == TaskKind.Classification ? LabelNames.Count : 1;
    public PrimaryMetric PrimaryMetric { get; }
    public IReadOnlyList<TaskExample> Train { get; }
    public IReadOnlyList<TaskExample> Dev { get; }
    /// <summary>Unlabeled test examples (may be empty).</summary>
    public IReadOnlyList<TaskExample> Test { get; }
    /// <summary>True when the task shipped without a dev split and <see cref="Dev"/> was carved out of train.</summary>
    public bool DevCarvedFromTrain { get; }
    /// <summary>The task's own tokenizer when it brings one (the built-in task); null means "use a BERT vocab".</summary>
    public ITextEncoder? BuiltinEncoder { get; }
    public bool IsPair => Train.Count > 0 && Train[0].TextB is not null;

    private void CheckLabel(TaskExample e, string split, int index)
    {
        bool ok = Kind == TaskKind.Classification
            ? e.ClassId >= 0 && e.ClassId < LabelNames.Count
            : float.IsFinite(e.Score);
        if (!ok)
            throw new ArgumentException($"task '{Name}': {split} example {index} has no valid {(Kind == TaskKind.Classification ? $"class id in [0,{LabelNames.Count})" : "score")}");
    }
}
