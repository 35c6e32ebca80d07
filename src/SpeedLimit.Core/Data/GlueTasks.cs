using System.Globalization;

namespace SpeedLimit.Data;

/// <summary>Options for loading a GLUE task folder.</summary>
internal sealed class GlueLoadOptions
{
    /// <summary>Share of train moved into dev when the folder has no dev file (STS-B and CoLA here).</summary>
    public double CarvedDevFraction { get; set; } = 0.1;
    public int Seed { get; set; } = 1234;
    /// <summary>Read test.tsv too when present (unlabeled).</summary>
    public bool IncludeTest { get; set; } = true;
}

/// <summary>
/// Readers for the nine GLUE tasks in the original TSV layout (see shared/data/SOURCES.md):
/// columns are found by header name; CoLA's train/dev have no header; test files have no label
/// column; labels may be strings (RTE/QNLI/MNLI) or floats (STS-B).
/// </summary>
internal static class GlueTasks
{
    internal sealed record Spec(
        string Name, TaskKind Kind, string[] LabelNames, PrimaryMetric Metric,
        string TrainFile, string DevFile, string TestFile,
        string ColumnA, string? ColumnB, string LabelColumn);

    private static readonly string[] Binary = ["0", "1"];
    private static readonly string[] Entailment = ["entailment", "not_entailment"];
    private static readonly string[] Nli = ["contradiction", "entailment", "neutral"];

    private static readonly Spec[] Specs =
    [
        new("cola", TaskKind.Classification, Binary, PrimaryMetric.Matthews, "train.tsv", "dev.tsv", "test.tsv", "sentence", null, "label"),
        new("sst2", TaskKind.Classification, Binary, PrimaryMetric.Accuracy, "train.tsv", "dev.tsv", "test.tsv", "sentence", null, "label"),
        new("mrpc", TaskKind.Classification, Binary, PrimaryMetric.F1Accuracy, "train.tsv", "dev.tsv", "test.tsv", "#1 String", "#2 String", "Quality"),
        new("stsb", TaskKind.Regression, [], PrimaryMetric.PearsonSpearman, "train.tsv", "dev.tsv", "test.tsv", "sentence1", "sentence2", "score"),
        new("qqp", TaskKind.Classification, Binary, PrimaryMetric.F1Accuracy, "train.tsv", "dev.tsv", "test.tsv", "question1", "question2", "is_duplicate"),
        new("mnli", TaskKind.Classification, Nli, PrimaryMetric.Accuracy, "train.tsv", "dev_matched.tsv", "test_matched.tsv", "sentence1", "sentence2", "gold_label"),
        new("mnli-mm", TaskKind.Classification, Nli, PrimaryMetric.Accuracy, "train.tsv", "dev_mismatched.tsv", "test_mismatched.tsv", "sentence1", "sentence2", "gold_label"),
        new("qnli", TaskKind.Classification, Entailment, PrimaryMetric.Accuracy, "train.tsv", "dev.tsv", "test.tsv", "question", "sentence", "label"),
        new("rte", TaskKind.Classification, Entailment, PrimaryMetric.Accuracy, "train.tsv", "dev.tsv", "test.tsv", "sentence1", "sentence2", "label"),
        new("wnli", TaskKind.Classification, Binary, PrimaryMetric.Accuracy, "train.tsv", "dev.tsv", "test.tsv", "sentence1", "sentence2", "label"),
    ];

    /// <summary>Canonical task names: cola, sst2, mrpc, stsb, qqp, mnli (matched dev), mnli-mm (mismatched dev), qnli, rte, wnli.</summary>
    public static IReadOnlyList<string> Names { get; } = Specs.Select(s => s.Name).ToArray();

    /// <summary>Accepts GLUE's spellings too (SST-2, STS-B, MNLI-m, mnli_mismatched …); case-insensitive.</summary>
    public static bool TryNormalize(string name, out string canonical)
    {
        var key = new string((name ?? "").ToLowerInvariant().Where(char.IsLetterOrDigit).ToArray());
        canonical = key switch
        {
            "cola" => "cola",
            "sst2" => "sst2",
            "mrpc" => "mrpc",
            "stsb" => "stsb",
            "qqp" => "qqp",
            "mnli" or "mnlim" or "mnlimatched" => "mnli",
            "mnlimm" or "mnlimismatched" => "mnli-mm",
            "qnli" => "qnli",
            "rte" => "rte",
            "wnli" => "wnli",
            _ => "",
        };
        return canonical.Length > 0;
    }

    internal static Spec GetSpec(string task)
    {
        if (!TryNormalize(task, out var canonical))
            throw new UserInputException($"unknown GLUE task '{task}'; use one of {string.Join(", ", Names)}");
        return Specs.First(s => s.Name == canonical);
    }

