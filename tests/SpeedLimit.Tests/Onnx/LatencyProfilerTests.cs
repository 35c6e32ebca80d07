using SpeedLimit.Latency;
using SpeedLimit.Model;

namespace SpeedLimit.Tests.Onnx;

public class LatencyProfilerTests
{
    private static LatencyProfilerOptions Tiny() => new()
    {
        Heads = 2, VocabSize = 1100, SequenceLength = 8,
        Protocol = new LatencyProtocol("test", WarmupSeconds: 0, WarmupRuns: 2, MinSeconds: 0, MinRuns: 10, RoundRuns: 5),
    };

    [Fact]
    public void Summary_HoldsTheOrderStatisticsOfTheRuns()
    {
        double[] t = [5, 1, 4, 2, 3, 10, 6, 7, 8, 9];
        var s = LatencySummary.From(t, 0.9);
        Assert.Equal(5, s.P50Ms);   // nearest rank ⌈0.5·10⌉ = 5th
        Assert.Equal(9, s.P90Ms);
        Assert.Equal(10, s.P99Ms);
        Assert.Equal(1, s.P10Ms);
        Assert.Equal(1, s.MinMs);
        Assert.Equal(10, s.MaxMs);
        Assert.Equal(5.5, s.TrimmedMeanMs); // drops 1 and 10
        Assert.Equal(10, s.Runs);
        Assert.Equal(0.055, s.SampledSeconds, 12);
    }

