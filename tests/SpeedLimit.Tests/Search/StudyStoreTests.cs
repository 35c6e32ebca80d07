using Microsoft.Data.Sqlite;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

/// <summary>The study store's semantics, on both stores (a SQLite file, a PostgreSQL database) unless a test says otherwise.</summary>
[Collection("postgres")]
public sealed class StudyStoreTests(PostgresCluster cluster) : IDisposable
{
    private readonly StoreLocations _stores = new(cluster);

    public void Dispose() => _stores.Dispose();

    private static SearchDefinition Def() =>
        SearchTestData.Definition([1.5, 3.0], seed: 5, configure: o => o with { Generations = 4, CandidatesPerGeneration = 6 });

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void KilledSearchResumesWithoutReevaluatingAndEqualsAnUninterruptedRun(string kind)
    {
        var db = _stores.New(kind);
        var predictor = new LinearPredictor();
        var reference = new EvolutionarySearch(predictor, new SmoothEvaluator(), new FakeMeasurer(predictor)).Run(Def());
        Assert.True(reference.Candidates.Count > 12);

        // First process: crashes before its 8th evaluation (in the second bound's search or later).
        var first = new SmoothEvaluator(crashAfter: 7);
        using (var store = StudyStore.Open(db))
            Assert.Throws<SimulatedCrash>(() => new EvolutionarySearch(predictor, first, new FakeMeasurer(predictor)).Run(Def(), store, "s1"));
        Assert.Equal(7, first.Calls);

        // Second process: a fresh store handle, a counting evaluator, and a predictor that has since
        // changed (the stored narrowing must be used, not a new one).
        var second = new SmoothEvaluator();
        SearchResult resumed;
        using (var store = StudyStore.Open(db))
        {
            Assert.Equal(7, store.Candidates("s1").Count);
            resumed = new EvolutionarySearch(new LinearPredictor(scale: 0.5), second, new FakeMeasurer(predictor)).Resume(store, "s1", Def());
        }
        Assert.DoesNotContain(second.CallsPerArch.Keys, a => first.CallsPerArch.ContainsKey(a));
        Assert.Equal(reference.Candidates.Count, first.Calls + second.Calls);
        Assert.Equal(7, resumed.Timings.Reused - (resumed.Bounds.Sum(b => b.Visited.Count) - resumed.Candidates.Count));
        Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(resumed));
        Assert.Equal("s1", resumed.StudyName);