    public static TaskKind KindOf(string task) => GetSpec(task).Kind;
    public static IReadOnlyList<string> LabelNamesOf(string task) => GetSpec(task).LabelNames;
    public static PrimaryMetric MetricOf(string task) => GetSpec(task).Metric;

    /// <summary>
    /// Loads a task folder (the GLUE layout: train.tsv, dev.tsv or dev_matched.tsv …, test.tsv).
    /// train is required; a missing dev file is replaced by a seeded (stratified) split of train;
    /// test is optional. Any malformed line fails the whole load with file and line.
    /// </summary>
    public static TaskDataset Load(string task, string dataDir, GlueLoadOptions? options = null)
    {
        options ??= new GlueLoadOptions();
        var spec = GetSpec(task);
        if (!Directory.Exists(dataDir))
            throw new DirectoryNotFoundException($"data directory '{dataDir}' does not exist; pass the folder holding {spec.TrainFile} for {spec.Name}");
        var train = ReadSplit(spec.Name, Path.Combine(dataDir, spec.TrainFile), isTest: false);
        var devPath = Path.Combine(dataDir, spec.DevFile);
        List<TaskExample> dev;
        bool carved = false;
        if (File.Exists(devPath)) dev = ReadSplit(spec.Name, devPath, isTest: false);
        else
        {
            (train, dev) = DataSplits.CarveValidation(train, options.CarvedDevFraction, options.Seed, stratify: spec.Kind == TaskKind.Classification);
            carved = true;
        }
        var testPath = Path.Combine(dataDir, spec.TestFile);
        var test = options.IncludeTest && File.Exists(testPath) ? ReadSplit(spec.Name, testPath, isTest: true) : [];
        return new TaskDataset(spec.Name, spec.Kind, spec.LabelNames, spec.Metric, train, dev, test, carved);
    }

    /// <summary>
    /// Reads one GLUE file. Train/dev files must carry labels; a test file (<paramref name="isTest"/>)
    /// may lack the label column, giving unlabeled examples.
    /// </summary>
    public static List<TaskExample> ReadSplit(string task, string path, bool isTest)
    {
        var spec = GetSpec(task);
        var rows = TsvFile.Read(path);
        int colA, colB = -1, colLabel;
        int first;
        int width;
        // CoLA's train/dev files are header-less: source, label, author's mark, sentence.
        if (spec.Name == "cola" && !LooksLikeHeader(rows[0].Fields, spec.ColumnA))
        {
            colLabel = 1; colA = 3; first = 0; width = 4;
        }
        else
        {
            var header = rows[0].Fields;
            width = header.Length;
            colA = Column(header, spec.ColumnA, path);
            if (spec.ColumnB is not null) colB = Column(header, spec.ColumnB, path);
            colLabel = Array.IndexOf(header, spec.LabelColumn);
            if (colLabel < 0 && !isTest)
                throw new InvalidDataException($"{path}:1: header has no '{spec.LabelColumn}' column; a {spec.Name} train/dev file needs labels (header: {string.Join(" | ", header)})");
            first = 1;
        }
        var examples = new List<TaskExample>(rows.Count);
        for (int r = first; r < rows.Count; r++)
        {
            var (line, f) = rows[r];
            TsvFile.RequireFieldCount(path, line, f, width);
            string a = f[colA];
            string? b = colB >= 0 ? f[colB] : null;
            if (colLabel < 0) { examples.Add(new TaskExample(a, b)); continue; }
            examples.Add(spec.Kind == TaskKind.Regression
                ? new TaskExample(a, b, Score: ParseScore(f[colLabel], path, line))
                : new TaskExample(a, b, ClassId: ParseClass(f[colLabel], spec.LabelNames, path, line)));
        }
        if (examples.Count == 0) throw new InvalidDataException($"{path}: header only, no examples");
        return examples;
    }

    private static bool LooksLikeHeader(string[] fields, string textColumn) => Array.IndexOf(fields, textColumn) >= 0;

    private static int Column(string[] header, string name, string path)
    {
        int i = Array.IndexOf(header, name);
        return i >= 0 ? i : throw new InvalidDataException($"{path}:1: header has no '{name}' column (header: {string.Join(" | ", header)}); is this the right task's file?");
    }

    internal static float ParseScore(string s, string path, int line) =>
        float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && float.IsFinite(v)
            ? v
            : throw new InvalidDataException($"{path}:{line}: score '{s}' is not a number; regression labels must be numbers like 3.8");

    internal static int ParseClass(string s, IReadOnlyList<string> labels, string path, int line)
    {
        for (int i = 0; i < labels.Count; i++) if (labels[i] == s) return i;
        throw new InvalidDataException($"{path}:{line}: label '{s}' is not one of {string.Join(", ", labels)}");
    }
}
