using SpeedLimit.Model;

namespace SpeedLimit.Latency;


/// <summary>
/// One profiled latency: an architecture run on ONNX Runtime at one precision and input shape.
/// This is one line of the profiler's JSONL dataset. <see cref="Clock"/> says what was timed:
/// "wall" (elapsed time) or "thread-cpu" (CPU time of the single inference thread, which
/// leaves out time the thread was descheduled on a shared machine). Records of the measurement
/// protocol (<see cref="LatencyProtocol"/>) also carry the <see cref="Summary"/> (quantiles and
/// their confidence intervals), the full device <see cref="Fingerprint"/> and how it was measured
/// (<see cref="Protocol"/>); older records have none of these and are judged on their point values.
/// </summary>
public sealed record LatencyRecord(
    int Layers, int Hidden, int Ffn, int Heads,
    Precision Precision,
    int Batch, int SequenceLength,
    double MedianMs, double P90Ms, double TrimmedMeanMs, double MinMs, int Runs,
    string CpuModel, int Threads, string RuntimeVersion,
    DateTimeOffset MeasuredAt, string Clock = "wall",
    LatencySummary? Summary = null, DeviceFingerprint? Fingerprint = null, MeasurementNote? Protocol = null)
{
    public Architecture Arch => new(Layers, Hidden, Ffn);

    /// <summary>The full fingerprint when the record has one (this build writes it), else the legacy fields.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public DeviceFingerprint Device => Fingerprint ?? new(CpuModel, Threads, RuntimeVersion);
}
