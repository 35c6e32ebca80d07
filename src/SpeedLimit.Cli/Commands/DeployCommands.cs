using System.CommandLine;
using System.Globalization;
using SpeedLimit.Checkpoints;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Remote;
using SpeedLimit.Model;
using SpeedLimit.Onnx;
using SpeedLimit.Search;
using Spectre.Console;

namespace SpeedLimit.Cli.Commands;

/// <summary>Deploy and measure: <c>export</c> (ONNX, fp32/int8) and <c>profile</c> (latency dataset, Figure 4 fit).</summary>
public static class DeployCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return Export();
        yield return Profile();
    }

    private static Command Export()
    {
        var arch = new Option<string?>("--arch") { Description = "architecture e,h,f with random seeded weights, e.g. 4,264,512 (or give --checkpoint)" };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "a SpeedLimit checkpoint (.safetensors) with a classification or regression head" };
        var heads = new Option<int>("--heads") { Description = "attention heads (hidden must be a multiple)", DefaultValueFactory = _ => 12 };
        var labels = new Option<int>("--labels") { Description = "classification labels", DefaultValueFactory = _ => 2 };
        var regression = new Option<bool>("--regression") { Description = "one regression output instead of classification logits" };
        var vocab = new Option<int>("--vocab-size") { Description = "vocabulary size", DefaultValueFactory = _ => 30522 };
        var seed = new Option<int>("--seed") { Description = "seed of the random weights", DefaultValueFactory = _ => 0 };
        var precision = new Option<string>("--precision") { Description = "fp32 or int8", DefaultValueFactory = _ => "int8" };
        var perChannel = new Option<bool>("--per-channel") { Description = "int8: one weight scale per output channel" };
        var output = new Option<string>("--output", "-o") { Description = "where to write the .onnx file", Required = true };
        var command = new Command("export", "Export a BERT model to ONNX (fp32, or int8 with dynamic quantization of every linear layer).")
        {
            arch, checkpoint, heads, labels, regression, vocab, seed, precision, perChannel, output,
        };
        command.SetAction(parse => CliErrors.Guard(() =>
        {
            var p = Precisions.Parse(parse.GetValue(precision)!);
            var archText = parse.GetValue(arch);
            var checkpointPath = parse.GetValue(checkpoint);
            if ((archText is null) == (checkpointPath is null))
                throw new UserInputException("give exactly one of --arch e,h,f (random weights) or --checkpoint path");
            BertConfig config;
            float[] parameters;
            if (checkpointPath is not null)
            {
                var data = BertCheckpoint.Load(checkpointPath);
                (config, parameters) = (data.Config, data.Parameters);
            }
            else
            {
                config = new BertConfig(Architecture.Parse(archText!), parse.GetValue(heads), parse.GetValue(vocab),
                    parse.GetValue(regression) ? HeadKind.Regression : HeadKind.Classification, parse.GetValue(labels));
                parameters = RandomBertWeights.Create(new BertParameterLayout(config), parse.GetValue(seed));
            }
            var layout = new BertParameterLayout(config);
            var path = parse.GetValue(output)!;
            BertOnnxExporter.Save(config, layout, parameters, path, new OnnxExportOptions { Precision = p, PerChannel = parse.GetValue(perChannel) });
            AnsiConsole.MarkupLineInterpolated($"wrote [green]{path}[/] ({new FileInfo(path).Length / 1e6:0.0} MB): {config.Arch}, {config.Heads} heads, {p.ToString().ToLowerInvariant()}");
            return 0;
        }));
        return command;
    }

    private static Command Profile()
    {
        var archList = new Option<string[]>("--arch") { Description = "profile these architectures (e,h,f; repeatable) instead of a random sample", AllowMultipleArgumentsPerToken = true };
        var count = new Option<int>("--count") { Description = "architectures to sample from the space", DefaultValueFactory = _ => 120 };
        var space = new Option<string?>("--space") { Description = "Search space: 'paper' (Table 1, the default), 'demo', or a JSON file." };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads", DefaultValueFactory = _ => 1 };
        var seed = new Option<int>("--seed") { Description = "seed of the architecture sample, weights and inputs", DefaultValueFactory = _ => 0 };
        var batch = new Option<int>("--batch") { Description = "batch size", DefaultValueFactory = _ => 1 };
        var length = new Option<int>("--length") { Description = "tokens per input", DefaultValueFactory = _ => 128 };
        var precisions = new Option<string>("--precision") { Description = "fp32, int8 or both (fp32,int8)", DefaultValueFactory = _ => "fp32,int8" };
        var protocol = new Option<string>("--protocol") { Description = "measurement protocol: screening (≥ 100 runs & ≥ 1 s per model) or verification (≥ 1,000 runs & ≥ 10 s), optionally with overrides, e.g. screening:runs=300,seconds=2", DefaultValueFactory = _ => "screening" };
        var runs = new Option<int?>("--runs") { Description = "minimum timed runs per model (overrides the protocol's; ≥ 10)" };
        var clock = new Option<string>("--clock") { Description = "wall, or thread-cpu (CPU time of the one inference thread; robust on a shared machine, needs --threads 1)", DefaultValueFactory = _ => "wall" };
        var noSpin = new Option<bool>("--no-spin") { Description = "idle ORT worker threads sleep instead of spinning" };
        var output = new Option<string>("--output", "-o") { Description = "latency dataset (JSONL); measured entries are skipped on rerun", Required = true };
        var endpoint = new LatencyEndpointFlags();
        var command = new Command("profile", "Measure int8 and fp32 latency of sampled architectures on ONNX Runtime (here, or on --latency-endpoint) into a JSONL dataset.")
        {
            archList, count, space, threads, seed, batch, length, precisions, protocol, runs, clock, noSpin, output,
        };
        foreach (var o in endpoint.All) command.Options.Add(o);
        command.Subcommands.Add(Fit());
        command.SetAction(parse => CliErrors.Guard(() =>
        {
            var searchSpace = SearchSpace.FromOption(parse.GetValue(space), SearchSpace.Paper);
            int n = parse.GetValue(count);
            if (n < 1) throw new UserInputException($"--count {n} must be at least 1");
            if (n > searchSpace.Count) throw new UserInputException($"--count {n} exceeds the {searchSpace.Count} architectures of the space");
            var list = parse.GetValue(precisions)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(Precisions.Parse).Distinct().ToList();
            if (list.Count == 0) throw new UserInputException("--precision is empty; use fp32, int8 or fp32,int8");
            var random = new Random(parse.GetValue(seed));
            var archs = new List<Architecture>();
            var seen = new HashSet<Architecture>();
            var given = parse.GetValue(archList) ?? [];
            foreach (var text in given)
                if (seen.Add(Architecture.Parse(text))) archs.Add(Architecture.Parse(text));
            if (given.Length > 0) n = archs.Count;
            while (archs.Count < n)
            {
                var a = searchSpace.Sample(random);
                if (seen.Add(a)) archs.Add(a);
            }
            var options = new LatencyProfilerOptions
            {
                Threads = parse.GetValue(threads), Batch = parse.GetValue(batch), SequenceLength = parse.GetValue(length),
                Heads = searchSpace.Heads, Seed = parse.GetValue(seed), AllowSpinning = !parse.GetValue(noSpin),
                Protocol = parse.GetValue(runs) is int minRuns
                    ? LatencyProtocol.Parse(parse.GetValue(protocol)!) with { MinRuns = minRuns }
                    : LatencyProtocol.Parse(parse.GetValue(protocol)!),
                Clock = LatencyProfilerClock.Parse(parse.GetValue(clock)!),
            };
            using var remote = endpoint.Bind(parse) is { } e ? new HttpLatencyDevice(e) : null;
            var profiler = new LatencyProfiler(options, remote);
            var path = parse.GetValue(output)!;
            AnsiConsole.MarkupLineInterpolated($"profiling {n} architectures {(given.Length > 0 ? "given" : $"of {searchSpace}")} × {string.Join(", ", list).ToLowerInvariant()}, batch {options.Batch} × {options.SequenceLength}, {options.Threads} thread(s), {LatencyProfilerClock.Name(options.Clock)} clock, {profiler.Device.Name}, on {profiler.Device.Fingerprint(options.Threads)}");
            AnsiConsole.MarkupLineInterpolated($"protocol {options.Protocol.Validate().Describe()}");
            IReadOnlyList<LatencyRecord> added = [];
            ConsoleProgress.Run<(LatencyRecord? Record, int Done, int Total)>("profiling",
                p => (p.Total == 0 ? 1 : p.Done, Math.Max(p.Total, 1), p.Record is { } record ? Measured(record) : "profiling"),
                progress => added = profiler.ProfileAll(archs, list, path, (record, done, total) => progress.Report((record, done, total))));
            AnsiConsole.MarkupLineInterpolated($"measured {added.Count} new model(s) into [green]{path}[/] ({n * list.Count - added.Count} already there)");
            return 0;
        }));
        return command;

        static string Measured(LatencyRecord r) => string.Create(CultureInfo.InvariantCulture,
            $"{r.Arch} {r.Precision.ToString().ToLowerInvariant()} p50 {r.MedianMs:0.000} / p90 {r.P90Ms:0.000} ms{(r.Protocol?.Drifted == true ? " (drifted)" : "")}");
    }

    private static Command Fit()
    {
        var input = new Option<string>("--input", "-i") { Description = "latency dataset (JSONL) from 'speedlimit profile'", Required = true };
        var threads = new Option<int>("--threads") { Description = "use the records measured with this many threads", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch") { Description = "use the records of this batch size", DefaultValueFactory = _ => 1 };
        var length = new Option<int>("--length") { Description = "use the records of this input length", DefaultValueFactory = _ => 128 };
        var fitClock = new Option<string>("--clock") { Description = "use the records timed with this clock (wall or thread-cpu)", DefaultValueFactory = _ => "wall" };
        var statistic = new Option<string>("--statistic") { Description = $"{LatencyStatistics.Words} of each model's runs", DefaultValueFactory = _ => "median" };
        var plot = new Option<string?>("--plot") { Description = "write the scatter with the fit line as a PNG here" };
        var markdown = new Option<string?>("--markdown") { Description = "write the summary (fit, R², speedup, contrasting pairs) as Markdown here" };
        var command = new Command("fit", "Fit fp32 = a·int8 + b over a latency dataset (the paper's Figure 4), report R², speedup and contrasting pairs.")
        {
            input, threads, batch, length, fitClock, statistic, plot, markdown,
        };
        command.SetAction(parse => CliErrors.Guard(() =>
        {
            var stat = LatencyStatistics.Parse(parse.GetValue(statistic), "--statistic");
            var clockName = LatencyProfilerClock.Name(LatencyProfilerClock.Parse(parse.GetValue(fitClock)!));
            var records = LatencyDataset.Load(parse.GetValue(input)!).Where(r => r.Clock == clockName);
            var result = LatencyProfilerFigure4.Analyze(records, parse.GetValue(threads), parse.GetValue(batch), parse.GetValue(length), statistic: stat);
            var text = LatencyProfilerFigure4.ToMarkdown(result);
            Console.WriteLine(text);
            if (parse.GetValue(plot) is { } png)
            {
                LatencyProfilerFigure4.SavePlot(result, png);
                AnsiConsole.MarkupLineInterpolated($"wrote [green]{png}[/]");
            }
            if (parse.GetValue(markdown) is { } md)
            {
                AtomicFile.WriteAllText(md, text);
                AnsiConsole.MarkupLineInterpolated($"wrote [green]{md}[/]");
            }
            return 0;
        }));
        return command;
    }
}
