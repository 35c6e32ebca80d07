using SpeedLimit.Model;
using SpeedLimit.Onnx;

namespace SpeedLimit.Latency;

/// <summary>How the profiler measures one model.</summary>
public sealed class LatencyProfilerOptions
{
    public int Batch { get; set; } = 1;
    public int SequenceLength { get; set; } = 128;
    public int Threads { get; set; } = 1;
    public bool AllowSpinning { get; set; } = true;
    /// <summary>Head count of the profiled models (the search space's).</summary>
    public int Heads { get; set; } = 12;
    /// <summary>Vocabulary of the profiled models; only the embedding gather touches it.</summary>
    public int VocabSize { get; set; } = 30522;
    public bool PerChannel { get; set; }
    /// <summary>Wall time, or the inference thread's CPU time (one thread only; see <see cref="LatencyClock.ThreadCpu"/>).</summary>
    public LatencyClock Clock { get; set; } = LatencyClock.Wall;
    /// <summary>Warm-up runs until the median of the last <see cref="StableWindow"/> runs moves less than <see cref="StableTolerance"/> from the window before.</summary>
    public int MinWarmupRuns { get; set; } = 5;
    public int MaxWarmupRuns { get; set; } = 60;
    public int StableWindow { get; set; } = 5;
    public double StableTolerance { get; set; } = 0.02;
    public int TimedRuns { get; set; } = 10;
    /// <summary>Seeds the random weights and input tokens.</summary>
    public int Seed { get; set; }

    internal void Validate()
    {
        if (Batch < 1) throw new ArgumentException($"batch {Batch} must be at least 1");
        if (SequenceLength < 1 || SequenceLength > 512) throw new ArgumentException($"sequence length {SequenceLength} must be in 1..512");
        if (Threads < 1) throw new ArgumentException($"threads {Threads} must be at least 1");
        if (TimedRuns < 10) throw new ArgumentException($"timed runs {TimedRuns} must be at least 10");
        if (Clock == LatencyClock.ThreadCpu && Threads != 1)
            throw new ArgumentException($"the thread-cpu clock times only the calling thread, so it needs --threads 1 (got {Threads}); use the wall clock with more threads");
        if (StableWindow < 2 || MaxWarmupRuns < MinWarmupRuns) throw new ArgumentException("warm-up window must be ≥ 2 and max warm-up runs ≥ min warm-up runs");
    }
}

/// <summary>Summary of timed runs, in milliseconds.</summary>
public sealed record LatencyStats(double MedianMs, double P90Ms, double TrimmedMeanMs, double MinMs, int Runs, int WarmupRuns)
{
    /// <summary>Median, p90 (nearest rank), mean without the fastest and slowest 10 % (at least one each), minimum.</summary>
    public static LatencyStats From(IReadOnlyList<double> timesMs, int warmupRuns)
    {
        if (timesMs.Count == 0) throw new ArgumentException("no timed runs");
        var s = timesMs.OrderBy(t => t).ToArray();
        int n = s.Length;
        double median = Statistics.Median(s);
        double p90 = Statistics.NearestRank(s, 0.9);
        int trim = n >= 3 ? Math.Max(1, n / 10) : 0;
        double trimmed = s.Skip(trim).Take(n - 2 * trim).Average();
        return new LatencyStats(median, p90, trimmed, s[0], n, warmupRuns);
    }
}

/// <summary>
/// Measures the latency of exported BERT models on ONNX Runtime: random seeded weights (values do
/// not change speed), batch × length tokens, warm-up until stable, then timed runs.
/// </summary>
public sealed class LatencyProfiler(LatencyProfilerOptions options)
{
    public LatencyProfilerOptions Options { get; } = options;

    /// <summary>Times one architecture at one precision.</summary>
    public LatencyRecord Profile(Architecture arch, Precision precision)
    {
        ArgumentNullException.ThrowIfNull(arch);
        Options.Validate();
        var config = new BertConfig(arch, Options.Heads, Options.VocabSize, HeadKind.Classification, maxPositions: Math.Max(512, Options.SequenceLength));
        var layout = new BertParameterLayout(config);
        var parameters = RandomBertWeights.Create(layout, Options.Seed);
        var bytes = BertOnnxExporter.ToBytes(config, layout, parameters, new OnnxExportOptions { Precision = precision, PerChannel = Options.PerChannel });
        using var runner = new OnnxRunner(bytes, new OnnxRunnerOptions { IntraOpThreads = Options.Threads, AllowSpinning = Options.AllowSpinning });
        return Profile(runner, arch, precision);
    }

