using System.Globalization;
using SpeedLimit.Latency;

namespace SpeedLimit.Reporting;

/// <summary>A dev-split score of one deployed model on one runtime, with how it was computed.</summary>
/// <param name="Metric">The task's primary metric.</param>
/// <param name="Runtime">e.g. "engine int8 simulation" or "ONNX Runtime 1.31.1".</param>
/// <param name="Scoring">How inputs were fed, e.g. "each example alone (batch 1, no padding)".</param>
public sealed record DevScore(double Metric, string Runtime, string Scoring);

/// <summary>
/// How much the int8 model's outputs depend on padding and batch composition: dynamic quantization
/// takes one activation scale per tensor, so the padded rows of a batch change every row's scale.
/// Measured on the dev split: each example alone vs in padded batches of <see cref="BatchSize"/>.
/// </summary>
public sealed record PaddingEffect(int BatchSize, int Examples, double MaxAbsLogitDelta, int TopClassChanges, double BatchedMetric);

/// <summary>
/// The latency check of a deployed file against its bound: the statistic compared, its value and the
/// measurement it came from. The latency verifier may add a confidence interval for the statistic
/// (<see cref="IntervalLowMs"/>..<see cref="IntervalHighMs"/> at <see cref="Confidence"/>); null when it gives none.
/// </summary>
public sealed record LatencyVerdict(string Statistic, double ValueMs, double BoundMs, bool MeetsBound, LatencyRecord Measurement,
    double? IntervalLowMs = null, double? IntervalHighMs = null, double? Confidence = null);

/// <summary>
/// One bound's deployed model, complete: built once after export and verification, then written to
/// deployment.json, report.md and the CLI's table from this record alone.
/// </summary>
public sealed record DeployedWinner(double BoundMs, Architecture Arch, string OnnxFile, string CheckpointFile,
    DevScore Engine, DevScore OnnxRuntime, PaddingEffect? Padding, LatencyVerdict Verdict)
{
    public bool MeetsBound => Verdict.MeetsBound;
}

/// <summary>What deployment.json holds: the model contract, every deployed winner, the run's notes and stage timings.</summary>
public sealed record Deployment(Onnx.ModelContract Contract, IReadOnlyList<DeployedWinner> Winners, IReadOnlyList<string> Notes,
    IReadOnlyDictionary<string, double> StageSeconds);

/// <summary>The one rendering of the winner table (report.md and the CLI use it).</summary>
public static class WinnerTable
{
    public static readonly string[] Header =
        ["bound (ms)", "architecture", "file", "dev metric (engine int8 / ONNX Runtime)", "measured median / p90 (ms)", "meets bound"];

    public static string[] Cells(DeployedWinner w)
    {
        var inv = CultureInfo.InvariantCulture;
        var m = w.Verdict.Measurement;
        return
        [
            w.BoundMs.ToString("G4", inv), w.Arch.ToString(), w.OnnxFile,
            string.Create(inv, $"{w.Engine.Metric:F4} / {w.OnnxRuntime.Metric:F4}"),
            string.Create(inv, $"{m.MedianMs:F3} / {m.P90Ms:F3}"),
            w.MeetsBound ? "yes" : "no",
        ];
    }

    public static IEnumerable<string> Markdown(IReadOnlyList<DeployedWinner> winners)
    {
        yield return "| " + string.Join(" | ", Header) + " |";
        yield return "|" + string.Concat(Header.Select(_ => "---|"));
        foreach (var w in winners)
        {
            var cells = Cells(w);
            cells[2] = $"`{cells[2]}`";
            if (!w.MeetsBound) cells[5] = "**no**";
            yield return "| " + string.Join(" | ", cells) + " |";
        }
    }
}
