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
    /// <summary>The measurement protocol (warm-up, sampling, interleaving, intervals).</summary>
    public LatencyProtocol Protocol { get; set; } = LatencyProtocol.Screening;
    /// <summary>Models measured together in one interleaved session (their files are exported first).</summary>
    public int SessionSize { get; set; } = 8;
    /// <summary>Seeds the random weights and input tokens.</summary>
    public int Seed { get; set; }

    internal MeasurementSettings Settings(LatencyBound? bound = null, int? vocabSize = null) =>
        new(Protocol, Threads, Batch, SequenceLength, vocabSize ?? VocabSize, Seed, Clock, AllowSpinning, bound);

    internal void Validate()
    {
        if (Batch < 1) throw new ArgumentException($"batch {Batch} must be at least 1");
        if (SequenceLength < 1 || SequenceLength > 512) throw new ArgumentException($"sequence length {SequenceLength} must be in 1..512");
        if (Threads < 1) throw new ArgumentException($"threads {Threads} must be at least 1");
        if (SessionSize < 1) throw new ArgumentException($"session size {SessionSize} must be at least 1");
        Settings().Validate();
    }
}

/// <summary>
/// Measures the latency of exported BERT models on ONNX Runtime with the <see cref="LatencyProtocol"/>:
/// random seeded weights (values do not change speed), batch × length tokens, exported to files and
/// timed by a <see cref="ILatencyDevice"/> (by default a dedicated child process), several models per
/// interleaved session together with the fixed reference model.
/// </summary>
public sealed class LatencyProfiler(LatencyProfilerOptions options, ILatencyDevice? device = null)
{
    public LatencyProfilerOptions Options { get; } = options;

    /// <summary>Where the models are timed.</summary>
    public ILatencyDevice Device { get; } = device ?? ChildProcessLatencyDevice.Shared;

    /// <summary>Times one architecture at one precision (with a bound: sampled longer while its verdict is uncertain).</summary>
    public LatencyRecord Profile(Architecture arch, Precision precision, LatencyBound? bound = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(arch);
        Options.Validate();
        return ProfileSession([(arch, precision)], bound, cancel)[0];
    }

    /// <summary>Times an exported model file (e.g. the deliverable best.onnx) with the same protocol.</summary>
    /// <param name="protocol">Another protocol than the options' (e.g. the final verification's).</param>
    public LatencyRecord ProfileFile(string onnxPath, Architecture arch, Precision precision, LatencyBound? bound = null, int? vocabSize = null,
        CancellationToken cancel = default, LatencyProtocol? protocol = null)
    {
        Options.Validate();
        var settings = Options.Settings(bound, vocabSize);
        if (protocol is not null) settings = settings with { Protocol = protocol };
        return Device.Measure([new ModelToMeasure(onnxPath, arch, Options.Heads, precision)], settings, cancel)[0];
    }

    /// <summary>Exports the architectures to a temporary folder and times them in one interleaved session.</summary>
    private IReadOnlyList<LatencyRecord> ProfileSession(IReadOnlyList<(Architecture Arch, Precision Precision)> items, LatencyBound? bound, CancellationToken cancel)
    {
        var folder = Path.Combine(Path.GetTempPath(), $"speedlimit-profile-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            var models = new List<ModelToMeasure>();
            foreach (var (arch, precision) in items)
            {
                cancel.ThrowIfCancellationRequested();
                var config = new BertConfig(arch, Options.Heads, Options.VocabSize, HeadKind.Classification, maxPositions: Math.Max(512, Options.SequenceLength));
                var layout = new BertParameterLayout(config);
                var parameters = RandomBertWeights.Create(layout, Options.Seed);
                var path = Path.Combine(folder, $"{arch.Layers}-{arch.Hidden}-{arch.Ffn}-{precision.ToString().ToLowerInvariant()}.onnx");
                BertOnnxExporter.Save(config, layout, parameters, path, new OnnxExportOptions { Precision = precision, PerChannel = Options.PerChannel });
                models.Add(new ModelToMeasure(path, arch, Options.Heads, precision));
            }
            return Device.Measure(models, Options.Settings(bound), cancel);
        }
        finally
        {
            try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// Profiles every (architecture, precision) pair not already in <paramref name="datasetPath"/> for this
    /// batch, length, thread count and clock on this device (records of another device fingerprint do not
    /// count as done), <see cref="LatencyProfilerOptions.SessionSize"/> per session, appending each record as
    /// it is measured. Returns the new records.
    /// </summary>
    public IReadOnlyList<LatencyRecord> ProfileAll(IEnumerable<Architecture> architectures, IReadOnlyList<Precision> precisions,
        string datasetPath, Action<LatencyRecord?, int, int>? progress = null, CancellationToken cancel = default)
    {
        Options.Validate();
        var here = Device.Fingerprint(Options.Threads);
        var done = File.Exists(datasetPath)
            ? LatencyDataset.Load(datasetPath).Where(r => r.Device.Matches(here)).Select(Key).ToHashSet()
            : [];
        var clock = LatencyProfilerClock.Name(Options.Clock);
        var todo = architectures.SelectMany(a => precisions.Select(p => (Arch: a, Precision: p)))
            .Where(x => !done.Contains((x.Arch.Layers, x.Arch.Hidden, x.Arch.Ffn, x.Precision, Options.Threads, Options.Batch, Options.SequenceLength, clock)))
            .Distinct()
            .ToList();
        var added = new List<LatencyRecord>();
        progress?.Invoke(null, 0, todo.Count);
        foreach (var chunk in todo.Chunk(Options.SessionSize))
        {
            cancel.ThrowIfCancellationRequested();
            foreach (var record in ProfileSession(chunk, null, cancel))
            {
                LatencyDataset.Append(datasetPath, record);
                added.Add(record);
                progress?.Invoke(record, added.Count, todo.Count);
            }
        }
        return added;
    }

    /// <summary>What makes two measurements the same experiment.</summary>
    public static (int, int, int, Precision, int, int, int, string) Key(LatencyRecord r) =>
        (r.Layers, r.Hidden, r.Ffn, r.Precision, r.Threads, r.Batch, r.SequenceLength, r.Clock);

    /// <summary>The CPU's model name from /proc/cpuinfo (or the OS description elsewhere).</summary>
    public static string CpuModel() => DeviceFingerprint.Current(1).CpuModel;
}
