using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;

namespace SpeedLimit.Bench;

/// <summary>
/// Scale-out on this machine: candidates per hour with 1 and 2 `speedlimit worker` processes
/// (--threads 1 each) on a loopback PostgreSQL, beside the same candidates evaluated in this
/// process (the reference, same run), and the queue's overhead per candidate (claim, commit).
/// </summary>
public sealed class ScaleOutBench : IBenchSection
{
    public string Name => "scale-out";
    public string Description => "candidates/hour with 1 and 2 workers on loopback PostgreSQL, and claim + commit latency";

    private static readonly SearchSpace Space = SearchSpace.Demo;

    public void Run(BenchReport report, bool quick)
    {
        var inv = CultureInfo.InvariantCulture;
        report.Note($"load before: {Load()} (/proc/loadavg; {Environment.ProcessorCount} CPUs, machine shared with other jobs: figures are noisy, compare the ratios)");
        using var pg = ThrowawayPostgres.TryStart(out var why);
        if (pg is null) { report.Note($"skipped: {why}"); return; }

        int n = quick ? 4 : 8;
        var task = EncodedTask.Load(new DataOptions { Task = BuiltinTask.Name, MaxTrainExamples = 2000, MaxDevExamples = 300, MaxSequenceLength = 32 }, seed: 1);
        var super = new ElasticSupermodel(BertModel.CreateRandom(task.ConfigFor(Space.Largest, Space.Heads), 1));
        var fineTune = new FineTuneOptions { Epochs = 1, MaxExamples = quick ? 256 : 512, BatchSize = 32, LearningRate = 5e-4f };
        var rng = new Random(7);
        var all = Space.Enumerate().ToList();
        var archs = all.OrderBy(_ => rng.Next()).Take(n + 2).ToList();
        var warm = archs.Take(2).ToList();
        var measured = archs.Skip(2).ToList();
        report.Note(string.Create(inv, $"workload: {n} candidates of the demo space, fine-tune {fineTune.Describe()}, {task.Dev.Count} dev examples, built-in task"));

        // Reference: the same candidates evaluated one after another in this process, 1 thread.
        var local = new CandidateEvaluator(super, task, fineTune, Precision.Int8, 1);
        local.Evaluate(warm[0], 1, default);
        var clock = Stopwatch.StartNew();
        var referenceMetrics = measured.Select(a => local.Evaluate(a, EvolutionarySearch.CandidateSeed(1, a), default).Metric).ToList();
        double referenceSeconds = clock.Elapsed.TotalSeconds;
        report.Figure("scale-out.in_process_reference", n / referenceSeconds * 3600, "candidates/h");

        var rates = new Dictionary<int, double>();
        foreach (int workers in new[] { 1, 2 })
        {
            var db = pg.NewDatabase();
            var work = Directory.CreateTempSubdirectory("sl-bench-scale-").FullName;
            var procs = new List<Process>();
            try
            {
                using var store = StudyStore.Open(db);
                var package = CandidatePackage.Publish(store, super, task, fineTune, Precision.Int8, 1, work, null);
                var row = store.Create("bench", StudyStore.SearchKind, "{}", 0, null);
                using var queue = new CandidateQueue(store, package.ToJson(), new CandidateQueueOptions { LeaseSeconds = 30, PollMilliseconds = 20, EvaluateLocally = false, Owner = "bench" });
                queue.Attach(row.Id, "bench");
                for (int k = 0; k < workers; k++) procs.Add(StartWorker(db, $"w{k}", work));
                // Warm-up generation: every worker loads the package once (and the JIT warms) outside the timed part.
                queue.EvaluateAll(row.Id, warm.Take(workers).Select(a => (a, EvolutionarySearch.CandidateSeed(1, a))).ToList(), local, default);
                clock.Restart();
                var entries = queue.EvaluateAll(row.Id, measured.Select(a => (a, EvolutionarySearch.CandidateSeed(1, a))).ToList(), local, default);
                double seconds = clock.Elapsed.TotalSeconds;
                rates[workers] = n / seconds * 3600;
                bool same = measured.Select(a => entries.Single(e => e.Arch == a).Metric!.Value).SequenceEqual(referenceMetrics);
                var byWorker = entries.GroupBy(e => e.Worker).Select(g => $"{g.Key}: {g.Count()}");
                report.Figure($"scale-out.workers_{workers}", rates[workers], "candidates/h");
                report.Note(string.Create(inv, $"    {workers} worker(s): {seconds:0.0} s for {n} candidates ({string.Join(", ", byWorker)}); metrics equal the in-process ones: {(same ? "yes" : "NO")}; load {Load()}"));
            }
            finally
            {
                foreach (var p in procs) { try { p.Kill(true); } catch (InvalidOperationException) { } p.Dispose(); }
                try { Directory.Delete(work, recursive: true); } catch (IOException) { }
            }
        }
        report.Figure("scale-out.speedup_2_vs_1_workers", rates[2] / rates[1], "x");
        report.Figure("scale-out.workers_1_vs_in_process", rates[1] / (n / referenceSeconds * 3600), "x");

        // Queue overhead per candidate on loopback: enqueue, claim (FOR UPDATE SKIP LOCKED), commit, as a worker and the coordinator see it.
        {
            using var store = StudyStore.Open(pg.NewDatabase());
            var row = store.Create("overhead", StudyStore.SearchKind, "{}", 0, null);
            store.PublishPackage(row.Id, "{}", 30);
            int m = quick ? 100 : 400;
            var items = all.Take(m).Select(a => (a, 1)).ToList();
            var enqueue = new List<double>();
            var claim = new List<double>();
            var commit = new List<double>();
            var collect = new List<double>();
            for (int i = 0; i < m; i++)
            {
                var t = Stopwatch.StartNew();
                store.Enqueue(row.Id, [items[i]]);
                enqueue.Add(t.Elapsed.TotalMilliseconds);
                t.Restart();
                var c = store.Claim("bench", row.Id)!;
                claim.Add(t.Elapsed.TotalMilliseconds);
                t.Restart();
                store.Complete(c, new CandidateResult(c.Arch, 0.5, 0), 0, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow);
                commit.Add(t.Elapsed.TotalMilliseconds);
                t.Restart();
                store.InsertCandidates(row.Id, [new CandidateRecord(c.Arch, i, "bench", Precision.Int8, "", 1, 0.5, 1, 0, 0, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow)]);
                collect.Add(t.Elapsed.TotalMilliseconds);
            }
            report.Figure("scale-out.claim_ms_median", Timing.Median(claim), "ms");
            report.Figure("scale-out.commit_ms_median", Timing.Median(commit), "ms");
            report.Figure("scale-out.claim_plus_commit_ms_median", Timing.Median(claim.Zip(commit, (a, b) => a + b).ToList()), "ms");
            report.Figure("scale-out.coordinator_enqueue_plus_insert_ms_median", Timing.Median(enqueue.Zip(collect, (a, b) => a + b).ToList()), "ms");
            report.Note(string.Create(inv, $"    p90: claim {Quantile(claim, 0.9):0.00} ms, commit {Quantile(commit, 0.9):0.00} ms over {m} candidates; beside {referenceSeconds / n * 1000:0} ms per candidate evaluation"));
        }
        report.Note($"load after: {Load()}");
    }