        // Resuming a finished study evaluates and measures nothing and gives the same result again.
        var third = new SmoothEvaluator();
        var thirdMeasurer = new FakeMeasurer(predictor);
        using (var store = StudyStore.Open(db))
        {
            var again = new EvolutionarySearch(predictor, third, thirdMeasurer).Resume(store, "s1");
            Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(again));
        }
        Assert.Equal(0, third.Calls);
        Assert.Empty(thirdMeasurer.Measured);
    }

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void CrashDuringVerificationKeepsFinishedMeasurements(string kind)
    {
        var db = _stores.New(kind);
        var predictor = new LinearPredictor();
        var factor = (Architecture a) => 1.0 + (a.Layers % 2) * 0.4; // odd layer counts measure 40% slow
        var reference = new EvolutionarySearch(predictor, new SmoothEvaluator(), new FakeMeasurer(predictor, factor)).Run(Def());
        int measurements = reference.Timings.Measurements;
        Assert.True(measurements >= 2);

        var crashing = new FakeMeasurer(predictor, factor, crashAfter: 1);
        using (var store = StudyStore.Open(db))
            Assert.Throws<SimulatedCrash>(() => new EvolutionarySearch(predictor, new SmoothEvaluator(), crashing).Run(Def(), store, "v"));
        var evaluator = new SmoothEvaluator();
        var measurer = new FakeMeasurer(predictor, factor);
        using (var store = StudyStore.Open(db))
        {
            var resumed = new EvolutionarySearch(predictor, evaluator, measurer).Resume(store, "v");
            Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(resumed));
        }
        Assert.Equal(0, evaluator.Calls);
        Assert.Equal(measurements - 1, measurer.Measured.Count);
        Assert.DoesNotContain(crashing.Measured[0], measurer.Measured);
    }

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void ResumeRefusesDifferentSettingsAndRunRefusesAnExistingName(string kind)
    {
        var db = _stores.New(kind);
        var predictor = new LinearPredictor();
        using var store = StudyStore.Open(db);
        new EvolutionarySearch(predictor, new SmoothEvaluator()).Run(Def(), store, "s");

        var changed = SearchTestData.Definition([1.5, 3.0], seed: 5, configure: o => o with { Generations = 5, CandidatesPerGeneration = 6 });
        var ex = Assert.Throws<UserInputException>(() => new EvolutionarySearch(predictor, new SmoothEvaluator()).Resume(store, "s", changed));
        Assert.Contains("different settings", ex.Message);
        Assert.Contains("options.generations: stored 4, now 5", ex.Message);

        ex = Assert.Throws<UserInputException>(() => new EvolutionarySearch(predictor, new SmoothEvaluator()).Run(Def(), store, "s"));
        Assert.Contains("already exists", ex.Message);
        ex = Assert.Throws<UserInputException>(() => new EvolutionarySearch(predictor, new SmoothEvaluator()).Resume(store, "nope"));
        Assert.Contains("does not exist", ex.Message);
        Assert.Contains("known studies: s", ex.Message);
        Assert.Equal(Def(), store.LoadSearchDefinition("s"));
        Assert.NotEqual(changed, store.LoadSearchDefinition("s"));

        // RunOrResume continues the existing study (nothing new to evaluate) and refuses other settings.
        var evaluator = new SmoothEvaluator();
        new EvolutionarySearch(predictor, evaluator).RunOrResume(Def(), store, "s");
        Assert.Equal(0, evaluator.Calls);
        Assert.Throws<UserInputException>(() => new EvolutionarySearch(predictor, evaluator).RunOrResume(changed, store, "s"));
        new EvolutionarySearch(predictor, evaluator).RunOrResume(changed, store, "s2");
        Assert.True(evaluator.Calls > 0);
    }

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void InfeasibleRunWritesNothingToTheStore(string kind)
    {
        var db = _stores.New(kind);
        using var store = StudyStore.Open(db);
        Assert.Throws<UserInputException>(() => new EvolutionarySearch(new LinearPredictor(), new SmoothEvaluator()).Run(SearchTestData.Definition([0.1]), store, "x"));
        Assert.False(store.Exists("x"));
        Assert.Empty(store.Studies());
    }

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void StoredCandidatesRoundTripExactly(string kind)
    {
        var db = _stores.New(kind);
        var predictor = new LinearPredictor();
        SearchResult result;
        using (var store = StudyStore.Open(db))
            result = new EvolutionarySearch(predictor, new SmoothEvaluator(), new FakeMeasurer(predictor)).Run(Def(), store, "rt");
        using (var store = StudyStore.Open(db))
        {
            var stored = store.Candidates("rt");
            Assert.Equal(result.Candidates, stored); // record equality: every field, doubles bit-exact
            var info = Assert.Single(store.Studies());
            Assert.Equal(("rt", StudyStore.SearchKind, result.Candidates.Count), (info.Name, info.Kind, info.Candidates));
        }
        if (kind != "sqlite") return;
        // WAL mode is on, so a killed writer leaves the last committed state.
        using var connection = new SqliteConnection($"Data Source={db};Pooling=False");
        connection.Open();
        using var cmd = connection.CreateCommand();
        cmd.CommandText = "PRAGMA journal_mode;";
        Assert.Equal("wal", cmd.ExecuteScalar());
    }

    [Fact]
    public void NotAStudyStoreIsAClearError()
    {
        var db = _stores.New("sqlite");
        File.WriteAllText(db, "this is not a database, just some text that is long enough to have a header ....................");
        var ex = Assert.Throws<InvalidDataException>(() => StudyStore.Open(db));
        Assert.Contains("not a usable study store", ex.Message);
    }

    [Theory]
    [MemberData(nameof(StoreKinds.All), MemberType = typeof(StoreKinds))]
    public void BaselinesAreEvaluatedOnceAndContinueFromTheStore(string kind)
    {
        var db = _stores.New(kind);
        var predictor = new LinearPredictor();
        var def = new BaselineDefinition("fake", SpeedLimit.Precision.Fp32,
            [new("tiny", new Architecture(1, 32, 64)), new("small", new Architecture(2, 64, 128)), new("medium", new Architecture(4, 128, 256))], 5, "fake budget");
        var first = new SmoothEvaluator(crashAfter: 2);
        using (var store = StudyStore.Open(db))
            Assert.Throws<SimulatedCrash>(() => new EvolutionarySearch(predictor, first, new FakeMeasurer(predictor)).EvaluateBaselines(def, store, "fp32 baselines"));
        var second = new SmoothEvaluator();
        var measurer = new FakeMeasurer(predictor);
        using (var store = StudyStore.Open(db))
        {
            var result = new EvolutionarySearch(predictor, second, measurer).EvaluateBaselines(def, store, "fp32 baselines");
            Assert.Equal(["tiny", "small", "medium"], result.Entries.Select(e => e.Name));
            Assert.All(result.Entries, e => Assert.NotNull(e.Candidate.MeasuredMs));
            Assert.Equal(SpeedLimit.Precision.Fp32, result.Precision);
            var medium = new Architecture(4, 128, 256);
            Assert.Equal(SmoothEvaluator.MetricOf(medium, EvolutionarySearch.CandidateSeed(5, medium)), result.Entries[2].Candidate.Metric);
            Assert.Equal("fp32 baselines", result.Label);
            var other = new BaselineDefinition("fake", SpeedLimit.Precision.Fp32, [new("tiny", new Architecture(1, 32, 64))], 5, "fake budget");
            var ex = Assert.Throws<UserInputException>(() => new EvolutionarySearch(predictor, second).EvaluateBaselines(other, store, "fp32 baselines"));
            Assert.Contains("different settings", ex.Message);
        }
        Assert.Equal([new Architecture(4, 128, 256)], second.CallsPerArch.Keys);
    }
}