    /// <summary>Times an exported model file (e.g. the deliverable best.onnx) with the same protocol.</summary>
    public LatencyRecord ProfileFile(string onnxPath, Architecture arch, Precision precision)
    {
        Options.Validate();
        using var runner = new OnnxRunner(onnxPath, new OnnxRunnerOptions { IntraOpThreads = Options.Threads, AllowSpinning = Options.AllowSpinning });
        return Profile(runner, arch, precision);
    }

    private LatencyRecord Profile(OnnxRunner runner, Architecture arch, Precision precision)
    {
        using var buffer = runner.CreateBuffer(Options.Batch, Options.SequenceLength);
        var random = new Random(Options.Seed);
        // Ordinary word ids (past BERT's special and unused ids when the vocabulary is that large).
        int firstWordId = Math.Min(1000, Options.VocabSize / 2);
        for (int i = 0; i < buffer.InputIds.Length; i++)
        {
            buffer.InputIds[i] = random.Next(firstWordId, Options.VocabSize);
            buffer.AttentionMask[i] = 1;
        }
        var stats = Measure(() => runner.Run(buffer), Options);
        return new LatencyRecord(arch.Layers, arch.Hidden, arch.Ffn, Options.Heads, precision, Options.Batch, Options.SequenceLength,
            stats.MedianMs, stats.P90Ms, stats.TrimmedMeanMs, stats.MinMs, stats.Runs,
            CpuModel(), Options.Threads, OnnxRunner.RuntimeVersion, DateTimeOffset.UtcNow, LatencyProfilerClock.Name(Options.Clock));
    }

    /// <summary>Warm-up until the windowed median settles (bounded), then <see cref="LatencyProfilerOptions.TimedRuns"/> timed runs.</summary>
    public static LatencyStats Measure(Action run, LatencyProfilerOptions options)
    {
        var warm = new List<double>();
        int w = options.StableWindow;
        while (warm.Count < options.MaxWarmupRuns)
        {
            warm.Add(LatencyProfilerClock.TimeMs(run, options.Clock));
            if (warm.Count < Math.Max(options.MinWarmupRuns, 2 * w)) continue;
            double last = Statistics.Median(warm.Skip(warm.Count - w)), before = Statistics.Median(warm.Skip(warm.Count - 2 * w).Take(w));
            if (Math.Abs(last - before) <= options.StableTolerance * before) break;
        }
        var times = new double[options.TimedRuns];
        for (int i = 0; i < times.Length; i++) times[i] = LatencyProfilerClock.TimeMs(run, options.Clock);
        return LatencyStats.From(times, warm.Count);
    }

    /// <summary>
    /// Profiles every (architecture, precision) pair not already in <paramref name="datasetPath"/> for this
    /// batch, length and thread count, appending each record as it is measured. Returns the new records.
    /// </summary>
    public IReadOnlyList<LatencyRecord> ProfileAll(IEnumerable<Architecture> architectures, IReadOnlyList<Precision> precisions,
        string datasetPath, Action<LatencyRecord?, int, int>? progress = null, CancellationToken cancel = default)
    {
        Options.Validate();
        var done = File.Exists(datasetPath) ? LatencyDataset.Load(datasetPath).Select(Key).ToHashSet() : [];
        var clock = LatencyProfilerClock.Name(Options.Clock);
        var todo = architectures.SelectMany(a => precisions.Select(p => (Arch: a, Precision: p)))
            .Where(x => !done.Contains((x.Arch.Layers, x.Arch.Hidden, x.Arch.Ffn, x.Precision, Options.Threads, Options.Batch, Options.SequenceLength, clock)))
            .Distinct()
            .ToList();
        var added = new List<LatencyRecord>();
        progress?.Invoke(null, 0, todo.Count);
        foreach (var (arch, precision) in todo)
        {
            cancel.ThrowIfCancellationRequested();
            var record = Profile(arch, precision);
            LatencyDataset.Append(datasetPath, record);
            added.Add(record);
            progress?.Invoke(record, added.Count, todo.Count);
        }
        return added;
    }

    /// <summary>What makes two measurements the same experiment.</summary>
    public static (int, int, int, Precision, int, int, int, string) Key(LatencyRecord r) =>
        (r.Layers, r.Hidden, r.Ffn, r.Precision, r.Threads, r.Batch, r.SequenceLength, r.Clock);


    private static string? _cpuModel;

    /// <summary>The CPU's model name from /proc/cpuinfo (or the OS description elsewhere).</summary>
    public static string CpuModel()
    {
        if (_cpuModel is not null) return _cpuModel;
        string model = System.Runtime.InteropServices.RuntimeInformation.OSDescription;
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
                if (line is not null && line.Contains(':')) model = line[(line.IndexOf(':') + 1)..].Trim();
            }
        }
        catch (IOException) { }
        return _cpuModel = model;
    }
}
