using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SpeedLimit.Checkpoints;
using SpeedLimit.Latency;
using SpeedLimit.Onnx;
using SpeedLimit.Reporting;
using Spectre.Console;

namespace SpeedLimit.Cli.Commands;

/// <summary>`speedlimit compare`: the paper's comparison (Figures 1 and 3) from a finished run folder; it only parses and renders.</summary>
public static class CompareCommands
{
    public static IEnumerable<Command> Create()
    {
        var run = new Option<string>("--run") { Description = "A finished run folder of 'speedlimit search --compare-fp32' (results.json, best*.safetensors).", Required = true };
        var output = new Option<string>("--output") { Description = "Prefix of the files to write: PREFIX-results.md, PREFIX-accuracy.png, PREFIX-sizes.png.", Required = true };
        var latency = new Option<string?>("--latency-data") { Description = "Place the models at these latencies instead (a 'speedlimit profile --arch ...' dataset, e.g. with --clock thread-cpu on a loaded machine)." };
        var clock = new Option<string>("--clock") { Description = "With --latency-data: the records' clock (wall or thread-cpu).", DefaultValueFactory = _ => "thread-cpu" };
        var json = new Option<bool>("--json") { Description = "Print the headline figures as JSON lines {\"figure\", \"value\", \"unit\"}." };
        var cmd = new Command("compare", "Compare the int8 search with the fp32 search, uniform baselines and the teacher at measured latency, with model sizes (the paper's Figures 1 and 3).")
        {
            run, output, latency, clock, json,
        };
        cmd.SetAction(parse => CliErrors.Guard(() =>
        {
            var folder = parse.GetValue(run)!;
            var results = RunResults.Load(Path.Combine(folder, RunReport.ResultsFile));
            var checkpoint = Directory.Exists(folder) ? Directory.GetFiles(folder, "best*.safetensors").Order(StringComparer.Ordinal).FirstOrDefault() : null;
            if (checkpoint is null) throw new UserInputException($"run folder '{folder}' holds no best*.safetensors; give the folder of a finished 'speedlimit search' run");
            var config = BertCheckpoint.Load(checkpoint).Config; // vocabulary, positions, heads and labels of every model of the run
            Func<Architecture, Precision, double?>? remeasured = null;
            if (parse.GetValue(latency) is { } data)
            {
                var wanted = parse.GetValue(clock)!;
                var byArch = LatencyDataset.Load(data).Where(r => r.Clock == wanted && r.Batch == 1)
                    .GroupBy(r => (new Architecture(r.Layers, r.Hidden, r.Ffn), r.Precision)).ToDictionary(g => g.Key, g => g.Last().MedianMs);
                if (byArch.Count == 0) throw new UserInputException($"latency dataset '{data}' has no batch-1 records timed with the {wanted} clock; profile with --clock {wanted} or pass --clock");
                remeasured = (a, p) => byArch.TryGetValue((a, p), out var ms) ? ms : null;
            }
            var cmp = PaperComparison.From(results, (a, p) => OnnxModelSize.Bytes(config.WithArch(a), p), a => OnnxModelSize.Parameters(config.WithArch(a)), remeasured);
            var prefix = parse.GetValue(output)!;
            var dir = Path.GetDirectoryName(Path.GetFullPath(prefix))!;
            Directory.CreateDirectory(dir);
            AtomicFile.WriteAllText(prefix + "-results.md", cmp.Markdown());
            cmp.SavePlots(prefix + "-accuracy.png", prefix + "-sizes.png");
            if (parse.GetValue(json))
            {
                void Figure(string name, double? value, string unit)
                {
                    if (value is double v) Console.WriteLine(JsonSerializer.Serialize(new { figure = name, value = Math.Round(v, 6), unit }));
                }
                Figure("int8 search at or above fp32 search (bounds)", cmp.Int8AtOrAbove, $"of {cmp.BoundsCompared}");
                Figure("best int8 minus teacher fp32", cmp.LoosestInt8 is { } b && cmp.TeacherFp32 is { } t ? 100 * (b.Metric - t.Metric) : null, "points");
                Figure("fp32-search winner bytes / int8-search winner bytes", cmp.MeanSizeRatio, "x");
                return 0;
            }
            foreach (var line in cmp.Headlines()) AnsiConsole.MarkupLineInterpolated($"{line}");
            AnsiConsole.MarkupLineInterpolated($"wrote [bold]{prefix}-results.md[/], {prefix}-accuracy.png, {prefix}-sizes.png");
            return 0;
        }));
        yield return cmd;
    }
}
