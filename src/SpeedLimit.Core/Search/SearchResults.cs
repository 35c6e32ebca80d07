using SpeedLimit.Latency;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

/// <summary>
/// One evaluated architecture: a row of the study store and of results.json.
/// </summary>
/// <param name="Order">Completion order within the study (0-based).</param>
/// <param name="Seed">Seed the evaluator got (derived from the study seed and the architecture).</param>
/// <param name="PredictedMs">Predicted latency (null for a baseline evaluated without a predictor).</param>
/// <param name="EvaluationSeconds">Seconds the evaluator reported.</param>
/// <param name="WallSeconds">Wall-clock seconds of the evaluate call.</param>
/// <param name="MeasuredMs">The measured statistic checked against bounds (median or p90), once measured.</param>
/// <param name="Measurement">The full measurement (device, runs, median, p90), once measured.</param>
public sealed record CandidateRecord(
    Architecture Arch, int Order, string Task, Precision Precision, string Budget, int Seed,
    double Metric, double? PredictedMs, double EvaluationSeconds, double WallSeconds,
    DateTimeOffset StartedAt, DateTimeOffset FinishedAt,
    double? MeasuredMs = null, LatencyRecord? Measurement = null, double? MeasurementSeconds = null);

/// <summary>What one generation of one bound's search did.</summary>
public sealed record GenerationSummary(int Generation, int Candidates, int Mutations, int FreshSamples,
    int MutationFallbacks, int Reused, double BestMetricSoFar);

/// <summary>The outcome for one latency bound.</summary>
/// <param name="NarrowedCount">|A*|: architectures predicted within the bound with the margin.</param>
/// <param name="Exhausted">The search ran out of unvisited architectures in A* (so it saw all of them).</param>
/// <param name="Visited">Architectures this bound's search chose, in order.</param>
/// <param name="Ranked">Architectures of the evaluated candidates inside A* (from every bound's search), best metric first; the top ones are verified. Their records are in <see cref="SearchResult.Candidates"/>.</param>
/// <param name="Winner">The best candidate that met the bound by measurement (or the best predicted one when no measurer was given).</param>
/// <param name="Verified">True when the winner's measured latency is within the bound.</param>
/// <param name="WinnerRank">Position of the winner in <paramref name="Ranked"/> (0 unless verification fell back).</param>
/// <param name="Note">One line saying what verification did (fallbacks, failures).</param>
/// <param name="RelativeMargin">The margin the search narrowed A* with (the predictor's, as stored with the study).</param>
/// <param name="VerifyMargin">The margin verification ranked with: <paramref name="RelativeMargin"/> recalibrated by the measurements of earlier bounds' verification (null in results written before recalibration).</param>
public sealed record BoundResult(
    double BoundMs, double RelativeMargin, int NarrowedCount, bool Exhausted,
    IReadOnlyList<Architecture> Visited, IReadOnlyList<GenerationSummary> Generations,
    IReadOnlyList<Architecture> Ranked,
    CandidateRecord? Winner, bool Verified, int WinnerRank, string Note,
    double SearchSeconds, double VerifySeconds, double? VerifyMargin = null);

/// <summary>Timings and counters of a whole search run.</summary>
/// <param name="Evaluations">Evaluator calls made by this run.</param>
/// <param name="Reused">Candidates served from the cache/store (resume, or shared between bounds).</param>
public sealed record SearchTimings(double NarrowSeconds, double SearchSeconds, double VerifySeconds, double TotalSeconds,
    int Evaluations, int Reused, int Measurements, int ReusedMeasurements);

/// <summary>A finished search (all bounds) with its candidates and accuracy-vs-latency fronts.</summary>
/// <param name="Label">Series name in reports, e.g. "int8 search" or "fp32 search (AutoTinyBERT-style)".</param>
/// <param name="Candidates">Every evaluated candidate of the study, in completion order.</param>
/// <param name="Front">Pareto front over (predicted latency, metric) of all candidates.</param>
/// <param name="MeasuredFront">Pareto front over (measured latency, metric) of the measured candidates.</param>
public sealed record SearchResult(
    string Label, string? StudyName, SearchDefinition Definition,
    IReadOnlyList<BoundResult> Bounds, IReadOnlyList<CandidateRecord> Candidates,
    IReadOnlyList<CandidateRecord> Front, IReadOnlyList<CandidateRecord> MeasuredFront,
    SearchTimings Timings)
{
    public Precision Precision => Definition.Precision;
}

/// <summary>One evaluated baseline.</summary>
public sealed record BaselineEntry(string Name, CandidateRecord Candidate);

/// <summary>Fixed architectures evaluated (and measured) at one precision.</summary>
public sealed record BaselineResult(string Label, string? StudyName, BaselineDefinition Definition, IReadOnlyList<BaselineEntry> Entries)
{
    public Precision Precision => Definition.Precision;
}

public enum SearchPhase { Narrowing, Searching, Verifying, Baselines, Done }

/// <summary>
/// A progress report. <see cref="Completed"/>/<see cref="Total"/> count steps of the current
/// phase (candidate slots while searching, measurements while verifying).
/// </summary>
/// <param name="Reused">The step was served from the cache/store (no evaluation ran).</param>
/// <param name="EstimatedRemaining">Mean seconds per fresh step × steps left (an upper bound when steps get reused).</param>
public sealed record SearchProgress(
    SearchPhase Phase, string Message,
    double? BoundMs, int BoundIndex, int BoundCount, int Generation, int Generations,
    int Completed, int Total,
    Architecture? Current, double? CurrentMetric, bool Reused, double? BestMetric,
    TimeSpan Elapsed, TimeSpan? EstimatedRemaining);
