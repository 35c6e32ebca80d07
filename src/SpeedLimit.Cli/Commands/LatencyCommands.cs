using System.CommandLine;
using System.Globalization;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Latency.Remote;
using SpeedLimit.Search;
using Spectre.Console;

namespace SpeedLimit.Cli.Commands;

/// <summary>`speedlimit latency fit|narrow`: fit a latency predictor to profiled records and narrow a search space with it.</summary>
public static class LatencyCommands
{
    public static IEnumerable<Command> Create()
    {
        var latency = new Command("latency", "Fit a latency predictor to profiled latencies, narrow a search space to a bound, or serve measurements on the deployment machine.");
        latency.Subcommands.Add(CreateFit());
        latency.Subcommands.Add(CreateNarrow());
        latency.Subcommands.Add(CreateServe());
        latency.Subcommands.Add(CreateMeasureWorker());
        yield return latency;
    }

    /// <summary>The measurement child process (hidden): JSON requests on stdin, one JSON reply per line on stdout.</summary>
    private static Command CreateMeasureWorker()
    {
        var cmd = new Command("measure-worker", "Internal: the dedicated latency measurement process (JSON lines on stdin/stdout).") { Hidden = true };
        cmd.SetAction(_ => MeasurementWorker.Serve(Console.In, Console.Out));
        return cmd;
    }

    /// <summary>`speedlimit latency serve`: this machine as the latency device of searches run elsewhere (docs/latency-protocol.md).</summary>
    private static Command CreateServe()
    {
        var urls = new Option<string>("--urls") { Description = "Addresses to listen on, separated by ';' (loopback by default; port 0 picks a free port).", DefaultValueFactory = _ => $"http://127.0.0.1:{LatencyServerOptions.DefaultPort}" };
        var store = new Option<string?>("--store") { Description = $"Folder for uploaded models, results and the measurement journal; kept across restarts (default {LatencyServerOptions.DefaultStoreFolder})." };
        var tokenFile = new Option<string?>("--token-file") { Description = $"File with the bearer token clients must send (default: {LatencyEndpointOptions.TokenVariable}, else a random token generated into the store's 'token' file)." };
        var maxUpload = new Option<double>("--max-upload-mb") { Description = "Largest model upload accepted, in MB.", DefaultValueFactory = _ => 512 };
        var cmd = new Command("serve", "Measure latency on this machine (the deployment target) for 'search' and 'profile' run elsewhere with --latency-endpoint: ONNX models over HTTP with a bearer token, the same protocol and isolation as local profiling.")
        {
            urls, store, tokenFile, maxUpload,
        };
        cmd.SetAction(parse => CliErrors.Guard(() =>
        {
            var folder = parse.GetValue(store) ?? LatencyServerOptions.DefaultStoreFolder;
            double mb = parse.GetValue(maxUpload);
            if (!(mb > 0) || !double.IsFinite(mb)) throw new UserInputException($"--max-upload-mb {mb} must be a positive number of megabytes");
            var options = new LatencyServerOptions
            {
                Urls = parse.GetValue(urls)!.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                StoreFolder = folder, MaxUploadBytes = (long)Math.Min(mb * 1e6, long.MaxValue / 2),
            };
            options.Validate(requireToken: false); // before the token, which may be generated into the store
            var (token, source) = LatencyServerOptions.ResolveToken(parse.GetValue(tokenFile), folder);
            options.Token = token;
            using var cancel = new CancelOnSignals();
            var server = new LatencyServer(options, log: Console.Out); // measures in the dedicated child process
            Console.Out.WriteLine($"token {source}");
            server.StartAsync(cancel.Token).GetAwaiter().GetResult();
            cancel.Token.WaitHandle.WaitOne();
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return 0;
        }));
        return cmd;
    }

