using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Pipeline;

/// <summary>
/// Measures an architecture's deployed latency: the profiler exports it (random weights: latency
/// does not depend on the values) at the search's precision and times it on its device with the
/// profiler's protocol; for a bound, an uncertain verdict is sampled longer.
/// </summary>
internal sealed class OnnxLatencyMeasurer(LatencyProfiler profiler, Precision precision) : ILatencyMeasurer
{
    public LatencyRecord Measure(Architecture arch, CancellationToken cancellation)
    {
        cancellation.ThrowIfCancellationRequested();
        return profiler.Profile(arch, precision, null, cancellation);
    }

    public LatencyRecord Measure(Architecture arch, LatencyBound bound, CancellationToken cancellation)
    {
        cancellation.ThrowIfCancellationRequested();
        return profiler.Profile(arch, precision, bound, cancellation);
    }
}
