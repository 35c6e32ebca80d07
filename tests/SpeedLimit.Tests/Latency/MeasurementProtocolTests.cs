using SpeedLimit.Latency;

namespace SpeedLimit.Tests.Latency;

/// <summary>Virtual time shared by synthetic targets, so a drift can be injected at a moment of the session.</summary>
internal sealed class VirtualClock
{
    public double NowMs;
}

/// <summary>One synthetic model: draws a run time, scaled by the machine's speed factor at the current virtual time.</summary>
internal sealed class SyntheticTarget(Random random, Func<Random, double> draw, VirtualClock clock, Func<double, double>? factorAt = null) : ILatencyTarget
{
    public int Runs { get; private set; }

    public double RunMs()
    {
        double t = draw(random) * (factorAt?.Invoke(clock.NowMs) ?? 1);
        clock.NowMs += t;
        Runs++;
        return t;
    }
}

/// <summary>A bimodal latency like the VMs': 70 % in U(1.0, 1.1) ms, 30 % in U(1.5, 1.7) ms, with a known quantile function.</summary>
internal static class Bimodal
{
    public static double Draw(Random r) => r.NextDouble() < 0.7 ? 1.0 + 0.1 * r.NextDouble() : 1.5 + 0.2 * r.NextDouble();

    public static double Quantile(double q) => q <= 0.7 ? 1.0 + 0.1 * q / 0.7 : 1.5 + 0.2 * (q - 0.7) / 0.3;
}

public class MeasurementProtocolTests
{
    private static LatencyProtocol Tiny(int runs = 50, int round = 10) =>
        new("test", WarmupSeconds: 0, WarmupRuns: 3, MinSeconds: 0, MinRuns: runs, RoundRuns: round, Confidence: 0.95);

    [Fact]
    public void OrderStatisticRanksMatchTheBinomialAndTheTextbookMedianInterval()
    {
        // The classic 95 % interval for the median of 100 runs is (X₍₄₀₎, X₍₆₁₎).
        Assert.Equal((40, 61), QuantileInterval.Ranks(100, 0.5, 0.95));
        foreach (var (n, q) in new[] { (30, 0.5), (100, 0.9), (1000, 0.99), (368, 0.99), (5000, 0.9) })
        {
            var (l, u) = QuantileInterval.Ranks(n, q, 0.95);
            Assert.True(l >= 1 && u <= n, $"n {n}, q {q}: ranks ({l}, {u})");
            double coverage = QuantileInterval.Coverage(n, q, l, u);
            Assert.True(coverage >= 0.95 - 1e-12, $"n {n}, q {q}: coverage {coverage}");
            // Tight: a limit one rank further in would leave more than α/2 in its tail.
            var pmf = QuantileInterval.BinomialPmf(n, q);
            Assert.True(pmf.Take(l + 1).Sum() > 0.025, $"lower rank {l} could be {l + 1}");   // P(B ≤ l) > α/2
            Assert.True(pmf.Skip(u - 1).Sum() > 0.025, $"upper rank {u} could be {u - 1}");   // P(B ≥ u − 1) > α/2
        }
        // p99 needs ≥ 368 runs for a closed 95 % upper limit (0.99ⁿ ≤ 0.025).
        Assert.Equal(368, QuantileInterval.Ranks(367, 0.99, 0.95).Upper); // open: n + 1
        Assert.Equal(368, QuantileInterval.Ranks(368, 0.99, 0.95).Upper); // closed: the maximum
    }

    [Fact]
    public void IntervalCoversTheTrueQuantileOfABimodalLatencyAtTheStatedRate()
    {
        // 400 independent sessions (interleaved with a reference), p90 at 90 % confidence from 120 runs each.
        const int sessions = 400, runs = 120;
        var protocol = Tiny(runs, 20) with { Confidence = 0.90 };
        double truth = Bimodal.Quantile(0.9);
        int covered = 0;
        for (int seed = 0; seed < sessions; seed++)
        {
            var clock = new VirtualClock();
            var model = new SyntheticTarget(new Random(seed), Bimodal.Draw, clock);
            var reference = new SyntheticTarget(new Random(10_000 + seed), r => 0.5 + 0.01 * r.NextDouble(), clock);
            var session = InterleavedMeasurement.Run([model], reference, protocol);
            var p90 = session.Models[0].P90;
            Assert.Equal(runs, p90.Runs);
            if (p90.LowerMs <= truth && truth <= p90.UpperMs) covered++;
        }
        var (l, u) = QuantileInterval.Ranks(runs, 0.9, 0.90);
        double exact = QuantileInterval.Coverage(runs, 0.9, l, u); // ≥ 0.90 by construction
        double sd = Math.Sqrt(exact * (1 - exact) / sessions);
        double rate = covered / (double)sessions;
        Assert.True(exact >= 0.90);
        Assert.True(Math.Abs(rate - exact) <= 4 * sd, $"coverage {rate:P1} over {sessions} sessions; exact {exact:P1} ± {sd:P1}");
    }

