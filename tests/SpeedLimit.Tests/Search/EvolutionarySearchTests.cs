using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

public class EvolutionarySearchTests
{
    [Fact]
    public void FindsTheExactOptimumWhenTheBudgetCoversTheNarrowedSpace()
    {
        var predictor = new LinearPredictor();
        var def = SearchTestData.Definition([1.0], configure: o => o with { Generations = 10, CandidatesPerGeneration = 10 });
        var (best, bestMetric, count) = SearchTestData.Optimum(def, predictor, 1.0);
        Assert.InRange(count, 2, 99); // the budget (100) covers A*, so the search must see all of it

        var result = new EvolutionarySearch(predictor, new SmoothEvaluator()).Run(def);
        var bound = Assert.Single(result.Bounds);
        Assert.Equal(count, bound.NarrowedCount);
        Assert.True(bound.Exhausted);
        Assert.Equal(count, bound.Visited.Count);
        Assert.Equal(best, bound.Winner!.Arch);
        Assert.Equal(bestMetric, bound.Winner.Metric);
    }

    [Fact]
    public void GetsCloseToTheOptimumWithAPartialBudget()
    {
        // 40 evaluations out of a narrowed space of ~150: the evolution must beat picking 40 at random
        // on average and land close to the optimum on every seed.
        var predictor = new LinearPredictor();
        const double boundMs = 3.0;
        double totalGap = 0, totalRandomGap = 0;
        for (int seed = 1; seed <= 6; seed++)
        {
            var def = SearchTestData.Definition([boundMs], seed, o => o with { Generations = 5, CandidatesPerGeneration = 8, Parents = 3, MutationProbability = 0.7 });
            var (_, bestMetric, count) = SearchTestData.Optimum(def, predictor, boundMs);
            Assert.True(count > 100, $"narrowed space has {count} architectures; the test wants a budget well below it");
            var result = new EvolutionarySearch(predictor, new SmoothEvaluator()).Run(def);
            var gap = bestMetric - result.Bounds[0].Winner!.Metric;
            Assert.InRange(gap, 0, 0.01);
            totalGap += gap;

            // Random search with the same budget and seed, as the reference.
            var inside = def.Space.Enumerate().Where(a => predictor.PredictMs(a) * (1 + predictor.RelativeMargin) <= boundMs).ToList();
            var rng = new Random(seed);
            var picked = inside.OrderBy(_ => rng.Next()).Take(40);
            totalRandomGap += bestMetric - picked.Max(a => SmoothEvaluator.MetricOf(a, EvolutionarySearch.CandidateSeed(seed, a)));
        }
        Assert.True(totalGap < totalRandomGap, $"evolution mean gap {totalGap / 6:F4} is not below random search's {totalRandomGap / 6:F4}");
    }

