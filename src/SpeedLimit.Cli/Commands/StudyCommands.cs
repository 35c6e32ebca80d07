using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;
using Spectre.Console;

namespace SpeedLimit.Cli.Commands;

/// <summary>`speedlimit worker` and `speedlimit study status`: scale-out over a shared study store (docs/scale-out.md).</summary>
public static class StudyCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return CreateWorker();
        var study = new Command("study", "Inspect a study store (a SQLite file or a PostgreSQL database).");
        study.Subcommands.Add(CreateStatus());
        yield return study;
    }

    private static Option<string> StudyOption() => new("--study")
    {
        Description = "The study store: a PostgreSQL connection string (\"Host=db;Port=5432;Database=speedlimit;Username=...;Password=...\" or postgres://user:pw@host/db) or a SQLite file.",
        Required = true,
    };

    private static Command CreateWorker()
    {
        var study = StudyOption();
        var threads = new Option<int?>("--threads") { Description = "Training threads (must equal the coordinator's --threads; default: the study's)." };
        var name = new Option<string?>("--name") { Description = "How this worker shows up in 'study status' (default: host:pid)." };
        var cache = new Option<string?>("--cache-dir") { Description = "Where published files (tokenized task, supermodel) are kept (default: a folder under the temp folder)." };
        var idleExit = new Option<double?>("--idle-exit") { Description = "Exit after this many seconds with nothing to claim (default: run until Ctrl+C)." };
        var max = new Option<int?>("--max-candidates") { Description = "Exit after evaluating this many candidates." };
        var poll = new Option<int>("--poll-ms") { Description = "How often an idle worker looks for queued candidates.", DefaultValueFactory = _ => 500 };
        var cmd = new Command("worker", "Evaluate queued candidates of the studies in a shared study store, one at a time, until stopped.")
        {
            study, threads, name, cache, idleExit, max, poll,
        };
        cmd.SetAction(parse => CliErrors.Guard(() =>
        {
            var location = parse.GetValue(study)!;
            var options = new StudyWorkerOptions
            {
                PollMilliseconds = parse.GetValue(poll),
                IdleExitSeconds = parse.GetValue(idleExit),
                MaxCandidates = parse.GetValue(max),
            };
            if (parse.GetValue(name) is { } n) options.Name = n;
            options.Validate();
            if (parse.GetValue(threads) is < 1) throw new ArgumentException($"--threads {parse.GetValue(threads)} must be at least 1");
            var cacheDir = parse.GetValue(cache) ?? Path.Combine(Path.GetTempPath(), "speedlimit-worker-cache");
            using var cancel = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
            string shown;
            using (var probe = StudyStore.Open(location)) shown = probe.Path; // connection and credential errors surface here, before any work
            var worker = new StudyWorker(location, (store, _, spec) => CandidatePackage.OpenEvaluator(store, spec, cacheDir, parse.GetValue(threads)), options)
            {
                Progress = new SyncProgress<WorkerEvent>(e => Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[{options.Name}] {e.Study} {e.Arch} attempt {e.Attempt}: {e.Outcome}{(e.Metric is double m ? $", metric {m:0.####}" : "")} in {e.Seconds:0.0} s{(e.ReclaimedFrom is { } r ? $" (taken over from {r}, whose lease expired)" : "")}"))),
            };
            Console.WriteLine($"[{options.Name}] worker on {shown}; Ctrl+C stops after putting the current candidate back");
            var summary = worker.Run(cancel.Token);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"[{options.Name}] {summary.Evaluated} candidate(s) evaluated, {summary.LeasesLost} lease(s) lost, busy {summary.BusySeconds:0.0} of {summary.TotalSeconds:0.0} s"));
            return 0;
        }));
        return cmd;
    }

    private static Command CreateStatus()
    {
        var study = StudyOption();
        var json = new Option<bool>("--json") { Description = "Print the status as JSON." };
        var cmd = new Command("status", "Candidates done / running (by which worker, since when) / queued, and dead leases, per study.") { study, json };
        cmd.SetAction(parse => CliErrors.Guard(() =>
        {
            using var store = StudyStore.Open(parse.GetValue(study)!);
            var status = store.Status();
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new { store = store.Path, studies = status }, SearchJson.Indented));
                return 0;
            }
            var inv = CultureInfo.InvariantCulture;
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
            if (Console.IsOutputRedirected) console.Profile.Width = 200; // logs: one line per row
            console.MarkupLineInterpolated($"study store [bold]{store.Path}[/]: {status.Count} stud{(status.Count == 1 ? "y" : "ies")}");
            if (status.Count == 0) return 0;
            var table = new Table().AddColumns("study", "kind", "candidates", "done", "running", "queued", "dead leases", "redone", "coordinator");
            foreach (var s in status)
                table.AddRow(Markup.Escape(s.Name), s.Kind, s.Candidates.ToString(inv), s.Done.ToString(inv), s.Running.ToString(inv), s.Queued.ToString(inv),
                    s.DeadLeases == 0 ? "0" : $"[red]{s.DeadLeases}[/]", s.Redone.ToString(inv),
                    s.Coordinator is { } c ? Markup.Escape(string.Create(inv, $"{c.Owner}, heartbeat {c.HeartbeatAgeSeconds:0.0} s ago{(c.Alive ? "" : " (dead)")}")) : "none");
            console.Write(table);
            var running = status.SelectMany(s => s.RunningEntries.Select(e => (s, e))).ToList();
            if (running.Count > 0)
            {
                var rt = new Table().Title("running").AddColumns("study", "architecture", "worker", "since", "last heartbeat", "attempt", "lease");
                foreach (var (s, e) in running)
                {
                    bool dead = s.LeaseSeconds is double l && e.HeartbeatAgeSeconds > l;
                    rt.AddRow(Markup.Escape(s.Name), e.Arch.ToString(), Markup.Escape(e.Worker ?? "?"),
                        string.Create(inv, $"{e.ClaimedAgeSeconds:0} s ago ({DateTimeOffset.UtcNow.AddSeconds(-(e.ClaimedAgeSeconds ?? 0)):HH:mm:ss} UTC)"),
                        string.Create(inv, $"{e.HeartbeatAgeSeconds:0.0} s ago"), e.Attempts.ToString(inv), dead ? "[red]dead[/]" : "alive");
                }
                console.Write(rt);
                if (running.Any(x => x.s.LeaseSeconds is double l && x.e.HeartbeatAgeSeconds > l))
                    console.MarkupLine("[grey]dead: the worker stopped heartbeating for longer than the lease; the next claim by any worker takes its candidate over[/]");
            }
            return 0;
        }));
        return cmd;
    }
}
