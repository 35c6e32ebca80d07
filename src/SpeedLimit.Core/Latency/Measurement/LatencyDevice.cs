using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Architecture = SpeedLimit.Architecture;
using System.Text;
using System.Text.Json;
using SpeedLimit.Model;
using SpeedLimit.Onnx;

namespace SpeedLimit.Latency;

/// <summary>One exported model to time.</summary>
public sealed record ModelToMeasure(string OnnxPath, Architecture Arch, int Heads, Precision Precision);

/// <summary>Everything a device needs besides the models: the protocol, the input shape, the runtime settings and, for verification, the bound.</summary>
/// <param name="VocabSize">Token ids are drawn below this (the models' vocabulary).</param>
/// <param name="Seed">Seeds the input tokens.</param>
/// <param name="Bound">With a bound, models whose verdict is uncertain after the minimum are sampled longer.</param>
public sealed record MeasurementSettings(LatencyProtocol Protocol, int Threads = 1, int Batch = 1, int SequenceLength = 128, int VocabSize = 30522,
    int Seed = 0, LatencyClock Clock = LatencyClock.Wall, bool AllowSpinning = true, LatencyBound? Bound = null)
{
    public MeasurementSettings Validate()
    {
        Protocol.Validate();
        if (Threads < 1) throw new ArgumentException($"threads {Threads} must be at least 1");
        if (Batch < 1) throw new ArgumentException($"batch {Batch} must be at least 1");
        if (SequenceLength is < 1 or > 512) throw new ArgumentException($"sequence length {SequenceLength} must be in 1..512");
        if (VocabSize < 2) throw new ArgumentException($"vocabulary size {VocabSize} must be at least 2");
        if (Clock == LatencyClock.ThreadCpu && Threads != 1)
            throw new ArgumentException($"the thread-cpu clock times only the calling thread, so it needs --threads 1 (got {Threads}); use the wall clock with more threads");
        return this;
    }
}

/// <summary>
/// A machine that measures exported models with the protocol and returns one record per model,
/// fingerprinted with its own device: a child process here (<see cref="ChildProcessLatencyDevice"/>),
/// this process (<see cref="InProcessLatencyDevice"/>), or a remote <c>speedlimit latency serve</c>.
/// </summary>
public interface ILatencyDevice
{
    /// <summary>"child process", "in process", "remote http://host:port".</summary>
    string Name { get; }

    /// <summary>The device's fingerprint at a thread count (what its records will carry).</summary>
    DeviceFingerprint Fingerprint(int threads);

    IReadOnlyList<LatencyRecord> Measure(IReadOnlyList<ModelToMeasure> models, MeasurementSettings settings, CancellationToken cancel = default);
}

/// <summary>The fixed model every session interleaves with its models, so drift of the machine shows.</summary>
internal static class LatencyReference
{
    public static Architecture Arch { get; } = new(2, 192, 384);
    public const int Heads = 12;
    public const int VocabSize = 4096;
    private static readonly Lazy<byte[]> Bytes = new(() =>
    {
        var config = new BertConfig(Arch, Heads, VocabSize, HeadKind.Classification, maxPositions: 512);
        var layout = new BertParameterLayout(config);
        return BertOnnxExporter.ToBytes(config, layout, RandomBertWeights.Create(layout, 20231), new OnnxExportOptions { Precision = Precision.Int8 });
    });

    /// <summary>The reference as an int8 ONNX model.</summary>
    public static byte[] OnnxBytes => Bytes.Value;
}