    [Fact]
    public void InterleavingDetectsADriftInjectedMidMeasurementAndReMeasures()
    {
        // The machine keeps slowing down (speed ramps by half every 100 ms of virtual time): both attempts see it.
        var clock = new VirtualClock();
        Func<double, double> ramp = t => 1 + t / 200;
        var model = new SyntheticTarget(new Random(1), Bimodal.Draw, clock, ramp);
        var reference = new SyntheticTarget(new Random(2), r => 0.5 + 0.01 * r.NextDouble(), clock, ramp);
        var session = InterleavedMeasurement.Run([model], reference, Tiny(100, 10));
        Assert.True(session.Drift.Detected, $"drift {session.Drift.DriftPercent:0.0} %");
        Assert.True(session.Drift.DriftPercent > 20, $"drift {session.Drift.DriftPercent:0.0} %");
        Assert.Equal(2, session.Attempts); // re-measured once, then flagged

        // A transient slowdown (60–90 ms) is re-measured away: the second attempt is clean.
        clock = new VirtualClock();
        Func<double, double> transient = t => t is >= 60 and < 90 ? 1.4 : 1.0;
        model = new SyntheticTarget(new Random(1), Bimodal.Draw, clock, transient);
        reference = new SyntheticTarget(new Random(2), r => 0.5 + 0.01 * r.NextDouble(), clock, transient);
        session = InterleavedMeasurement.Run([model], reference, Tiny(100, 10));
        Assert.False(session.Drift.Detected);
        Assert.Equal(2, session.Attempts);
        Assert.True(session.Models[0].P50Ms < 1.1, $"p50 {session.Models[0].P50Ms} after re-measuring");

        // No drift: a stable bimodal machine is never flagged.
        for (int seed = 0; seed < 30; seed++)
        {
            clock = new VirtualClock();
            var a = new SyntheticTarget(new Random(seed), Bimodal.Draw, clock);
            var b = new SyntheticTarget(new Random(seed + 1), Bimodal.Draw, clock);
            var r = new SyntheticTarget(new Random(seed + 2), Bimodal.Draw, clock);
            var s = InterleavedMeasurement.Run([a, b], r, Tiny(100, 20));
            Assert.False(s.Drift.Detected, $"seed {seed}: drift {s.Drift.DriftPercent:0.0} %");
            Assert.Equal(1, s.Attempts);
        }
    }

    [Fact]
    public void SamplingStopsAtBothTheTimeAndTheCountAndInterleavesTheModels()
    {
        var clock = new VirtualClock();
        // Binary fractions, so the time sums are exact.
        var fast = new SyntheticTarget(new Random(1), _ => 0.125, clock); // time-limited
        var slow = new SyntheticTarget(new Random(2), _ => 8.0, clock);   // count-limited
        var reference = new SyntheticTarget(new Random(3), _ => 1.0, clock);
        var protocol = new LatencyProtocol("t", WarmupSeconds: 0.0625, WarmupRuns: 4, MinSeconds: 0.125, MinRuns: 20, RoundRuns: 10);
        var session = InterleavedMeasurement.Run([fast, slow], reference, protocol);
        Assert.Equal(1000, session.Models[0].Runs);  // 125 ms of 0.125 ms runs
        Assert.Equal(20, session.Models[1].Runs);    // 20 runs already take 160 ms
        Assert.Equal(500 + 1000, fast.Runs);         // warm-up by time: 62.5 ms of 0.125 ms runs
        Assert.Equal(8 + 20, slow.Runs);             // warm-up: 62.5 ms → 8 runs (> 4)
        Assert.Equal(1000, session.Reference.Runs);  // 10 reference runs in each of the 100 rounds
        Assert.Equal(0.125, session.Models[0].SampledSeconds, 12);
    }

