using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

/// <summary>
/// The candidate queue's semantics, on both stores: leases, heartbeats, stale leases going back to
/// the queue, one coordinator per study, and a queued search equal to a single-process one.
/// </summary>
[Collection("postgres")]
public sealed class CandidateQueueTests(PostgresCluster cluster) : IDisposable
{
    private readonly StoreLocations _stores = new(cluster);

    public void Dispose() => _stores.Dispose();

    private static SearchDefinition Def() =>
        SearchTestData.Definition([1.5, 3.0], seed: 5, configure: o => o with { Generations = 4, CandidatesPerGeneration = 6 });

    private static long NewStudy(StudyStore store, string name, double leaseSeconds)
    {
        var row = store.Create(name, StudyStore.SearchKind, Def().ToJson(), 0.05, null);
        store.PublishPackage(row.Id, "{\"fake\":true}", leaseSeconds);
        return row.Id;
    }

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void SearchWithThreeWorkersEqualsTheSingleProcessRunAndEvaluatesEachCandidateOnce(string kind)
    {
        var db = _stores.New(kind);
        var predictor = new LinearPredictor();
        var reference = new EvolutionarySearch(predictor, new SmoothEvaluator(), new FakeMeasurer(predictor)).Run(Def());

        var evaluators = new List<SmoothEvaluator>();
        using var stop = new CancellationTokenSource();
        var summaries = new WorkerSummary[3];
        var workers = Enumerable.Range(0, 3).Select(k => new Thread(() => summaries[k] =
            new StudyWorker(db, (_, _, spec) =>
            {
                Assert.Equal("{\"fake\":true}", spec);
                var e = new SmoothEvaluator();
                lock (evaluators) evaluators.Add(e);
                return e;
            }, new StudyWorkerOptions { Name = $"w{k}", PollMilliseconds = 20 }).Run(stop.Token))).ToArray();
        foreach (var w in workers) w.Start();
        SearchResult result;
        var local = new SmoothEvaluator();
        using (var store = StudyStore.Open(db))
        using (var queue = new CandidateQueue(store, "{\"fake\":true}", new CandidateQueueOptions { LeaseSeconds = 5, PollMilliseconds = 20, EvaluateLocally = false }))
            result = new EvolutionarySearch(predictor, local, new FakeMeasurer(predictor)) { Queue = queue }.Run(Def(), store, "q");
        stop.Cancel();
        foreach (var w in workers) w.Join();

        Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(result));
        Assert.Equal(0, local.Calls); // the coordinator only coordinated
        Assert.Equal(reference.Candidates.Count, summaries.Sum(s => s.Evaluated));
        var calls = evaluators.SelectMany(e => e.CallsPerArch).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Sum(kv => kv.Value));
        Assert.Equal(reference.Candidates.Select(c => c.Arch.ToString()).Order(), calls.Keys.Select(a => a.ToString()).Order());
        Assert.All(calls.Values, n => Assert.Equal(1, n));
        using (var store = StudyStore.Open(db))
        {
            Assert.Equal(result.Candidates, store.Candidates("q"));
            var status = Assert.Single(store.Status());
            Assert.Equal((reference.Candidates.Count, 0, 0, reference.Candidates.Count, 0), (status.Done, status.Queued, status.Running, status.Candidates, status.DeadLeases));
            Assert.Null(status.Coordinator); // released on dispose
        }

        // The coordinator evaluating alone (no workers) gives the same result again.
        using (var store = StudyStore.Open(db))
        using (var queue = new CandidateQueue(store, "{\"fake\":true}", new CandidateQueueOptions { LeaseSeconds = 5, PollMilliseconds = 20 }))
        {
            var alone = new SmoothEvaluator();
            var again = new EvolutionarySearch(predictor, alone, new FakeMeasurer(predictor)) { Queue = queue }.Run(Def(), store, "alone");
            Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(again));
            Assert.Equal(reference.Candidates.Count, alone.Calls);
        }
    }

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void AStaleLeaseGoesBackToTheQueueAndTheDeadWorkersResultIsRefused(string kind)
    {
        var db = _stores.New(kind);
        using var store = StudyStore.Open(db);
        long id = NewStudy(store, "s", leaseSeconds: 1.2);
        var arch = new Architecture(2, 64, 128);
        store.Enqueue(id, [(arch, 11), (new Architecture(1, 32, 64), 12)]);

        var dead = store.Claim("dead")!;
        Assert.Equal((arch, 11, 1, (string?)null), (dead.Arch, dead.Seed, dead.Attempt, dead.ReclaimedFrom));
        var other = store.Claim("alive")!;
        Assert.Equal(new Architecture(1, 32, 64), other.Arch); // the held one is not handed out twice
        Assert.Null(store.Claim("alive"));

        // The live worker heartbeats past the lease and keeps its candidate; the dead one does not.
        for (int i = 0; i < 6; i++) { Thread.Sleep(300); Assert.True(store.Heartbeat(other)); }
        var status = Assert.Single(store.Status());
        Assert.Equal((2, 1), (status.Running, status.DeadLeases));
        Assert.Equal("dead", Assert.Single(status.RunningEntries, e => e.HeartbeatAgeSeconds > 1.2).Worker);

        var taken = store.Claim("alive")!;
        Assert.Equal((arch, 2, "dead"), (taken.Arch, taken.Attempt, taken.ReclaimedFrom));
        Assert.False(store.Heartbeat(dead));
        Assert.False(store.Complete(dead, new CandidateResult(arch, 0.9, 1), 1, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow));
        Assert.True(store.Complete(taken, new CandidateResult(arch, 0.7, 1), 1, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow));
        Assert.False(store.Complete(taken, new CandidateResult(arch, 0.7, 1), 1, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow)); // once only

        var entry = store.QueueEntries(id).Single(e => e.Arch == arch);
        Assert.Equal((StudyStore.Done, 0.7, 2, "alive"), (entry.State, entry.Metric, entry.Attempts, entry.Worker));
        status = Assert.Single(store.Status());
        Assert.Equal((1, 1, 0, 1), (status.Done, status.Running, status.DeadLeases, status.Redone));

        // A clean stop puts the candidate back; enqueuing a done one again changes nothing.
        store.Release(other);
        store.Enqueue(id, [(arch, 11)]);
        status = Assert.Single(store.Status());
        Assert.Equal((1, 1, 0), (status.Done, status.Queued, status.Running));
    }

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void TwoCoordinatorsOnOneStudyAreRefusedUntilTheFirstOneIsGone(string kind)
    {
        var db = _stores.New(kind);
        var predictor = new LinearPredictor();
        using var store = StudyStore.Open(db);
        long id = NewStudy(store, "c", leaseSeconds: 2);
        using (var first = new CandidateQueue(store, "{}", new CandidateQueueOptions { LeaseSeconds = 2, Owner = "first" }))
        {
            first.Attach(id, "c");
            Thread.Sleep(2500); // longer than the lease: the first coordinator's heartbeat (every 0.5 s) keeps it
            using var other = StudyStore.Open(db);
            using var second = new CandidateQueue(other, "{}", new CandidateQueueOptions { LeaseSeconds = 2, Owner = "second" });
            var ex = Assert.Throws<UserInputException>(() =>
                new EvolutionarySearch(predictor, new SmoothEvaluator()) { Queue = second }.Resume(other, "c"));
            Assert.Contains("already has a coordinator (first", ex.Message);
            Assert.Contains("one coordinator per study", ex.Message);
        }
        // Released: another coordinator takes the study at once.
        using var third = new CandidateQueue(store, "{}", new CandidateQueueOptions { LeaseSeconds = 2, Owner = "third" });
        third.Attach(id, "c");
        Assert.Equal("third", store.Coordinator(id)!.Owner);
    }

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void ACoordinatorThatDiedWithoutReleasingIsReplacedAfterItsLease(string kind)
    {
        var db = _stores.New(kind);
        using var store = StudyStore.Open(db);
        long id = NewStudy(store, "d", leaseSeconds: 0.5);
        store.AcquireCoordinator(id, "d", "crashed", 0.5); // never heartbeats again
        Assert.Throws<UserInputException>(() => store.AcquireCoordinator(id, "d", "next", 0.5));
        Thread.Sleep(800);
        store.AcquireCoordinator(id, "d", "next", 0.5);
        Assert.Equal("next", store.Coordinator(id)!.Owner);
    }
}