/// <summary>The measurement itself, shared by the worker process, the server and the in-process device.</summary>
internal static class LatencyMeasurementEngine
{
    public static IReadOnlyList<LatencyRecord> Measure(IReadOnlyList<ModelToMeasure> models, MeasurementSettings settings, string isolation, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(models);
        settings.Validate();
        if (models.Count == 0) return [];
        var runnerOptions = new OnnxRunnerOptions { IntraOpThreads = settings.Threads, AllowSpinning = settings.AllowSpinning };
        var runners = new List<OnnxRunner>();
        var buffers = new List<OnnxInputBuffer>();
        try
        {
            foreach (var m in models)
            {
                if (!File.Exists(m.OnnxPath)) throw new FileNotFoundException($"model '{m.OnnxPath}' to measure does not exist");
                runners.Add(new OnnxRunner(m.OnnxPath, runnerOptions));
                buffers.Add(Fill(runners[^1].CreateBuffer(settings.Batch, settings.SequenceLength), settings.VocabSize, settings.Seed));
            }
            runners.Add(new OnnxRunner(LatencyReference.OnnxBytes, runnerOptions));
            buffers.Add(Fill(runners[^1].CreateBuffer(settings.Batch, settings.SequenceLength), LatencyReference.VocabSize, settings.Seed));
            var targets = runners.Select((r, i) => (ILatencyTarget)new OnnxTarget(r, buffers[i], settings.Clock)).ToList();
            var session = InterleavedMeasurement.Run(targets.Take(models.Count).ToList(), targets[^1], settings.Protocol, settings.Bound, cancel);
            var device = DeviceFingerprint.Current(settings.Threads);
            var now = DateTimeOffset.UtcNow;
            var clock = LatencyProfilerClock.Name(settings.Clock);
            var records = new List<LatencyRecord>(models.Count);
            for (int i = 0; i < models.Count; i++)
            {
                var m = models[i];
                var s = session.Models[i];
                var note = new MeasurementNote(settings.Protocol.Describe(), isolation, session.Reference.P50Ms, session.Drift.DriftPercent,
                    session.Drift.Detected, session.Attempts, session.Extended[i]);
                records.Add(new LatencyRecord(m.Arch.Layers, m.Arch.Hidden, m.Arch.Ffn, m.Heads, m.Precision, settings.Batch, settings.SequenceLength,
                    s.P50Ms, s.P90Ms, s.TrimmedMeanMs, s.MinMs, s.Runs, device.CpuModel, settings.Threads, device.RuntimeVersion, now, clock,
                    s, device, note));
            }
            return records;
        }
        finally
        {
            foreach (var b in buffers) b.Dispose();
            foreach (var r in runners) r.Dispose();
        }
    }

    /// <summary>Seeded ordinary word ids (past BERT's special and unused ids when the vocabulary is that large), full attention.</summary>
    private static OnnxInputBuffer Fill(OnnxInputBuffer buffer, int vocabSize, int seed)
    {
        var random = new Random(seed);
        int firstWordId = Math.Min(1000, vocabSize / 2);
        for (int i = 0; i < buffer.InputIds.Length; i++)
        {
            buffer.InputIds[i] = random.Next(firstWordId, vocabSize);
            buffer.AttentionMask[i] = 1;
        }
        return buffer;
    }

    private sealed class OnnxTarget(OnnxRunner runner, OnnxInputBuffer buffer, LatencyClock clock) : ILatencyTarget
    {
        private readonly Action _run = () => runner.Run(buffer);
        public double RunMs() => LatencyProfilerClock.TimeMs(_run, clock);
    }
}

/// <summary>Measures in the calling process (what a test or a machine without the worker falls back to); its records say so.</summary>
internal sealed class InProcessLatencyDevice : ILatencyDevice
{
    public static InProcessLatencyDevice Instance { get; } = new();
    public string Name => "in process";
    public DeviceFingerprint Fingerprint(int threads) => DeviceFingerprint.Current(threads);
    public IReadOnlyList<LatencyRecord> Measure(IReadOnlyList<ModelToMeasure> models, MeasurementSettings settings, CancellationToken cancel = default) =>
        LatencyMeasurementEngine.Measure(models, settings, "in process", cancel);
}

/// <summary>The request and reply lines between a parent and its measurement worker.</summary>
internal sealed record WorkerRequest(IReadOnlyList<ModelToMeasure> Models, MeasurementSettings Settings);

internal sealed record WorkerReply(IReadOnlyList<LatencyRecord>? Records, string? Error, DeviceFingerprint? Fingerprint = null);