    [Fact]
    public void SeveralBoundsShareOneCacheEvaluateEachArchitectureOnceAndStayInsideTheirBound()
    {
        var predictor = new LinearPredictor(margin: 0.1);
        var evaluator = new SmoothEvaluator();
        var def = SearchTestData.Definition([2.5, 1.2, 1.8], configure: o => o with { Generations = 5, CandidatesPerGeneration = 8, MutationProbability = 0.8 });
        var result = new EvolutionarySearch(predictor, evaluator).Run(def);

        Assert.Equal([1.2, 1.8, 2.5], result.Bounds.Select(b => b.BoundMs));
        Assert.All(evaluator.CallsPerArch, kv => Assert.Equal(1, kv.Value));
        Assert.Equal(result.Candidates.Count, evaluator.Calls);
        Assert.Equal(result.Candidates.Count, result.Candidates.Select(c => c.Arch).Distinct().Count());
        // Visits of later bounds hit the cache when they land on an architecture seen before.
        int visits = result.Bounds.Sum(b => b.Visited.Count);
        Assert.Equal(visits - result.Candidates.Count, result.Timings.Reused);
        foreach (var b in result.Bounds)
        {
            Assert.Equal(b.Visited.Count, b.Visited.Distinct().Count());
            Assert.All(b.Visited, a => Assert.True(predictor.PredictMs(a) * 1.1 <= b.BoundMs, $"{a} is outside A* of {b.BoundMs} ms"));
            var ranked = b.Ranked.Select(a => result.Candidates.Single(c => c.Arch == a)).ToList();
            Assert.All(ranked, c => Assert.True(c.PredictedMs * 1.1 <= b.BoundMs));
            Assert.Equal(result.Candidates.Count(c => c.PredictedMs * 1.1 <= b.BoundMs), ranked.Count);
            Assert.Equal(ranked.OrderByDescending(c => c.Metric).Select(c => c.Arch), b.Ranked);
            Assert.Equal(ranked[0], b.Winner);
            Assert.Equal(b.Visited.Count, b.Generations.Sum(g => g.Candidates));
            Assert.All(b.Generations, g => Assert.Equal(g.Candidates, g.Mutations + g.FreshSamples));
        }
        // Front: sorted by latency, strictly improving metric, and nothing outside it dominates a member.
        for (int i = 1; i < result.Front.Count; i++)
        {
            Assert.True(result.Front[i].PredictedMs > result.Front[i - 1].PredictedMs);
            Assert.True(result.Front[i].Metric > result.Front[i - 1].Metric);
        }
        foreach (var f in result.Front)
            Assert.DoesNotContain(result.Candidates, c => c.PredictedMs <= f.PredictedMs && c.Metric > f.Metric);
        foreach (var c in result.Candidates.Except(result.Front))
            Assert.Contains(result.Candidates, d => d.PredictedMs <= c.PredictedMs && d.Metric >= c.Metric && d != c);
    }

    [Fact]
    public void MutationsMoveParentsByBoundedSteps()
    {
        var predictor = new LinearPredictor();
        var def = SearchTestData.Definition([3.5], configure: o => o with { Generations = 6, CandidatesPerGeneration = 6, Parents = 2, MutationProbability = 1.0 });
        var result = new EvolutionarySearch(predictor, new SmoothEvaluator()).Run(def);
        var b = result.Bounds[0];
        var metric = result.Candidates.ToDictionary(c => c.Arch, c => c.Metric);
        var space = def.Space;
        int start = 0, checkedMoves = 0;
        foreach (var g in b.Generations)
        {
            var members = b.Visited.Skip(start).Take(g.Candidates).ToList();
            if (g.Generation > 1)
            {
                Assert.Equal(0, g.FreshSamples - g.MutationFallbacks); // p_m = 1: fresh samples only as fallbacks
                var parents = b.Visited.Take(start).OrderByDescending(a => metric[a]).ThenBy(a => predictor.PredictMs(a)).Take(2).ToList();
                if (g.MutationFallbacks == 0)
                    foreach (var m in members)
                    {
                        Assert.Contains(parents, p =>
                            Math.Abs(m.Layers - p.Layers) <= 1 &&
                            Math.Abs(m.Hidden - p.Hidden) <= space.Hidden.Step &&
                            Math.Abs(m.Ffn - p.Ffn) <= 2 * space.Ffn.Step && m != p);
                        checkedMoves++;
                    }
            }
            start += g.Candidates;
        }
        Assert.True(checkedMoves >= 6, $"only {checkedMoves} mutations were checked");
    }

    [Fact]
    public void InfeasibleBoundFailsBeforeEvaluatingAndNamesTheFastestArchitecture()
    {
        var predictor = new LinearPredictor(margin: 0.1);
        var evaluator = new SmoothEvaluator();
        var def = SearchTestData.Definition([0.3, 2.0]);
        var ex = Assert.Throws<UserInputException>(() => new EvolutionarySearch(predictor, evaluator).Run(def));
        Assert.Contains("0.3 ms cannot be met", ex.Message);
        Assert.Contains(SearchSpace.Demo.Smallest.ToString(), ex.Message);
        Assert.Contains("raise the bound to at least 0.431", ex.Message); // (1,32,32): 0.392 ms × 1.1
        Assert.Equal(0, evaluator.Calls);
    }

