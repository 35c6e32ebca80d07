using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SpeedLimit.Data;

public enum TabularFormat { Tsv, Csv, Jsonl }

/// <summary>How to read a user's own task files: which columns hold the text(s) and the label.</summary>
public sealed class TabularTaskOptions
{
    public string TextColumn { get; set; } = "text";
    /// <summary>Second text of a pair task; null for single-text tasks.</summary>
    public string? TextPairColumn { get; set; }
    public string LabelColumn { get; set; } = "label";
    public TaskKind Kind { get; set; } = TaskKind.Classification;
    /// <summary>Class names in id order; null infers them from train (numeric order when all are integers, else ordinal).</summary>
    public IReadOnlyList<string>? LabelNames { get; set; }
    /// <summary>Null picks by extension: .tsv/.tab, .csv, .jsonl/.json/.ndjson.</summary>
    public TabularFormat? Format { get; set; }
    /// <summary>Null: accuracy for classification, Pearson/Spearman for regression.</summary>
    public PrimaryMetric? Metric { get; set; }
    public double CarvedDevFraction { get; set; } = 0.1;
    public int Seed { get; set; } = 1234;
}

/// <summary>
/// Reads TSV (tab-split, no quoting, header row), CSV (RFC 4180 quoting, header row) or JSONL (one
/// object per line) into task examples using the column names the user gives. Errors name the file
/// and line; nothing partial is returned.
/// </summary>
public static class TabularReader
{
    /// <summary>One raw row: texts and the label as written (null when the file has no label column).</summary>
    public sealed record Row(int Line, string TextA, string? TextB, string? Label);