/// <summary>
/// The worker side (<c>speedlimit latency measure-worker</c>): reads one JSON request per line,
/// measures, writes one JSON reply per line, until its input closes. Its measuring thread is pinned
/// to one CPU where the OS allows; the parent starts it with a small non-concurrent workstation heap.
/// </summary>
public static class MeasurementWorker
{
    public static int Serve(TextReader input, TextWriter output)
    {
        string pinned = SpeedLimit.Kernels.CpuAffinity.PinCurrentThreadToLastCpu();
        string isolation = $"child process (pid {Environment.ProcessId}, {pinned}, {HeapDescription()})";
        string? line;
        while ((line = input.ReadLine()) is not null)
        {
            if (line.Length == 0) continue;
            WorkerReply reply;
            try
            {
                var request = JsonSerializer.Deserialize<WorkerRequest>(line, LatencyDataset.JsonOptions)
                    ?? throw new InvalidDataException("empty measurement request");
                if (request.Models.Count == 0) reply = new WorkerReply([], null, DeviceFingerprint.Current(request.Settings.Threads));
                else reply = new WorkerReply(LatencyMeasurementEngine.Measure(request.Models, request.Settings, isolation), null);
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidDataException or FileNotFoundException or JsonException or IOException or InvalidOperationException)
            {
                reply = new WorkerReply(null, ex.Message);
            }
            output.WriteLine(JsonSerializer.Serialize(reply, LatencyDataset.JsonOptions));
            output.Flush();
        }
        return 0;
    }

    private static string HeapDescription()
    {
        var limit = Environment.GetEnvironmentVariable("DOTNET_GCHeapHardLimit");
        return limit is null ? "default heap" : $"heap limit {Convert.ToInt64(limit, 16) / (1 << 20)} MiB, workstation non-concurrent GC";
    }
}

/// <summary>
/// Measures in a dedicated child process (<c>speedlimit latency measure-worker</c>) that runs
/// nothing else: small non-concurrent workstation heap, measuring thread pinned. One worker is
/// started on first use and kept for later requests; a worker that dies is restarted once per
/// request. <see cref="Shared"/> is the process-wide instance (the worker exits when we do: its
/// input closes).
/// </summary>
internal sealed class ChildProcessLatencyDevice : ILatencyDevice, IDisposable
{
    private readonly string _fileName;
    private readonly string[] _prefixArgs;
    private readonly object _gate = new();
    private Process? _process;
    private readonly StringBuilder _stderr = new();

    public ChildProcessLatencyDevice(string fileName, IEnumerable<string> prefixArgs)
    {
        _fileName = fileName;
        _prefixArgs = prefixArgs.ToArray();
    }

    public string Name => "child process";

    /// <summary>Heap limit given to the worker (its models live in native memory; the managed heap holds little).</summary>
    public long HeapLimitBytes { get; init; } = 256L << 20;

    private static readonly Lazy<ILatencyDevice> SharedDevice = new(() =>
        TryCreateDefault() is { } d ? d : InProcessLatencyDevice.Instance);

    /// <summary>The child-process device when the worker can be found (speedlimit.dll beside this program), else the in-process one.</summary>
    public static ILatencyDevice Shared => SharedDevice.Value;

