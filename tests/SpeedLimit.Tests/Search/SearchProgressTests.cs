using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

public class SearchProgressTests
{
    [Fact]
    public void ProgressCountsEverySlotAndEndsDone()
    {
        var predictor = new LinearPredictor();
        var log = new ProgressLog();
        var def = SearchTestData.Definition([0.46, 2.0], configure: o => o with { Generations = 3, CandidatesPerGeneration = 5 });
        var result = new EvolutionarySearch(predictor, new SmoothEvaluator(), new FakeMeasurer(predictor)) { Progress = log }.Run(def);

        Assert.Equal(SearchPhase.Narrowing, log.Reports[0].Phase);
        Assert.Equal(SearchPhase.Done, log.Reports[^1].Phase);
        var searching = log.Reports.Where(r => r.Phase == SearchPhase.Searching).ToList();
        int visits = result.Bounds.Sum(b => b.Visited.Count);
        Assert.Equal(visits, searching.Count);
        Assert.Equal(Enumerable.Range(1, visits), searching.Select(r => r.Completed));
        Assert.All(searching, r => Assert.Equal(visits, r.Total)); // planned = Σ min(S·T, |A*|): 0.46 ms has only 3
        Assert.Equal(result.Candidates.Max(c => c.Metric), searching[^1].BestMetric);
        Assert.All(searching.Skip(1), r => Assert.NotNull(r.EstimatedRemaining));
        Assert.Equal(result.Timings.Measurements, log.Reports.Count(r => r.Phase == SearchPhase.Verifying));
    }

    [Fact]
    public void CancelledSearchResumesToTheSameResult()
    {
        var predictor = new LinearPredictor();
        var def = SearchTestData.Definition([1.5, 3.0], seed: 9);
        var reference = new EvolutionarySearch(predictor, new SmoothEvaluator()).Run(def);
        var db = SearchTestData.TempPath("cancel.db");
        try
        {
            using var store = StudyStore.Open(db);
            using var cts = new CancellationTokenSource();
            var cancelling = new CancellingEvaluator(cts, cancelAfter: 5);
            Assert.ThrowsAny<OperationCanceledException>(() => new EvolutionarySearch(predictor, cancelling).Run(def, store, "c", cts.Token));
            Assert.Equal(5, cancelling.Calls);
            var evaluator = new SmoothEvaluator();
            var resumed = new EvolutionarySearch(predictor, evaluator).Resume(store, "c");
            Assert.Equal(reference.Candidates.Count - 5, evaluator.Calls);
            Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(resumed));
        }
        finally
        {
            foreach (var suffix in new[] { "", "-wal", "-shm" })
                if (File.Exists(db + suffix)) File.Delete(db + suffix);
        }
    }
}