    [Fact]
    public void VerdictsAtTheBoundary()
    {
        // 1,000 runs evenly spread over 1.000 … 1.999 ms: p90 ≈ 1.9 ms, 95 % interval ≈ [1.88, 1.92].
        var runs = Enumerable.Range(0, 1000).Select(i => 1.0 + i / 1000.0).ToArray();
        var record = RecordOf(runs);
        var p90 = record.Summary!.P90;
        Assert.True(p90.LowerMs < 1.9 && 1.9 < p90.UpperMs);
        Assert.Equal(BoundVerdict.Meets, new LatencyBound(p90.UpperMs!.Value, BoundStatistic.P90).Judge(record).Verdict);      // upper limit = bound: meets
        Assert.Equal(BoundVerdict.Uncertain, new LatencyBound(p90.UpperMs.Value - 1e-6, BoundStatistic.P90).Judge(record).Verdict);
        Assert.Equal(BoundVerdict.Uncertain, new LatencyBound(1.9, BoundStatistic.P90).Judge(record).Verdict);
        Assert.Equal(BoundVerdict.Uncertain, new LatencyBound(p90.LowerMs!.Value, BoundStatistic.P90).Judge(record).Verdict); // lower = bound: not above
        Assert.Equal(BoundVerdict.Fails, new LatencyBound(p90.LowerMs.Value - 1e-6, BoundStatistic.P90).Judge(record).Verdict);
        // The same record meets a 1.6 ms bound on p50 and fails it on p90 and p99.
        Assert.Equal(BoundVerdict.Meets, new LatencyBound(1.6, BoundStatistic.P50).Judge(record).Verdict);
        Assert.Equal(BoundVerdict.Fails, new LatencyBound(1.6, BoundStatistic.P90).Judge(record).Verdict);
        Assert.Equal(BoundVerdict.Fails, new LatencyBound(1.6, BoundStatistic.P99).Judge(record).Verdict);
        // 100 runs all far below the bound still cannot show a p99 is within it: the upper limit is open.
        var few = RecordOf(Enumerable.Range(0, 100).Select(i => 1.0 + i / 1e4).ToArray());
        var j = new LatencyBound(5, BoundStatistic.P99).Judge(few);
        Assert.Equal(BoundVerdict.Uncertain, j.Verdict);
        Assert.Null(j.UpperMs);
        Assert.Contains("open", j.Describe());
        // A record without a summary (older dataset) is judged on its point value, and says so.
        var legacy = new LatencyRecord(1, 96, 96, 12, Precision.Int8, 1, 128, 1.0, 1.2, 1.0, 0.9, 10, "cpu", 1, "1.31.1", DateTimeOffset.UnixEpoch);
        Assert.Equal(BoundVerdict.Meets, new LatencyBound(1.2, BoundStatistic.P90).Judge(legacy).Verdict);
        Assert.Equal(BoundVerdict.Fails, new LatencyBound(1.19, BoundStatistic.P90).Judge(legacy).Verdict);
        Assert.Contains("point value", new LatencyBound(1.2, BoundStatistic.P90).Judge(legacy).Describe());
        Assert.Throws<InvalidDataException>(() => new LatencyBound(1.2, BoundStatistic.P99).Judge(legacy));
        // By prediction: prediction·(1+margin) within the bound, ties included.
        Assert.True(new LatencyBound(1.1).MeetsPredicted(1.0, 0.1));
        Assert.False(new LatencyBound(1.0999).MeetsPredicted(1.0, 0.1));
        Assert.Throws<ArgumentException>(() => new LatencyBound(1).MeetsPredicted(1, -0.1));
        Assert.Throws<ArgumentException>(() => new LatencyBound(0));
    }

    [Fact]
    public void AnUncertainVerdictIsSampledLongerUntilDecidedOrTheLimit()
    {
        // True p90 of U(1, 2) is 1.9 ms; a 1.95 ms bound is uncertain after 50 runs and decided with more.
        var protocol = Tiny(50, 10) with { MaxRuns = 20_000, MaxSeconds = 1000 };
        var clock = new VirtualClock();
        var model = new SyntheticTarget(new Random(5), r => 1 + r.NextDouble(), clock);
        var reference = new SyntheticTarget(new Random(6), _ => 0.5, clock);
        var bound = new LatencyBound(1.95, BoundStatistic.P90);
        var session = InterleavedMeasurement.Run([model], reference, protocol, bound);
        Assert.True(session.Extended[0]);
        Assert.True(session.Models[0].Runs > 50);
        Assert.Equal(BoundVerdict.Meets, bound.Judge(session.Models[0].P90).Verdict);

        // At the limit the verdict can stay uncertain: a bound on the true p90 itself.
        clock = new VirtualClock();
        model = new SyntheticTarget(new Random(7), r => 1 + r.NextDouble(), clock);
        reference = new SyntheticTarget(new Random(8), _ => 0.5, clock);
        session = InterleavedMeasurement.Run([model], reference, protocol with { MaxRuns = 400 }, new LatencyBound(1.9, BoundStatistic.P90));
        Assert.InRange(session.Models[0].Runs, 400, 410);
        Assert.Equal(BoundVerdict.Uncertain, new LatencyBound(1.9, BoundStatistic.P90).Judge(session.Models[0].P90).Verdict);

        // Without a bound nothing is extended.
        session = InterleavedMeasurement.Run([new SyntheticTarget(new Random(9), r => 1 + r.NextDouble(), clock)], reference, protocol);
        Assert.False(session.Extended[0]);
        Assert.Equal(50, session.Models[0].Runs);
    }

