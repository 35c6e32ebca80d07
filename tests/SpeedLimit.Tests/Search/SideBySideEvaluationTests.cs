using System.Collections.Concurrent;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

/// <summary>
/// Candidates evaluated side by side (<see cref="ICandidateEvaluator.ConcurrentEvaluations"/> &gt; 1) leave the study
/// that evaluating them one at a time leaves: the same records in the same order, the same search result, each
/// candidate evaluated once, and after a failure only the candidates before it committed.
/// </summary>
public class SideBySideEvaluationTests
{
    private static SearchDefinition Def() =>
        SearchTestData.Definition([1.5, 3.0], seed: 5, configure: o => o with { Generations = 4, CandidatesPerGeneration = 6 });

    [Fact]
    public void ASearchWithCandidatesSideBySideEqualsTheOneAtATimeSearch()
    {
        var predictor = new LinearPredictor();
        var oneAtATime = new EvolutionarySearch(predictor, new SmoothEvaluator(), new FakeMeasurer(predictor)).Run(Def());
        var sideBySideEvaluator = new SideBySideEvaluator(2);
        var sideBySide = new EvolutionarySearch(predictor, sideBySideEvaluator, new FakeMeasurer(predictor)).Run(Def());

        Assert.Equal(SearchTestData.Fingerprint(oneAtATime), SearchTestData.Fingerprint(sideBySide));
        Assert.Equal(oneAtATime.Candidates.Select(c => (c.Arch, c.Order, c.Seed, c.Metric)), sideBySide.Candidates.Select(c => (c.Arch, c.Order, c.Seed, c.Metric)));
        Assert.All(sideBySideEvaluator.Calls.Values, n => Assert.Equal(1, n));
        Assert.Equal(2, sideBySideEvaluator.MaxInFlight); // they did run at the same time
    }

    [Fact]
    public void ABatchWithRepeatsAndCachedCandidatesGivesTheOneAtATimeRecordsAndFlags()
    {
        Architecture a = new(1, 32, 64), b = new(2, 32, 64), c = new(2, 64, 128), d = new(1, 64, 64);
        (Architecture, double?)[] batch = [(a, 1.0), (b, 2.0), (a, 1.0), (c, 3.0), (d, null)];
        var sequential = new CandidateBook(null, 0, "task", Precision.Int8, "budget", seed: 5);
        var sideBySide = new CandidateBook(null, 0, "task", Precision.Int8, "budget", seed: 5);
        sequential.Evaluate(b, 2.0, new SmoothEvaluator(), CancellationToken.None, out _); // b is known before the batch
        sideBySide.Evaluate(b, 2.0, new SmoothEvaluator(), CancellationToken.None, out _);

        var expected = sequential.EvaluateMany(batch, new SmoothEvaluator(), CancellationToken.None);
        var actual = sideBySide.EvaluateMany(batch, new SideBySideEvaluator(3), CancellationToken.None);

        Assert.Equal(expected.Select(r => (r.Record.Arch, r.Record.Order, r.Record.Seed, r.Record.Metric, r.Record.PredictedMs, r.Reused)),
            actual.Select(r => (r.Record.Arch, r.Record.Order, r.Record.Seed, r.Record.Metric, r.Record.PredictedMs, r.Reused)));
        Assert.Equal(sequential.Reused, sideBySide.Reused);
        Assert.Equal(sequential.Evaluations, sideBySide.Evaluations);
    }

    [Fact]
    public void AFailureCommitsTheCandidatesBeforeItAndRethrows()
    {
        Architecture[] archs = [new(1, 32, 64), new(2, 32, 64), new(2, 64, 128), new(1, 64, 64), new(2, 64, 64)];
        var book = new CandidateBook(null, 0, "task", Precision.Int8, "budget", seed: 5);
        var evaluator = new SideBySideEvaluator(2, failOn: archs[2]);

        var error = Assert.Throws<SimulatedCrash>(() => book.EvaluateMany(archs.Select(x => (x, (double?)null)).ToList(), evaluator, CancellationToken.None));

        Assert.Contains(archs[2].ToString(), error.Message);
        Assert.Equal(2, book.Count);
        Assert.True(book.TryGet(archs[0], out _) && book.TryGet(archs[1], out _));
        Assert.False(book.TryGet(archs[3], out _));
        Assert.False(book.TryGet(archs[4], out _));
    }

    [Fact]
    public void CancellingABatchThrowsAndKeepsACommittedPrefix()
    {
        var archs = new SearchSpace(new(1, 2, 1), new(32, 64, 32), new(64, 128, 64), 2).Enumerate().ToList();
        var book = new CandidateBook(null, 0, "task", Precision.Int8, "budget", seed: 5);
        using var cancel = new CancellationTokenSource();
        var evaluator = new SideBySideEvaluator(2, onEvaluated: n => { if (n == 2) cancel.Cancel(); });

        Assert.ThrowsAny<OperationCanceledException>(() => book.EvaluateMany(archs.Select(x => (x, (double?)null)).ToList(), evaluator, cancel.Token));

        Assert.InRange(book.Count, 0, archs.Count - 1);
        for (int i = 0; i < archs.Count; i++) Assert.Equal(i < book.Count, book.TryGet(archs[i], out _)); // a prefix of the batch
    }
}

/// <summary>A thread-safe <see cref="SmoothEvaluator"/> that allows several evaluations at once and records how many overlapped.</summary>
internal sealed class SideBySideEvaluator(int concurrent, Architecture? failOn = null, Action<int>? onEvaluated = null) : ICandidateEvaluator
{
    private int _inFlight, _maxInFlight, _evaluated;

    public int ConcurrentEvaluations => concurrent;
    public int MaxInFlight => Volatile.Read(ref _maxInFlight);
    public ConcurrentDictionary<Architecture, int> Calls { get; } = new();

    public CandidateResult Evaluate(Architecture arch, int seed, CancellationToken cancellation)
    {
        int now = Interlocked.Increment(ref _inFlight);
        for (int seen = Volatile.Read(ref _maxInFlight); now > seen; seen = Volatile.Read(ref _maxInFlight))
            if (Interlocked.CompareExchange(ref _maxInFlight, now, seen) == seen) break;
        try
        {
            Thread.Sleep(15); // long enough for the other threads' candidates to start meanwhile
            cancellation.ThrowIfCancellationRequested();
            if (arch == failOn) throw new SimulatedCrash($"simulated failure evaluating {arch}");
            Calls.AddOrUpdate(arch, 1, (_, n) => n + 1);
            onEvaluated?.Invoke(Interlocked.Increment(ref _evaluated));
            return new CandidateResult(arch, SmoothEvaluator.MetricOf(arch, seed), 0.01);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }
}
