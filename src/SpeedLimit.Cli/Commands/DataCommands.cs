using System.CommandLine;
using System.Globalization;
using SpeedLimit.Data;
using Spectre.Console;

namespace SpeedLimit.Cli.Commands;

/// <summary>CLI commands of this group; they only parse and render.</summary>
public static class DataCommands
{
    public static IEnumerable<Command> Create()
    {
        var data = new Command("data", "Inspect task data (GLUE folders, your own TSV/CSV/JSONL, or the built-in task).");
        data.Subcommands.Add(CreateInspect());
        yield return data;
    }

    private static Command CreateInspect()
    {
        var task = new Option<string>("--task") { Description = $"Task: {string.Join(", ", TaskCatalog.Names)}, or 'custom' with --train.", Required = true };
        var dataDir = new Option<string?>("--data-dir") { Description = "GLUE task folder (holding train.tsv, dev.tsv, test.tsv)." };
        var vocab = new Option<string?>("--vocab") { Description = "WordPiece vocab.txt; default: bert-base-uncased found above --data-dir or the current folder." };
        var maxLength = new Option<int>("--max-length") { Description = "Length the 'over max' column counts against.", DefaultValueFactory = _ => 128 };
        var seed = new Option<int>("--seed") { Description = "Seed for the built-in task, carved dev splits and length sampling.", DefaultValueFactory = _ => 1234 };
        var train = new Option<string?>("--train") { Description = "custom: train file (.tsv, .csv or .jsonl with a header / named fields)." };
        var dev = new Option<string?>("--dev") { Description = "custom: dev file; carved from train when absent." };
        var text = new Option<string>("--text-column") { Description = "custom: column of the (first) text.", DefaultValueFactory = _ => "text" };
        var pair = new Option<string?>("--pair-column") { Description = "custom: column of the second text of a pair task." };
        var label = new Option<string>("--label-column") { Description = "custom: column of the label.", DefaultValueFactory = _ => "label" };
        var regression = new Option<bool>("--regression") { Description = "custom: labels are numbers (regression)." };
        var command = new Command("inspect", "Print split sizes, label balance and token-length percentiles.")
        {
            task, dataDir, vocab, maxLength, seed, train, dev, text, pair, label, regression,
        };
        command.SetAction(parse => CliErrors.Guard(() =>
        {
            var taskName = parse.GetValue(task)!;
            var dir = parse.GetValue(dataDir);
            TaskDataset dataset;
            if (string.Equals(taskName, "custom", StringComparison.OrdinalIgnoreCase))
            {
                var trainPath = parse.GetValue(train) ?? throw new UserInputException("--task custom needs --train FILE");
                dataset = TabularReader.LoadTask(Path.GetFileNameWithoutExtension(trainPath), trainPath, parse.GetValue(dev), null, new TabularTaskOptions
                {
                    TextColumn = parse.GetValue(text)!,
                    TextPairColumn = parse.GetValue(pair),
                    LabelColumn = parse.GetValue(label)!,
                    Kind = parse.GetValue(regression) ? TaskKind.Regression : TaskKind.Classification,
                    Seed = parse.GetValue(seed),
                });
                dir ??= Path.GetDirectoryName(Path.GetFullPath(trainPath));
            }
            else dataset = TaskCatalog.Load(taskName, dir, parse.GetValue(seed));
            var encoder = TaskCatalog.EncoderFor(dataset, parse.GetValue(vocab), dir, Environment.CurrentDirectory, AppContext.BaseDirectory);
            int maxLen = parse.GetValue(maxLength);
            var summaries = DataInspector.Summarize(dataset, encoder, maxLen, seed: parse.GetValue(seed));
            Render(dataset, encoder, summaries, maxLen);
            return 0;
        }));
        return command;
    }

    private static void Render(TaskDataset dataset, ITextEncoder encoder, List<SplitSummary> summaries, int maxLength)
    {
        var kind = dataset.Kind == TaskKind.Classification ? $"classification, {dataset.NumLabels} labels" : "regression";
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(dataset.Name)}[/]: {kind}, {(dataset.IsPair ? "sentence pairs" : "single sentences")}, metric {dataset.PrimaryMetric}, vocab {encoder.VocabSize}");
        if (dataset.DevCarvedFromTrain) AnsiConsole.MarkupLine($"[yellow]no dev file: dev was carved from train (seeded{(dataset.Kind == TaskKind.Classification ? ", stratified" : "")})[/]");
        var table = new Table().AddColumns("split", "examples", "labels", "tokens p50", "p90", "p99", "max", $"over {maxLength}");
        foreach (var s in summaries)
        {
            string labels = s.Labeled == 0 ? "unlabeled"
                : dataset.Kind == TaskKind.Regression
                    ? string.Create(CultureInfo.InvariantCulture, $"{s.ScoreMin:F2} … {s.ScoreMax:F2} (mean {s.ScoreMean:F2})")
                    : string.Join("\n", s.LabelCounts.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Label} {c.Count} ({100.0 * c.Count / s.Labeled:F1}%)")));
            string sampled = s.TokenizedExamples < s.Examples ? $" (sample {s.TokenizedExamples})" : "";
            table.AddRow(s.Split, s.Examples.ToString(CultureInfo.InvariantCulture), Markup.Escape(labels),
                s.LengthP50 + sampled, s.LengthP90.ToString(CultureInfo.InvariantCulture), s.LengthP99.ToString(CultureInfo.InvariantCulture),
                s.LengthMax.ToString(CultureInfo.InvariantCulture), s.Truncated.ToString(CultureInfo.InvariantCulture));
        }
        AnsiConsole.Write(table);
    }
}