    [Fact]
    public void ProfileAll_AppendsRecordsAndSkipsThemOnRerun()
    {
        var path = Path.Combine(Path.GetTempPath(), $"speedlimit-latency-{Guid.NewGuid():N}.jsonl");
        try
        {
            var profiler = new LatencyProfiler(Tiny());
            Architecture[] archs = [new(1, 12, 16), new(2, 12, 24)];
            var first = profiler.ProfileAll(archs, [Precision.Fp32, Precision.Int8], path);
            Assert.Equal(4, first.Count);
            var loaded = LatencyDataset.Load(path);
            Assert.Equal(4, loaded.Count);
            Assert.All(loaded, r =>
            {
                Assert.True(r.MinMs > 0 && r.MinMs <= r.MedianMs && r.MedianMs <= r.P90Ms);
                Assert.Equal(10, r.Runs);
                Assert.NotNull(r.Summary);
                Assert.NotNull(r.Fingerprint);
                Assert.StartsWith("test:", r.Protocol!.Protocol);
                Assert.True(r.Protocol.ReferenceP50Ms > 0);
                Assert.Equal(1, r.Threads);
                Assert.False(string.IsNullOrWhiteSpace(r.CpuModel));
                Assert.Matches(@"^\d+\.\d+", r.RuntimeVersion);
            });
            Assert.Empty(profiler.ProfileAll(archs, [Precision.Fp32, Precision.Int8], path));
            // A new thread count is a new experiment.
            var twoThreads = Tiny();
            twoThreads.Threads = 2;
            Assert.Single(new LatencyProfiler(twoThreads).ProfileAll([archs[0]], [Precision.Int8], path));
            Assert.Equal(5, LatencyDataset.Load(path).Count);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Profile_RejectsBadOptions()
    {
        var options = Tiny();
        options.Protocol = options.Protocol with { MinRuns = 3 };
        Assert.Contains("at least 10", Assert.Throws<ArgumentException>(() => new LatencyProfiler(options).Profile(new(1, 12, 16), Precision.Fp32)).Message);
        var cpuClockTwoThreads = Tiny();
        cpuClockTwoThreads.Clock = LatencyClock.ThreadCpu;
        cpuClockTwoThreads.Threads = 2;
        Assert.Contains("--threads 1", Assert.Throws<ArgumentException>(() => new LatencyProfiler(cpuClockTwoThreads).Profile(new(1, 12, 16), Precision.Fp32)).Message);
    }

    [Fact]
    public void ThreadCpuClock_CountsComputeButNotSleep()
    {
        if (!LatencyProfilerClock.ThreadCpuSupported) return; // Linux only; the wall clock is used elsewhere
        // A kernel that accounts CPU time by ticks may charge one tick (10 ms at 100 Hz) to a thread that woke in it, so
        // the sleep is long enough for that to stay well under the wall time a wrong clock would report.
        double sleeping = LatencyProfilerClock.TimeMs(() => Thread.Sleep(100), LatencyClock.ThreadCpu);
        Assert.True(sleeping < 40, $"a 100 ms sleep took {sleeping} ms of thread CPU time");
        double busy = LatencyProfilerClock.TimeMs(() =>
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            double x = 0;
            while (sw.ElapsedMilliseconds < 20) x += Math.Sqrt(x + 1);
            GC.KeepAlive(x);
        }, LatencyClock.ThreadCpu);
        Assert.True(busy > 0.5, $"20 ms of spinning measured {busy} ms of thread CPU time");
    }

    [Fact]
    public void ProfileAll_KeysOnTheClock()
    {
        if (!LatencyProfilerClock.ThreadCpuSupported) return;
        var path = Path.Combine(Path.GetTempPath(), $"speedlimit-latency-{Guid.NewGuid():N}.jsonl");
        try
        {
            Assert.Single(new LatencyProfiler(Tiny()).ProfileAll([new(1, 12, 16)], [Precision.Int8], path));
            var cpu = Tiny();
            cpu.Clock = LatencyClock.ThreadCpu;
            var added = new LatencyProfiler(cpu).ProfileAll([new(1, 12, 16)], [Precision.Int8], path);
            Assert.Equal("thread-cpu", Assert.Single(added).Clock);
            Assert.Equal(["wall", "thread-cpu"], LatencyDataset.Load(path).Select(r => r.Clock));
            Assert.Throws<UserInputException>(() => LatencyProfilerFigure4.Analyze(LatencyDataset.Load(path), sequenceLength: 8));
        }
        finally { File.Delete(path); }
    }

    private static LatencyRecord Record(Architecture a, Precision p, double ms) =>
        new(a.Layers, a.Hidden, a.Ffn, 12, p, 1, 128, ms, ms * 1.1, ms, ms * 0.9, 10, "cpu", 1, "1.31.1", DateTimeOffset.UnixEpoch);

    [Fact]
    public void Figure4_FitsTheLineAndFindsContrastingPairs()
    {
        // fp32 = 1.5·int8 + 2 exactly, plus one pair with equal fp32 latency and int8 latencies 6 vs 10 ms.
        var records = new List<LatencyRecord>();
        for (int i = 1; i <= 6; i++)
        {
            var a = new Architecture(i % 5 + 1, 120 + 12 * i, 128);
            records.Add(Record(a, Precision.Int8, 2 * i));
            records.Add(Record(a, Precision.Fp32, 1.5 * 2 * i + 2));
        }
        var result = LatencyProfilerFigure4.Analyze(records);
        Assert.Equal(1.5, result.Slope, 9);
        Assert.Equal(2.0, result.InterceptMs, 9);
        Assert.Equal(1.0, result.RSquared, 9);
        Assert.Empty(result.Contrasts);

        var a1 = new Architecture(1, 528, 1016);
        var a2 = new Architecture(5, 120, 128);
        records.AddRange([Record(a1, Precision.Int8, 6), Record(a1, Precision.Fp32, 12), Record(a2, Precision.Int8, 10), Record(a2, Precision.Fp32, 12.1)]);
        result = LatencyProfilerFigure4.Analyze(records);
        var c = Assert.Single(result.Contrasts);
        Assert.Equal(10.0 / 6.0, c.Int8Ratio, 9);
        var markdown = LatencyProfilerFigure4.ToMarkdown(result);
        Assert.Contains("(1,528,1016)", markdown);
        Assert.Contains("(5,120,128)", markdown);
        Assert.Equal(8, result.Pairs.Count);
    }

    [Fact]
    public void Figure4_NeedsBothPrecisions()
    {
        var a = new Architecture(1, 120, 128);
        Assert.Throws<UserInputException>(() => LatencyProfilerFigure4.Analyze([Record(a, Precision.Int8, 1)]));
    }

    [Fact]
    public void Figure4_PlotIsAPng()
    {
        var records = Enumerable.Range(1, 5).SelectMany(i => new[]
        {
            Record(new Architecture(i, 120, 128), Precision.Int8, i),
            Record(new Architecture(i, 120, 128), Precision.Fp32, 2 * i + 0.1 * (i % 2)),
        }).ToList();
        var path = Path.Combine(Path.GetTempPath(), $"speedlimit-fig4-{Guid.NewGuid():N}.png");
        try
        {
            LatencyProfilerFigure4.SavePlot(LatencyProfilerFigure4.Analyze(records), path, 400, 300);
            var bytes = File.ReadAllBytes(path);
            Assert.True(bytes.Length > 1000);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
        }
        finally { File.Delete(path); }
    }
}
