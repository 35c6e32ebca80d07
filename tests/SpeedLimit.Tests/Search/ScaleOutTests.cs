using System.Diagnostics;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

/// <summary>
/// Scale-out end to end on a throwaway PostgreSQL cluster: a coordinator (this process) publishes
/// a real evaluation package (tokenized built-in task, untrained supermodel, fine-tuning budget)
/// and `speedlimit worker` processes evaluate its candidates. Tiny space and budgets, short leases.
/// </summary>
[Collection("postgres")]
public sealed class ScaleOutTests(PostgresCluster cluster) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sl-scale-").FullName;
    private readonly List<Process> _workers = new();

    public void Dispose()
    {
        foreach (var p in _workers)
        {
            try { if (!p.HasExited) p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            p.Dispose();
        }
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static readonly SearchSpace Space = new(new(1, 2, 1), new(16, 32, 16), new(16, 48, 16), 2); // 12 architectures

    private sealed record Setup(CandidateEvaluator Evaluator, ElasticSupermodel Supermodel, EncodedTask Task, FineTuneOptions FineTune);

    private static Setup Build(int fineTuneExamples)
    {
        var task = EncodedTask.Load(new DataOptions { Task = BuiltinTask.Name, MaxTrainExamples = 400, MaxDevExamples = 120, MaxSequenceLength = 24 }, seed: 3);
        var super = new ElasticSupermodel(BertModel.CreateRandom(task.ConfigFor(Space.Largest, Space.Heads), 3) );
        var fineTune = new FineTuneOptions { Epochs = 1, MaxExamples = fineTuneExamples, BatchSize = 16, LearningRate = 1e-3f };
        return new Setup(new CandidateEvaluator(super, task, fineTune, Precision.Int8, 1), super, task, fineTune);
    }

    private static SearchDefinition Def(int generations, int population) =>
        new("builtin", Precision.Int8, Space, [50.0], 3, "test budget", new SearchOptions { Generations = generations, CandidatesPerGeneration = population, Parents = 2 });

    private string Publish(StudyStore store, Setup s) =>
        CandidatePackage.Publish(store, s.Supermodel, s.Task, s.FineTune, Precision.Int8, 1, Path.Combine(_dir, "coordinator"), null).ToJson();

    private Process StartWorker(string db, string name, params string[] extra)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { typeof(SpeedLimit.Cli.Program).Assembly.Location, "worker", "--study", db, "--threads", "1", "--name", name,
            "--poll-ms", "50", "--cache-dir", Path.Combine(_dir, "cache-" + name) }.Concat(extra))
            start.ArgumentList.Add(a);
        var p = Process.Start(start)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _workers.Add(p);
        return p;
    }

    private static Thread Coordinate(string db, string spec, SearchDefinition def, ICandidateEvaluator local, bool evaluateLocally, Action<SearchResult?, Exception?> done,
        CancellationToken cancel = default)
    {
        var t = new Thread(() =>
        {
            try
            {
                var predictor = new LinearPredictor();
                using var store = StudyStore.Open(db);
                using var queue = new CandidateQueue(store, spec, new CandidateQueueOptions { LeaseSeconds = 3, PollMilliseconds = 50, EvaluateLocally = evaluateLocally, Owner = "coordinator" });
                var search = new EvolutionarySearch(predictor, local, new FakeMeasurer(predictor)) { Queue = queue };
                done(store.Exists("s") ? search.Resume(store, "s", def, cancel) : search.Run(def, store, "s", cancel), null);
            }
            catch (Exception ex) { done(null, ex); }
        }) { IsBackground = true };
        t.Start();
        return t;
    }

    private static SearchResult Wait(Thread t, Func<(SearchResult?, Exception?)> result)
    {
        Assert.True(t.Join(TimeSpan.FromMinutes(3)), "the coordinator did not finish");
        var (r, ex) = result();
        if (ex is not null) throw new Xunit.Sdk.XunitException($"the coordinator failed: {ex}");
        return r!;
    }

    [PostgresFact]
    public void ThreeWorkerProcessesGiveTheSingleProcessResult()
    {
        var setup = Build(fineTuneExamples: 64);
        var def = Def(generations: 2, population: 3);
        var predictor = new LinearPredictor();
        var reference = new EvolutionarySearch(predictor, setup.Evaluator, new FakeMeasurer(predictor)).Run(def);

        var db = cluster.NewDatabase();
        string spec;
        using (var store = StudyStore.Open(db)) spec = Publish(store, setup);
        for (int k = 0; k < 3; k++) StartWorker(db, $"w{k}", "--idle-exit", "20");
        (SearchResult?, Exception?) outcome = default;
        var local = new SmoothEvaluator(); // never called: the coordinator does not evaluate here
        var coordinator = Coordinate(db, spec, def, local, evaluateLocally: false, (r, e) => outcome = (r, e));
        var result = Wait(coordinator, () => outcome);

        Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(result));
        Assert.Equal(0, local.Calls);
        using var check = StudyStore.Open(db);
        var entries = check.QueueEntries(check.Require("s", null).Id);
        Assert.Equal(reference.Candidates.Count, entries.Count);
        Assert.All(entries, e => Assert.Matches("^w[012]$", e.Worker!));
        Assert.All(entries, e => Assert.Equal(1, e.Attempts));
    }

    [PostgresFact]
    public void AWorkerKilledMidCandidateLosesItsLeaseAndAnotherWorkerRedoesItOnce()
    {
        var setup = Build(fineTuneExamples: 400); // slow enough to be caught mid-candidate
        var def = Def(generations: 1, population: 3);
        var predictor = new LinearPredictor();
        var reference = new EvolutionarySearch(predictor, setup.Evaluator, new FakeMeasurer(predictor)).Run(def);

        var db = cluster.NewDatabase();
        string spec;
        using (var store = StudyStore.Open(db)) spec = Publish(store, setup);
        (SearchResult?, Exception?) outcome = default;
        var coordinator = Coordinate(db, spec, def, new SmoothEvaluator(), evaluateLocally: false, (r, e) => outcome = (r, e));
        var doomed = StartWorker(db, "doomed");

        using var watch = StudyStore.Open(db);
        QueueEntry? held = null;
        var clock = Stopwatch.StartNew();
        while (held is null)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), "the worker never claimed a candidate");
            Assert.False(doomed.HasExited, "the worker exited before it could be killed");
            held = watch.Exists("s") ? watch.QueueEntries(watch.Require("s", null).Id).FirstOrDefault(e => e.State == StudyStore.Running && e.Worker == "doomed") : null;
            if (held is null) Thread.Sleep(20);
        }
        doomed.Kill(); // SIGKILL: no clean-up, no release
        doomed.WaitForExit();
        long id = watch.Require("s", null).Id;
        var after = watch.QueueEntries(id).Single(e => e.Arch == held.Arch);
        Assert.True(after.State == StudyStore.Running && after.Worker == "doomed",
            $"the candidate {held.Arch} finished before the kill ({after.State}); give the evaluation a larger budget");

        StartWorker(db, "rescuer", "--idle-exit", "20");
        var result = Wait(coordinator, () => outcome);

        Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(result));
        var entries = watch.QueueEntries(id);
        var redone = entries.Single(e => e.Arch == held.Arch);
        Assert.Equal((StudyStore.Done, "rescuer", 2), (redone.State, redone.Worker, redone.Attempts));
        Assert.Equal(reference.Candidates.Count, watch.Candidates("s").Count); // nothing lost, nothing counted twice
        Assert.Equal(reference.Candidates.Select(c => c.Arch), watch.Candidates("s").Select(c => c.Arch));
        var status = watch.Status().Single();
        Assert.Equal((0, 0, 1), (status.Running, status.DeadLeases, status.Redone));
    }

    [PostgresFact]
    public void AStoppedCoordinatorIsReplacedAfterItsLeaseAndResumesWhileWorkersKeepGoing()
    {
        var setup = Build(fineTuneExamples: 64);
        var def = Def(generations: 3, population: 3);
        var predictor = new LinearPredictor();
        var reference = new EvolutionarySearch(predictor, setup.Evaluator, new FakeMeasurer(predictor)).Run(def);

        var db = cluster.NewDatabase();
        string spec;
        using (var store = StudyStore.Open(db)) spec = Publish(store, setup);
        var workers = Enumerable.Range(0, 2).Select(k => StartWorker(db, $"w{k}", "--idle-exit", "30")).ToList();

        // The first coordinator stops mid-search (here by cancellation) once a generation is committed, with workers busy.
        using var stop = new CancellationTokenSource();
        (SearchResult?, Exception?) first = default;
        var t1 = Coordinate(db, spec, def, new SmoothEvaluator(), evaluateLocally: false, (r, e) => first = (r, e), stop.Token);
        using var watch = StudyStore.Open(db);
        var clock = Stopwatch.StartNew();
        while (!(watch.Exists("s") && watch.Candidates("s").Count >= 3))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), "no generation was committed");
            Thread.Sleep(20);
        }
        stop.Cancel();
        Assert.True(t1.Join(TimeSpan.FromMinutes(1)));
        Assert.IsAssignableFrom<OperationCanceledException>(first.Item2);
        int committed = watch.Candidates("s").Count;
        Assert.True(committed < reference.Candidates.Count, "the first coordinator finished before it was stopped");

        // What a kill -9 leaves besides the queue: a coordinator lease that nobody renews. A new
        // coordinator is refused while it looks alive and takes over once it has expired.
        long id = watch.Require("s", null).Id;
        watch.AcquireCoordinator(id, "s", "killed-coordinator", 3);
        (SearchResult?, Exception?) refused = default;
        Wait(Coordinate(db, spec, def, new SmoothEvaluator(), evaluateLocally: false, (r, e) => refused = (r, e)), () => (null, null));
        Assert.Contains("already has a coordinator (killed-coordinator", Assert.IsType<UserInputException>(refused.Item2).Message);
        Thread.Sleep(3500);

        // A second coordinator resumes the study; workers that were evaluating for the first carry on.
        (SearchResult?, Exception?) second = default;
        var t2 = Coordinate(db, spec, def, new SmoothEvaluator(), evaluateLocally: false, (r, e) => second = (r, e));
        var result = Wait(t2, () => second);
        Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(result));
        Assert.True(result.Timings.Reused >= committed);
        var entries = watch.QueueEntries(watch.Require("s", null).Id);
        Assert.Equal(reference.Candidates.Count, entries.Count);
        Assert.All(entries, e => Assert.Equal(1, e.Attempts)); // no candidate was evaluated twice
        foreach (var w in workers)
            if (w.HasExited) Assert.True(w.ExitCode == 0, $"a worker failed with exit code {w.ExitCode}");
    }

    [PostgresFact]
    public void AWorkerThatCannotReadThePublishedSupermodelSaysSo()
    {
        var setup = Build(fineTuneExamples: 16);
        var db = cluster.NewDatabase();
        var shared = Path.Combine(_dir, "shared");
        using var store = StudyStore.Open(db);
        var package = CandidatePackage.Publish(store, setup.Supermodel, setup.Task, setup.FineTune, Precision.Int8, 1, Path.Combine(_dir, "coordinator"), shared);
        File.Delete(Path.Combine(shared, package.Supermodel.Sha256 + ".bin")); // the shared folder is not mounted on this worker
        var ex = Assert.Throws<UserInputException>(() => CandidatePackage.OpenEvaluator(store, package.ToJson(), Path.Combine(_dir, "cache")));
        Assert.Contains("cannot read the published file", ex.Message);
        Assert.Contains("mount the coordinator's shared folder", ex.Message);

        File.WriteAllText(Path.Combine(shared, package.Supermodel.Sha256 + ".bin"), "not the checkpoint");
        var bad = Assert.Throws<InvalidDataException>(() => CandidatePackage.OpenEvaluator(store, package.ToJson(), Path.Combine(_dir, "cache")));
        Assert.Contains("damaged or was replaced", bad.Message);

        var threads = Assert.Throws<UserInputException>(() => CandidatePackage.OpenEvaluator(store, package.ToJson(), Path.Combine(_dir, "cache"), threads: 2));
        Assert.Contains("start this worker with --threads 1", threads.Message);
        var other = package with { ProgramVersion = "0.0.1-other" };
        var version = Assert.Throws<UserInputException>(() => CandidatePackage.OpenEvaluator(store, other.ToJson(), Path.Combine(_dir, "cache")));
        Assert.Contains("run the same build on every machine", version.Message);
    }

    private static (int Code, string Out, string Err) Cli(params string[] args) => ConsoleCapture.Run(() => SpeedLimit.Cli.Program.Run(args));

    [PostgresFact]
    public void StudyStatusAndWorkerReportStoreProblemsOnOneLine()
    {
        var db = cluster.NewDatabase();
        using (var store = StudyStore.Open(db))
        {
            var row = store.Create("run/search-int8", StudyStore.SearchKind, "{}", 0, null);
            store.PublishPackage(row.Id, "{}", 0.5);
            store.Enqueue(row.Id, [(new Architecture(1, 16, 16), 1), (new Architecture(2, 32, 48), 2), (new Architecture(1, 32, 16), 3)]);
            var c = store.Claim("gone-worker")!;
            store.Complete(store.Claim("busy-worker")!, new CandidateResult(new Architecture(2, 32, 48), 0.5, 1), 1, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow);
            store.Claim("busy-worker");
            Thread.Sleep(700); // gone-worker's and busy-worker's leases are now stale
            Assert.NotNull(c);
        }
        var (code, text, _) = Cli("study", "status", "--study", db, "--json");
        Assert.Equal(0, code);
        var json = System.Text.Json.Nodes.JsonNode.Parse(text)!["studies"]![0]!;
        Assert.Equal(("run/search-int8", 1, 2, 0, 2), (json["name"]!.GetValue<string>(), json["done"]!.GetValue<int>(), json["running"]!.GetValue<int>(),
            json["queued"]!.GetValue<int>(), json["deadLeases"]!.GetValue<int>()));
        (code, text, _) = Cli("study", "status", "--study", db);
        Assert.Equal(0, code);
        Assert.Contains("gone-worker", text);
        Assert.Contains("the next claim by any worker takes its candidate over", text);

        int closed;
        using (var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0)) { l.Start(); closed = ((System.Net.IPEndPoint)l.LocalEndpoint).Port; l.Stop(); }
        var cases = new (string Study, string Expected)[]
        {
            ($"Host=127.0.0.1;Port={closed};Username=u;Password=p;Database=d;Timeout=3", "cannot reach PostgreSQL at 127.0.0.1:"),
            ($"Host=127.0.0.1;Port={cluster.Port};Username={PostgresCluster.User};Password=nope;Database=postgres", "fix Username/Password"),
            ($"Host=127.0.0.1;Port={cluster.Port};Username={PostgresCluster.User};Password={PostgresCluster.Password};Database=missing_db", "has no database 'missing_db'"),
            ("Host=127.0.0.1;Port=notaport", "is not a valid PostgreSQL connection string"),
        };
        foreach (var (study, expected) in cases)
        {
            var (c, _, err) = Cli("worker", "--study", study, "--idle-exit", "0");
            Assert.Equal(2, c);
            Assert.StartsWith("error: ", err);
            Assert.Contains(expected, err);
            Assert.Single(err.Trim().Split('\n'));
            Assert.DoesNotContain("nope", err); // no password in messages
        }
    }
}
