using SpeedLimit.Latency;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

/// <summary>Predicts the deployed latency of an architecture (ms) with a calibrated margin.</summary>
public interface ILatencyPredictor
{
    /// <summary>Point prediction in milliseconds.</summary>
    double PredictMs(Architecture arch);

    /// <summary>Relative margin m so that measured ≤ predicted·(1+m) at the predictor's stated confidence.</summary>
    double RelativeMargin { get; }
}

/// <summary>A predictor whose margin can be recalibrated with measurements taken during the search (its model unchanged).</summary>
internal interface IRecalibratingLatencyPredictor : ILatencyPredictor
{
    /// <summary>The conformal margin over the predictor's calibration residuals plus these measurements (the bound statistic's point value).</summary>
    double RecalibratedMargin(IReadOnlyList<(LatencyRecord Record, double MeasuredMs)> measurements);
}

/// <summary>The outcome of evaluating one candidate architecture.</summary>
/// <param name="Metric">Task metric on the dev split (higher is better).</param>
public sealed record CandidateResult(Architecture Arch, double Metric, double SecondsSpent);

/// <summary>Extracts, fine-tunes, quantizes and scores one candidate.</summary>
public interface ICandidateEvaluator
{
    CandidateResult Evaluate(Architecture arch, int seed, CancellationToken cancellation);

    /// <summary>How many evaluations a search may run side by side, each on its own thread (1: one at a time). Results must not depend on it.</summary>
    int ConcurrentEvaluations => 1;
}

/// <summary>
/// Builds the deployable model of an architecture (at the caller's precision) and measures its
/// latency on the deployment CPU with the profiler's protocol. The search uses it to check the
/// bound by measurement, never only by prediction.
/// </summary>
internal interface ILatencyMeasurer
{
    LatencyRecord Measure(Architecture arch, CancellationToken cancellation);

    /// <summary>Measures for a bound: a measurer that can, samples longer while the bound's verdict is uncertain.</summary>
    LatencyRecord Measure(Architecture arch, LatencyBound bound, CancellationToken cancellation) => Measure(arch, cancellation);
}