    [Fact]
    public void TinyNarrowedSpaceIsExhaustedAndTheSearchStops()
    {
        var predictor = new LinearPredictor(margin: 0);
        // Only (1,32,32), (1,32,64) and (1,48,32) are within 0.46 ms.
        var def = SearchTestData.Definition([0.46], configure: o => o with { Generations = 50, CandidatesPerGeneration = 20, MutationProbability = 0.9 });
        var evaluator = new SmoothEvaluator();
        var result = new EvolutionarySearch(predictor, evaluator).Run(def);
        var b = result.Bounds[0];
        Assert.Equal(3, b.NarrowedCount);
        Assert.True(b.Exhausted);
        Assert.Equal(3, b.Visited.Count);
        Assert.Equal(3, evaluator.Calls);
        Assert.Single(b.Generations);
    }

    [Fact]
    public void SameSeedSameResultOtherSeedOtherPath()
    {
        var predictor = new LinearPredictor();
        var a = new EvolutionarySearch(predictor, new SmoothEvaluator(), new FakeMeasurer(predictor)).Run(SearchTestData.Definition([1.5, 3.0], seed: 11));
        var b = new EvolutionarySearch(predictor, new SmoothEvaluator(), new FakeMeasurer(predictor)).Run(SearchTestData.Definition([1.5, 3.0], seed: 11));
        var c = new EvolutionarySearch(predictor, new SmoothEvaluator(), new FakeMeasurer(predictor)).Run(SearchTestData.Definition([1.5, 3.0], seed: 12));
        Assert.Equal(SearchTestData.Fingerprint(a), SearchTestData.Fingerprint(b));
        Assert.NotEqual(a.Bounds[1].Visited, c.Bounds[1].Visited);
        // A bound's path depends on the seed and its own value only, not on the other bounds.
        var alone = new EvolutionarySearch(predictor, new SmoothEvaluator()).Run(SearchTestData.Definition([3.0], seed: 11));
        Assert.Equal(a.Bounds[1].Visited, alone.Bounds[0].Visited);
    }

    [Fact]
    public void VerificationFallsBackWhenTheWinnerMeasuresOverTheBound()
    {
        var predictor = new LinearPredictor();
        var def = SearchTestData.Definition([2.0], configure: o => o with { MaxVerifications = 3 });
        var plain = new EvolutionarySearch(predictor, new SmoothEvaluator()).Run(def);
        var top = plain.Bounds[0].Ranked[0];
        var second = plain.Bounds[0].Ranked[1];
        Assert.False(plain.Bounds[0].Verified);
        Assert.Contains("no latency measurer", plain.Bounds[0].Note);

        // The measured latency of the predicted best is 30% over its prediction: over the bound.
        var fed = new List<SpeedLimit.Latency.LatencyRecord>();
        var measurer = new FakeMeasurer(predictor, a => a == top ? 1.3 : 1.0);
        var search = new EvolutionarySearch(predictor, new SmoothEvaluator(), measurer) { OnMeasured = fed.Add };
        var b = search.Run(def).Bounds[0];
        Assert.True(b.Verified);
        Assert.Equal(1, b.WinnerRank);
        Assert.Equal(second, b.Winner!.Arch);
        Assert.True(b.Winner.MeasuredMs <= 2.0);
        Assert.Contains("fell back", b.Note);
        Assert.Contains(top.ToString(), b.Note);
        Assert.Equal([top, second], measurer.Measured);
        Assert.Equal(measurer.Measured, fed.Select(r => r.Arch));

        // Every candidate measures far over: no verified winner, a clear note, bounded measurements.
        var hopeless = new FakeMeasurer(predictor, _ => 5.0);
        var none = new EvolutionarySearch(predictor, new SmoothEvaluator(), hopeless).Run(def).Bounds[0];
        Assert.Null(none.Winner);
        Assert.False(none.Verified);
        Assert.Contains("none of the 3 best candidates met p90 ≤ 2 ms", none.Note);
        Assert.Equal(3, hopeless.Measured.Count);
    }

