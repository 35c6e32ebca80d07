using SpeedLimit.Model;

namespace SpeedLimit.Latency;

/// <summary>Where a latency was measured: enough to tell whether a predictor still applies.</summary>
public sealed record DeviceFingerprint(string CpuModel, int Threads, string RuntimeVersion)
{
    /// <summary>This machine, measuring with <paramref name="threads"/> intra-op threads.</summary>
    public static DeviceFingerprint Current(int threads) => new(LatencyProfiler.CpuModel(), threads, Onnx.OnnxRunner.RuntimeVersion);

    /// <summary>Same CPU and runtime (thread counts are compared per record by whoever filters them).</summary>
    public bool SameDeviceAs(DeviceFingerprint other) => CpuModel == other.CpuModel && RuntimeVersion == other.RuntimeVersion;

    public override string ToString() => $"{CpuModel}, {Threads} thread(s), ONNX Runtime {RuntimeVersion}";
}

/// <summary>
/// One profiled latency: an architecture run on ONNX Runtime at one precision and input shape.
/// This is one line of the profiler's JSONL dataset. <see cref="Clock"/> says what was timed:
/// "wall" (elapsed time) or "thread-cpu" (CPU time of the single inference thread, which
/// leaves out time the thread was descheduled on a shared machine).
/// </summary>
public sealed record LatencyRecord(
    int Layers, int Hidden, int Ffn, int Heads,
    Precision Precision,
    int Batch, int SequenceLength,
    double MedianMs, double P90Ms, double TrimmedMeanMs, double MinMs, int Runs,
    string CpuModel, int Threads, string RuntimeVersion,
    DateTimeOffset MeasuredAt, string Clock = "wall")
{
    public Architecture Arch => new(Layers, Hidden, Ffn);
    public DeviceFingerprint Device => new(CpuModel, Threads, RuntimeVersion);
}