    [Fact]
    public void ProtocolsParseWithOverridesAndRejectBadSettings()
    {
        Assert.Equal(LatencyProtocol.Screening, LatencyProtocol.Parse("screening"));
        var p = LatencyProtocol.Parse("verification:runs=2000,seconds=20");
        Assert.Equal(2000, p.MinRuns);
        Assert.Equal(20, p.MinSeconds);
        Assert.Equal("verification", p.Name);
        Assert.Contains("unknown latency protocol", Assert.Throws<UserInputException>(() => LatencyProtocol.Parse("fast")).Message);
        Assert.Contains("at least 10", Assert.Throws<UserInputException>(() => LatencyProtocol.Parse("screening:runs=3")).Message);
        Assert.Contains("key=number", Assert.Throws<UserInputException>(() => LatencyProtocol.Parse("screening:runs")).Message);
        Assert.True(LatencyProtocol.Screening.MinRuns >= 100 && LatencyProtocol.Screening.MinSeconds >= 1);
        Assert.True(LatencyProtocol.Verification.MinRuns >= 1000 && LatencyProtocol.Verification.MinSeconds >= 10);
        Assert.Equal(BoundStatistic.P50, LatencyBound.ParseStatistic("median"));
        Assert.Equal(BoundStatistic.P99, LatencyBound.ParseStatistic("P99"));
        Assert.Throws<UserInputException>(() => LatencyBound.ParseStatistic("p95"));
    }

    [Fact]
    public void FingerprintReadsIsaFlagsAndCoresAndComparesKnownFields()
    {
        const string cpuinfo = """
            processor	: 0
            model name	: Intel(R) Xeon(R) Processor
            physical id	: 0
            core id	: 0
            flags		: fpu sse2 avx avx2 fma avx512f avx512_vnni avx_vnni amx_int8 amx_tile

            processor	: 1
            model name	: Intel(R) Xeon(R) Processor
            physical id	: 0
            core id	: 1
            flags		: fpu sse2 avx avx2 fma avx512f avx512_vnni avx_vnni amx_int8 amx_tile
            """;
        var (model, isa, cores) = DeviceFingerprint.ParseCpuInfo(cpuinfo);
        Assert.Equal("Intel(R) Xeon(R) Processor", model);
        Assert.Equal("amx_int8 amx_tile avx avx2 avx512_vnni avx512f avx_vnni fma", isa);
        Assert.Equal(2, cores);

        var a = new DeviceFingerprint(model, 1, "1.31.1", isa, 2, 2, "Linux");
        var zen = a with { Isa = "avx avx2 avx512_vnni avx512f fma" };
        Assert.True(a.Matches(a with { }));
        Assert.Contains(a.Differences(zen), d => d.StartsWith("ISA", StringComparison.Ordinal));
        Assert.True(a.Matches(new DeviceFingerprint(model, 1, "1.31.1"))); // unknown fields of an older record are not compared
        Assert.NotEqual(a.Key(), zen.Key());
        var current = DeviceFingerprint.Current(1);
        Assert.False(string.IsNullOrWhiteSpace(current.CpuModel));
        Assert.True(current.LogicalProcessors >= 1);
    }

    internal static LatencyRecord RecordOf(double[] runs)
    {
        var s = LatencySummary.From(runs, 0.95);
        return new LatencyRecord(1, 96, 96, 12, Precision.Int8, 1, 128, s.P50Ms, s.P90Ms, s.TrimmedMeanMs, s.MinMs, s.Runs,
            "cpu", 1, "1.31.1", DateTimeOffset.UnixEpoch, "wall", s);
    }
}