    [Fact]
    public void AMeasurementTakenForATighterBoundServesALooserOneBeyondTheLimit()
    {
        var predictor = new LinearPredictor();
        var def = SearchTestData.Definition([2.0, 3.0], configure: o => o with { MaxVerifications = 1 });
        var plain = new EvolutionarySearch(predictor, new SmoothEvaluator()).Run(def);
        var tight = plain.Bounds[0].Ranked;
        var loose = plain.Bounds[1].Ranked;
        Assert.DoesNotContain(loose[0], tight); // the loose bound's favourite is outside the tight A*

        // Everything only the loose bound may pick measures 3× its prediction.
        var slow = loose.Except(tight).ToHashSet();
        var measurer = new FakeMeasurer(predictor, a => slow.Contains(a) ? 3.0 : 1.0);
        var result = new EvolutionarySearch(predictor, new SmoothEvaluator(), measurer).Run(def);
        Assert.Equal(tight[0], result.Bounds[0].Winner!.Arch);
        Assert.True(result.Bounds[1].Verified, result.Bounds[1].Note);
        Assert.Equal(tight[0], result.Bounds[1].Winner!.Arch);
        Assert.Equal(loose.ToList().IndexOf(tight[0]), result.Bounds[1].WinnerRank);
        Assert.Contains("fell back", result.Bounds[1].Note);
        Assert.Equal([tight[0], loose[0]], measurer.Measured); // one new measurement per bound
    }

    [Fact]
    public void SharedMeasurementsAreNotRepeatedAcrossBounds()
    {
        var predictor = new LinearPredictor();
        var measurer = new FakeMeasurer(predictor);
        var result = new EvolutionarySearch(predictor, new SmoothEvaluator(), measurer).Run(SearchTestData.Definition([2.0, 2.1, 2.2]));
        Assert.Equal(measurer.Measured.Count, measurer.Measured.Distinct().Count());
        Assert.All(result.Bounds, b => Assert.True(b.Verified));
        Assert.Equal(result.Candidates.Count(c => c.MeasuredMs is not null), measurer.Measured.Count);
        Assert.NotEmpty(result.MeasuredFront);
    }

    [Fact]
    public void BadOptionsAndDefinitionsAreRejectedWithTheSettingNamed()
    {
        var ex = Assert.Throws<ArgumentException>(() => SearchTestData.Definition([1.0], configure: o => o with { MutationProbability = 1.5 }));
        Assert.Contains("MutationProbability", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => SearchTestData.Definition([1.0], configure: o => o with { CandidatesPerGeneration = 0 }));
        Assert.Contains("CandidatesPerGeneration", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => SearchTestData.Definition([-1.0]));
        Assert.Contains("positive", ex.Message);
        var huge = Assert.Throws<UserInputException>(() =>
            new EvolutionarySearch(new LinearPredictor(), new SmoothEvaluator()).Run(SearchTestData.Definition([1.0], configure: o => o with { MaxEnumeratedArchitectures = 100 })));
        Assert.Contains("MaxEnumeratedArchitectures", huge.Message);
    }

    [Fact]
    public void BatchPredictorsNarrowTheSpaceInOneCall()
    {
        var batch = new BatchOnlyPredictor();
        var def = SearchTestData.Definition([1.5, 3.0]);
        var result = new EvolutionarySearch(batch, new SmoothEvaluator()).Run(def);
        var reference = new EvolutionarySearch(new LinearPredictor(), new SmoothEvaluator()).Run(def);
        Assert.Equal(1, batch.BatchCalls);
        Assert.Equal(SearchTestData.Fingerprint(reference), SearchTestData.Fingerprint(result));
    }

    [Fact]
    public void CandidateSeedsAreStableAndDistinct()
    {
        var seeds = SearchSpace.Demo.Enumerate().Select(a => EvolutionarySearch.CandidateSeed(3, a)).ToList();
        Assert.Equal(seeds.Count, seeds.Distinct().Count());
        Assert.Equal(EvolutionarySearch.CandidateSeed(3, new Architecture(2, 64, 128)), EvolutionarySearch.CandidateSeed(3, new Architecture(2, 64, 128)));
        Assert.NotEqual(EvolutionarySearch.CandidateSeed(3, new Architecture(2, 64, 128)), EvolutionarySearch.CandidateSeed(4, new Architecture(2, 64, 128)));
    }
}