    private static Command CreateFit()
    {
        var data = new Option<string>("--data") { Description = "Profiled latencies (JSONL of latency records).", Required = true };
        var output = new Option<string>("--output") { Description = "Where to write the predictor (JSON).", Required = true };
        var precision = new Option<string>("--precision") { Description = "Precision to fit: int8 or fp32.", DefaultValueFactory = _ => "int8" };
        var model = new Option<string>("--model") { Description = "Model: features (operator FLOPs/elements; fast), mlp (the paper's) or auto (lower cross-validated error; trains the MLP folds+1 times).", DefaultValueFactory = _ => "features" };
        var statistic = new Option<string?>("--target") { Description = $"Per-record latency to learn: {LatencyStatistics.Words} (default: the bound statistic)." };
        var boundStatistic = new Option<string>("--bound-statistic") { Description = "The quantile the margin bounds (the search's bound statistic): p50, p90 or p99.", DefaultValueFactory = _ => "p90" };
        var batch = new Option<int>("--batch") { Description = "Batch size of the records to use.", DefaultValueFactory = _ => 1 };
        var length = new Option<int>("--length") { Description = "Sequence length of the records to use.", DefaultValueFactory = _ => 128 };
        var threads = new Option<int?>("--threads") { Description = "Thread count of the records to use (default: the dataset's only one)." };
        var holdout = new Option<double>("--holdout") { Description = "Share of architectures held out for the reported scores.", DefaultValueFactory = _ => 0.2 };
        var trainCount = new Option<int?>("--train-count") { Description = "Fit on at most this many architectures; all others are held out." };
        var confidence = new Option<double>("--confidence") { Description = "Confidence of the latency margin.", DefaultValueFactory = _ => 0.9 };
        var folds = new Option<int>("--folds") { Description = "Cross-validation folds (model choice and margin calibration); 0 fits once and calibrates on the held-out set.", DefaultValueFactory = _ => 5 };
        var seed = new Option<int>("--seed") { Description = "Seed of the split, folds and MLP init.", DefaultValueFactory = _ => 1 };
        var mlpWidth = new Option<int>("--mlp-width") { Description = "MLP hidden width (paper: 2000).", DefaultValueFactory = _ => 2000 };
        var mlpSteps = new Option<int>("--mlp-steps") { Description = "MLP Adam steps (paper: 5000).", DefaultValueFactory = _ => 5000 };
        var mlpLr = new Option<double>("--mlp-lr") { Description = "MLP learning rate (paper: 1e-5).", DefaultValueFactory = _ => 1e-5 };
        var plot = new Option<string?>("--plot") { Description = "PNG of predicted vs measured held-out latency (default: next to --output)." };
        var curve = new Option<string?>("--learning-curve") { Description = "Comma-separated training counts: print held-out MAPE after fitting on each (e.g. 25,50,100,200,300)." };

        var cmd = new Command("fit", "Fit a latency predictor to a profiled dataset and report its held-out error.")
        {
            data, output, precision, model, statistic, boundStatistic, batch, length, threads, holdout, trainCount, confidence, folds, seed, mlpWidth, mlpSteps, mlpLr, plot, curve,
        };
        cmd.SetAction(parse => CliErrors.Guard(() =>
        {
            var options = new LatencyFitOptions
            {
                Precision = Precisions.Parse(parse.GetValue(precision)!),
                Model = ParseModel(parse.GetValue(model)!),
                Statistic = parse.GetValue(statistic) is string target ? LatencyStatistics.Parse(target, "--target") : null,
                BoundStatistic = LatencyBound.ParseStatistic(parse.GetValue(boundStatistic)!),
                Batch = parse.GetValue(batch),
                SequenceLength = parse.GetValue(length),
                Threads = parse.GetValue(threads),
                HoldoutFraction = parse.GetValue(holdout),
                TrainCount = parse.GetValue(trainCount),
                Confidence = parse.GetValue(confidence),
                Folds = parse.GetValue(folds),
                Seed = parse.GetValue(seed),
                Mlp = new MlpOptions { Width = parse.GetValue(mlpWidth), Steps = parse.GetValue(mlpSteps), LearningRate = parse.GetValue(mlpLr), Seed = parse.GetValue(seed) },
                Features = new FeatureModelOptions { Seed = parse.GetValue(seed) },
            };
            var records = LatencyDataset.Load(parse.GetValue(data)!);
            var report = ConsoleProgress.Status("fitting latency predictor…", () => LatencyPredictorFitter.Fit(records, options));
            foreach (var w in report.Warnings) AnsiConsole.MarkupLineInterpolated($"[yellow]warning:[/] {w}");
            RenderFit(report, options);

            var outPath = parse.GetValue(output)!;
            report.Predictor.Save(outPath);
            AnsiConsole.MarkupLineInterpolated($"predictor written to [bold]{outPath}[/]");
            if (report.HeldOutPoints.Count > 0)
            {
                var png = parse.GetValue(plot) ?? Path.ChangeExtension(outPath, ".png");
                var p = report.Predictor;
                LatencyPlots.SavePredictedVsMeasured(png, report.HeldOutPoints,
                    $"{Name(report.Chosen)} predictor, {p.Precision.ToString().ToLowerInvariant()}: held-out MAPE {report.HeldOut!.MapePercent:0.00} % (fit on {report.TrainCount})");
                AnsiConsole.MarkupLineInterpolated($"plot written to [bold]{png}[/]");
            }

            if (parse.GetValue(curve) is string counts)
            {
                var ns = ParseCounts(counts);
                var kind = report.Chosen;
                var points = LatencyPredictorFitter.LearningCurve(records, options, kind, ns, repeats: 5);
                var table = new Table().Title($"learning curve ({Name(kind)}, 5 draws each, fixed held-out set)");
                table.AddColumns("fitted on", "mean MAPE %", "worst MAPE %", "mean max |err| %", "within ±10 %");
                foreach (var pt in points)
                    table.AddRow(pt.TrainCount.ToString(CultureInfo.InvariantCulture), F(pt.MeanMapePercent), F(pt.WorstMapePercent),
                        F(pt.MeanMaxAbsErrorPercent), $"{pt.MeanWithin10Percent:P1}");
                AnsiConsole.Write(table);
                var curvePng = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(outPath)) ?? ".", Path.GetFileNameWithoutExtension(outPath) + "-learning-curve.png");
                LatencyPlots.SaveLearningCurve(curvePng, [($"{Name(kind)} predictor", points)],
                    $"held-out MAPE vs profiled architectures ({report.HeldOutPoints.Count + report.TrainCount} measured)");
                AnsiConsole.MarkupLineInterpolated($"learning curve written to [bold]{curvePng}[/]");
            }
            return 0;
        }));
        return cmd;
    }

    private static Command CreateNarrow()
    {
        var predictorPath = new Option<string>("--predictor") { Description = "A predictor written by 'speedlimit latency fit'.", Required = true };
        var bound = new Option<double>("--bound-ms") { Description = "Latency bound in milliseconds.", Required = true };
        var spacePath = new Option<string?>("--space") { Description = "Search space: 'paper' (Table 1, 13,125 architectures; the default), 'demo', or a JSON file." };
        var cmd = new Command("narrow", "List how many architectures of a search space meet a latency bound (with the predictor's margin).")
        {
            predictorPath, bound, spacePath,
        };
        cmd.SetAction(parse => CliErrors.Guard(() =>
        {
            var predictor = LatencyPredictor.Load(parse.GetValue(predictorPath)!);
            var warning = predictor.DeviceWarning(DeviceCheck.Current(predictor.Device.Threads));
            if (warning is not null) AnsiConsole.MarkupLineInterpolated($"[yellow]warning:[/] {warning}");
            var space = SearchSpace.FromOption(parse.GetValue(spacePath), SearchSpace.Paper);
            if (space.Heads != predictor.Shape.Heads)
                AnsiConsole.MarkupLineInterpolated($"[yellow]warning:[/] the space has {space.Heads} heads but the predictor was fitted on {predictor.Shape.Heads}-head models");
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            var narrowed = SpaceNarrowing.Narrow(space, predictor, parse.GetValue(bound));
            double ms = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            AnsiConsole.MarkupLineInterpolated(
                $"|A*| = [bold]{narrowed.Count:N0}[/] of {space.Count:N0} architectures ({narrowed.Share:P1}) meet {narrowed.BoundMs:0.###} ms with a {narrowed.RelativeMargin:P1} margin at {predictor.Confidence:P0} confidence ({ms:0} ms to narrow)");
            AnsiConsole.MarkupLineInterpolated($"fastest: {narrowed.Fastest.Arch} at {narrowed.Fastest.PredictedMs:0.###} ms; slowest kept: {narrowed.Slowest.Arch} at {narrowed.Slowest.PredictedMs:0.###} ms (≤ {narrowed.Slowest.UpperMs:0.###} ms with margin)");
            var table = new Table().Title("spread of A*");
            table.AddColumns("dimension", "min", "max", "distinct values", "count per value");
            foreach (var d in narrowed.Spread())
                table.AddRow(d.Dimension, d.Min.ToString(CultureInfo.InvariantCulture), d.Max.ToString(CultureInfo.InvariantCulture),
                    d.DistinctValues.ToString(CultureInfo.InvariantCulture), Markup.Escape(Histogram(d)));
            AnsiConsole.Write(table);
            return 0;
        }));
        return cmd;
    }

    private static void RenderFit(LatencyFitReport report, LatencyFitOptions options)
    {
        var p = report.Predictor;
        AnsiConsole.MarkupLineInterpolated(
            $"{report.RecordsUsed} {p.Precision.ToString().ToLowerInvariant()} architectures ({options.Statistic} latency) at batch {p.Shape.Batch} × {p.Shape.SequenceLength}, {p.Device}; fitted on {report.TrainCount}, held out {report.HeldOutPoints.Count}");
        if (report.Candidates.Count > 0)
        {
            var cv = new Table().Title($"{options.Folds}-fold cross-validation on the fitted architectures");
            cv.AddColumns("model", "MAPE %", "max |err| %", "within ±5 %", "within ±10 %", "time s");
            foreach (var c in report.Candidates)
                cv.AddRow(c.Kind == report.Chosen ? $"[bold]{Name(c.Kind)}[/] (chosen)" : Name(c.Kind), F(c.CrossValidated.MapePercent),
                    F(c.CrossValidated.MaxAbsErrorPercent), $"{c.CrossValidated.Within5Percent:P1}", $"{c.CrossValidated.Within10Percent:P1}", F(c.FitSeconds));
            AnsiConsole.Write(cv);
        }
        if (report.HeldOut is { } h)
        {
            AnsiConsole.MarkupLineInterpolated($"chosen model: {p.Model.Describe()}");
            var table = new Table().Title("held-out architectures (never fitted on)");
            table.AddColumns("count", "MAPE %", "max |err| %", "within ±5 %", "within ±10 %", "bias %", $"margin @ {p.Confidence:P0}", "coverage");
            table.AddRow(h.Count.ToString(CultureInfo.InvariantCulture), F(h.MapePercent), F(h.MaxAbsErrorPercent),
                $"{h.Within5Percent:P1}", $"{h.Within10Percent:P1}", F(h.BiasPercent), $"{p.RelativeMargin:P2}",
                double.IsNaN(report.HeldOutCoverage) ? "n/a" : $"{report.HeldOutCoverage:P1}");
            AnsiConsole.Write(table);
        }
        else
        {
            AnsiConsole.MarkupLineInterpolated($"no hold-out: margin {p.RelativeMargin:P2} at {p.Confidence:P0} from cross-validated residuals");
        }
    }

    private static string Histogram(DimensionSpread d) =>
        d.Histogram.Count <= 8
            ? string.Join(" ", d.Histogram.Select(x => $"{x.Value}:{x.Count}"))
            : string.Join(" ", d.Histogram.Take(4).Select(x => $"{x.Value}:{x.Count}")) + " … " + string.Join(" ", d.Histogram.TakeLast(3).Select(x => $"{x.Value}:{x.Count}"));

    private static string Name(LatencyModelKind kind) => kind.ToString().ToLowerInvariant();

    private static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);

    private static LatencyModelKind ParseModel(string text) => text.ToLowerInvariant() switch
    {
        "auto" => LatencyModelKind.Auto,
        "mlp" => LatencyModelKind.Mlp,
        "features" => LatencyModelKind.Features,
        _ => throw new UserInputException($"--model '{text}' is not known; use mlp, features or auto"),
    };

    private static int[] ParseCounts(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var counts = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out counts[i]) || counts[i] < 3)
                throw new UserInputException($"--learning-curve '{text}': '{parts[i]}' is not a count of at least 3; give e.g. 25,50,100");
        return counts;
    }
}