    private static double Quantile(List<double> xs, double q)
    {
        var s = xs.Order().ToArray();
        return s[(int)Math.Min(s.Length - 1, Math.Floor(q * s.Length))];
    }

    private static string Load() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "n/a";

    private static Process StartWorker(string db, string name, string work)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { typeof(SpeedLimit.Cli.Program).Assembly.Location, "worker", "--study", db, "--threads", "1", "--name", name,
            "--poll-ms", "20", "--cache-dir", Path.Combine(work, "cache-" + name) })
            start.ArgumentList.Add(a);
        var p = Process.Start(start)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }
}

/// <summary>A loopback PostgreSQL cluster in a temporary folder for the bench (as root it runs as 'postgres').</summary>
internal sealed class ThrowawayPostgres : IDisposable
{
    private readonly string _root, _bin;
    private readonly bool _asPostgres;
    private int _n;

    private ThrowawayPostgres(string root, string bin, bool asPostgres, int port)
    {
        _root = root; _bin = bin; _asPostgres = asPostgres; Port = port;
    }

    public int Port { get; }

    public static ThrowawayPostgres? TryStart(out string? why)
    {
        why = null;
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).FirstOrDefault(d => File.Exists(Path.Combine(d, "initdb")))
            : null;
        if (bin is null) { why = "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)"; return null; }
        bool root = Environment.UserName == "root";
        var dir = Path.Combine(root ? "/tmp" : Path.GetTempPath(), $"sl-bench-pg-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "pw"), "bench\n");
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var pg = new ThrowawayPostgres(dir, bin, root, port);
        try
        {
            if (root) Run("chown", ["-R", "postgres:", dir], false);
            pg.RunServer("initdb", ["-D", Path.Combine(dir, "data"), "-U", "bench", $"--pwfile={Path.Combine(dir, "pw")}", "-A", "scram-sha-256", "--no-sync"]);
            // Durable commits (fsync on) as a real server would have them: the commit latency is part of the figure.
            pg.RunServer("pg_ctl", ["-D", Path.Combine(dir, "data"), "-o", $"-p {port} -k {dir} -c listen_addresses=127.0.0.1", "-l", Path.Combine(dir, "log"), "-w", "start"]);
            return pg;
        }
        catch (InvalidOperationException ex)
        {
            why = ex.Message;
            pg.Dispose();
            return null;
        }
    }

    public string NewDatabase()
    {
        var name = $"b{++_n}";
        using (var c = new Npgsql.NpgsqlConnection($"Host=127.0.0.1;Port={Port};Username=bench;Password=bench;Database=postgres;Pooling=false"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = $"CREATE DATABASE {name}";
            cmd.ExecuteNonQuery();
        }
        return $"Host=127.0.0.1;Port={Port};Username=bench;Password=bench;Database={name}";
    }

    public void Dispose()
    {
        try { RunServer("pg_ctl", ["-D", Path.Combine(_root, "data"), "-m", "immediate", "-w", "stop"]); } catch (InvalidOperationException) { }
        try { Directory.Delete(_root, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private void RunServer(string exe, string[] args) => Run(Path.Combine(_bin, exe), args, _asPostgres);

    private static void Run(string exe, string[] args, bool asPostgres)
    {
        var psi = new ProcessStartInfo(asPostgres ? "runuser" : exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (asPostgres) foreach (var a in new[] { "-u", "postgres", "--", exe }) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{Path.GetFileName(exe)} failed: {output}{err.Result}");
    }
}