    /// <summary>
    /// Finds the worker: <c>SPEEDLIMIT_WORKER</c> (a speedlimit.dll or executable), else speedlimit.dll beside
    /// this program, run by the dotnet host that runs us. Null when neither is there.
    /// </summary>
    public static ChildProcessLatencyDevice? TryCreateDefault()
    {
        string? target = Environment.GetEnvironmentVariable("SPEEDLIMIT_WORKER");
        if (string.IsNullOrEmpty(target))
        {
            var beside = Path.Combine(AppContext.BaseDirectory, "speedlimit.dll");
            if (File.Exists(beside)) target = beside;
        }
        if (string.IsNullOrEmpty(target) || !File.Exists(target)) return null;
        string[] args = ["latency", "measure-worker"];
        if (!target.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)) return new ChildProcessLatencyDevice(target, args);
        var host = DotnetHost();
        return host is null ? null : new ChildProcessLatencyDevice(host, [target, .. args]);
    }

    private static string? DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h)) return h;
        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        // <root>/shared/Microsoft.NETCore.App/<version>/ → <root>/dotnet
        var runtimeDir = RuntimeEnvironment.GetRuntimeDirectory().TrimEnd(Path.DirectorySeparatorChar);
        var root = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(runtimeDir)));
        var candidate = root is null ? null : Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet");
        return candidate is not null && File.Exists(candidate) ? candidate : null;
    }

    public DeviceFingerprint Fingerprint(int threads) => DeviceFingerprint.Current(threads);

    public IReadOnlyList<LatencyRecord> Measure(IReadOnlyList<ModelToMeasure> models, MeasurementSettings settings, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(models);
        settings.Validate();
        if (models.Count == 0) return [];
        var line = JsonSerializer.Serialize(new WorkerRequest(models.Select(m => m with { OnnxPath = Path.GetFullPath(m.OnnxPath) }).ToList(), settings), LatencyDataset.JsonOptions);
        lock (_gate)
        {
            for (int attempt = 1; ; attempt++)
            {
                cancel.ThrowIfCancellationRequested();
                var process = EnsureStarted();
                string? replyLine;
                using (cancel.Register(() => { try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } }))
                {
                    try
                    {
                        process.StandardInput.WriteLine(line);
                        process.StandardInput.Flush();
                        replyLine = process.StandardOutput.ReadLine();
                    }
                    catch (IOException)
                    {
                        replyLine = null;
                    }
                }
                cancel.ThrowIfCancellationRequested();
                if (replyLine is null)
                {
                    Stop();
                    if (attempt < 2) continue;
                    string tail;
                    lock (_stderr) tail = _stderr.ToString().Trim();
                    throw new InvalidOperationException($"the latency measurement worker ({_fileName} {string.Join(' ', _prefixArgs)}) exited without a reply" +
                        (tail.Length > 0 ? $": {Last(tail, 400)}" : "") + "; check that speedlimit runs on this machine, or set SPEEDLIMIT_WORKER");
                }
                var reply = JsonSerializer.Deserialize<WorkerReply>(replyLine, LatencyDataset.JsonOptions)
                    ?? throw new InvalidDataException("the latency measurement worker sent an empty reply");
                if (reply.Error is not null) throw new InvalidDataException($"measurement failed: {reply.Error}");
                if (reply.Records is null || reply.Records.Count != models.Count)
                    throw new InvalidDataException($"the latency measurement worker returned {reply.Records?.Count ?? 0} records for {models.Count} models");
                return reply.Records;
            }
        }
    }

    private static string Last(string s, int n) => s.Length <= n ? s : "…" + s[^n..];

    private Process EnsureStarted()
    {
        if (_process is { HasExited: false }) return _process;
        Stop();
        var info = new ProcessStartInfo(_fileName)
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            StandardOutputEncoding = new UTF8Encoding(false), StandardInputEncoding = new UTF8Encoding(false),
        };
        foreach (var a in _prefixArgs) info.ArgumentList.Add(a);
        info.Environment["DOTNET_GCHeapHardLimit"] = HeapLimitBytes.ToString("X", CultureInfo.InvariantCulture);
        info.Environment["DOTNET_gcServer"] = "0";
        info.Environment["DOTNET_gcConcurrent"] = "0";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        var process = new Process { StartInfo = info };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_stderr)
            {
                _stderr.AppendLine(e.Data);
                if (_stderr.Length > 8000) _stderr.Remove(0, _stderr.Length - 4000);
            }
        };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException($"could not start the latency measurement worker '{_fileName}': {ex.Message}");
        }
        process.BeginErrorReadLine();
        return _process = process;
    }

    private void Stop()
    {
        var p = _process;
        _process = null;
        if (p is null) return;
        try
        {
            if (!p.HasExited)
            {
                p.StandardInput.Close();
                if (!p.WaitForExit(2000)) p.Kill(entireProcessTree: true);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException) { }
        p.Dispose();
    }

    public void Dispose()
    {
        lock (_gate) Stop();
    }
}