    public static TabularFormat FormatOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".tsv" or ".tab" => TabularFormat.Tsv,
        ".csv" => TabularFormat.Csv,
        ".jsonl" or ".json" or ".ndjson" => TabularFormat.Jsonl,
        var ext => throw new UserInputException($"cannot tell the format of '{path}' from its extension '{ext}'; use .tsv, .csv or .jsonl, or set the format explicitly"),
    };

    public static List<Row> ReadRows(string path, TabularTaskOptions options, bool requireLabel)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!File.Exists(path)) throw new FileNotFoundException($"data file '{path}' does not exist; check the path", path);
        var format = options.Format ?? FormatOf(path);
        var rows = format == TabularFormat.Jsonl ? ReadJsonl(path, options, requireLabel) : ReadDelimited(path, options, requireLabel, format);
        if (rows.Count == 0) throw new InvalidDataException($"{path}: no examples; the file is empty or has only a header");
        return rows;
    }

    /// <summary>
    /// Builds a task from train (required), dev (optional: carved from train, seeded and stratified
    /// when missing) and test (optional, labels not needed) files.
    /// </summary>
    public static TaskDataset LoadTask(string name, string trainPath, string? devPath, string? testPath, TabularTaskOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var trainRows = ReadRows(trainPath, options, requireLabel: true);
        var devRows = devPath is null ? null : ReadRows(devPath, options, requireLabel: true);
        var testRows = testPath is null ? null : ReadRows(testPath, options, requireLabel: false);
        IReadOnlyList<string> labels = [];
        if (options.Kind == TaskKind.Classification)
            labels = options.LabelNames ?? InferLabels(trainRows.Select(r => r.Label!));
        List<TaskExample> Convert(List<Row> rows, string path) => rows.Select(r => r.Label is null
            ? new TaskExample(r.TextA, r.TextB)
            : options.Kind == TaskKind.Regression
                ? new TaskExample(r.TextA, r.TextB, Score: GlueTasks.ParseScore(r.Label, path, r.Line))
                : new TaskExample(r.TextA, r.TextB, ClassId: GlueTasks.ParseClass(r.Label, labels, path, r.Line))).ToList();
        var train = Convert(trainRows, trainPath);
        List<TaskExample> dev;
        bool carved = devRows is null;
        if (devRows is not null) dev = Convert(devRows, devPath!);
        else (train, dev) = DataSplits.CarveValidation(train, options.CarvedDevFraction, options.Seed, options.Kind == TaskKind.Classification);
        var test = testRows is null ? null : Convert(testRows, testPath!);
        var metric = options.Metric ?? (options.Kind == TaskKind.Regression ? PrimaryMetric.PearsonSpearman : PrimaryMetric.Accuracy);
        return new TaskDataset(name, options.Kind, labels, metric, train, dev, test, carved);
    }

    private static string[] InferLabels(IEnumerable<string> labels)
    {
        var distinct = labels.Distinct(StringComparer.Ordinal).ToArray();
        bool allInts = distinct.All(l => long.TryParse(l, NumberStyles.Integer, CultureInfo.InvariantCulture, out _));
        return allInts
            ? distinct.OrderBy(l => long.Parse(l, CultureInfo.InvariantCulture)).ToArray()
            : distinct.OrderBy(l => l, StringComparer.Ordinal).ToArray();
    }

    private static List<Row> ReadDelimited(string path, TabularTaskOptions options, bool requireLabel, TabularFormat format)
    {
        var records = format == TabularFormat.Tsv
            ? TsvFile.Read(path)
            : ReadCsvRecords(path);
        var header = records[0].Fields;
        int Col(string name) => Array.IndexOf(header, name) is var i and >= 0
            ? i
            : throw new InvalidDataException($"{path}:1: no column '{name}' in the header ({string.Join(", ", header)}); name the right column");
        int colA = Col(options.TextColumn);
        int colB = options.TextPairColumn is null ? -1 : Col(options.TextPairColumn);
        int colLabel = Array.IndexOf(header, options.LabelColumn);
        if (colLabel < 0 && requireLabel) colLabel = Col(options.LabelColumn);
        var rows = new List<Row>(records.Count);
        for (int r = 1; r < records.Count; r++)
        {
            var (line, f) = records[r];
            TsvFile.RequireFieldCount(path, line, f, header.Length);
            rows.Add(new Row(line, f[colA], colB >= 0 ? f[colB] : null, colLabel >= 0 ? f[colLabel] : null));
        }
        return rows;
    }

    /// <summary>RFC 4180: comma-separated, fields may be quoted, "" is a literal quote, quoted fields may span lines.</summary>
    internal static List<(int Line, string[] Fields)> ReadCsvRecords(string path)
    {
        var text = ReadAllUtf8(path);
        var records = new List<(int, string[])>();
        var fields = new List<string>();
        var field = new StringBuilder();
        int line = 1, recordLine = 1;
        bool inQuotes = false, fieldStarted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (inQuotes)
            {
                if (c == '"')
                {
                    if (i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                    else inQuotes = false;
                }
                else { if (c == '\n') line++; field.Append(c); }
                continue;
            }
            switch (c)
            {
                case '"' when field.Length == 0:
                    inQuotes = true; fieldStarted = true; break;
                case ',':
                    fields.Add(field.ToString()); field.Clear(); fieldStarted = true; break;
                case '\r':
                    break;
                case '\n':
                    if (fieldStarted || field.Length > 0 || fields.Count > 0)
                    {
                        fields.Add(field.ToString());
                        records.Add((recordLine, fields.ToArray()));
                    }
                    fields.Clear(); field.Clear(); fieldStarted = false;
                    line++; recordLine = line;
                    break;
                default:
                    field.Append(c); fieldStarted = true; break;
            }
        }
        if (inQuotes) throw new InvalidDataException($"{path}:{recordLine}: a quoted field is never closed; add the missing '\"'");
        if (fieldStarted || field.Length > 0 || fields.Count > 0) { fields.Add(field.ToString()); records.Add((recordLine, fields.ToArray())); }
        if (records.Count == 0) throw new InvalidDataException($"{path}: the file is empty; expected a header row and examples");
        return records;
    }

    private static List<Row> ReadJsonl(string path, TabularTaskOptions options, bool requireLabel)
    {
        var rows = new List<Row>();
        int lineNo = 0;
        foreach (var line in ReadAllUtf8(path).Split('\n'))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonDocument doc;
            try { doc = JsonDocument.Parse(line); }
            catch (JsonException ex) { throw new InvalidDataException($"{path}:{lineNo}: not a JSON object ({ex.Message}); one object per line"); }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException($"{path}:{lineNo}: expected a JSON object, found {doc.RootElement.ValueKind}");
                string? Get(string name, bool required)
                {
                    if (!doc.RootElement.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
                        return required ? throw new InvalidDataException($"{path}:{lineNo}: no '{name}' field; name the right field") : null;
                    return v.ValueKind switch
                    {
                        JsonValueKind.String => v.GetString(),
                        JsonValueKind.Number => v.GetRawText(),
                        JsonValueKind.True => "true",
                        JsonValueKind.False => "false",
                        _ => throw new InvalidDataException($"{path}:{lineNo}: field '{name}' is a {v.ValueKind}; expected a string or number"),
                    };
                }
                rows.Add(new Row(lineNo, Get(options.TextColumn, true)!,
                    options.TextPairColumn is null ? null : Get(options.TextPairColumn, true),
                    Get(options.LabelColumn, requireLabel)));
            }
        }
        return rows;
    }

    private static string ReadAllUtf8(string path)
    {
        try { return File.ReadAllText(path, new UTF8Encoding(false, throwOnInvalidBytes: true)); }
        catch (DecoderFallbackException ex) { throw new InvalidDataException($"{path}: not valid UTF-8 ({ex.Message}); re-save the file as UTF-8"); }
    }
}
