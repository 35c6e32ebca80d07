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
/// (<see cref="IntervalLowMs"/>..<see cref="IntervalHighMs"/> at <see cref="Confidence"/>); null when it gives none
/// (an open side: too few runs). <see cref="Outcome"/> is <see cref="LatencyBound"/>'s verdict: meets, fails or uncertain.
/// </summary>
public sealed record LatencyVerdict(string Statistic, double ValueMs, double BoundMs, bool MeetsBound, LatencyRecord Measurement,
    double? IntervalLowMs = null, double? IntervalHighMs = null, double? Confidence = null, string? Outcome = null)
{
    /// <summary>"meets: p90 0.281 ms [0.276, 0.290] at 95 %", or yes/no for a verdict without an interval.</summary>
    public string Describe()
    {
        var inv = CultureInfo.InvariantCulture;
        if (Confidence is not double c) return MeetsBound ? "yes" : "no";
        string lo = IntervalLowMs is double l ? l.ToString("0.###", inv) : "open", hi = IntervalHighMs is double h ? h.ToString("0.###", inv) : "open";
        return string.Create(inv, $"{Outcome ?? (MeetsBound ? "meets" : "fails")}: {Statistic} {ValueMs:0.###} ms [{lo}, {hi}] at {c:P0}");
    }
}

/// <summary>
/// One bound's deployed model, complete: built once after export and verification, then written to
/// deployment.json, report.md and the CLI's table from this record alone.
/// </summary>
/// <param name="HuggingFaceFolder">The same weights as a Hugging Face folder (config.json, model.safetensors, tokenizer files).</param>
/// <param name="OnnxBytes">Size of the deployed ONNX file (int8 weights for an int8 search).</param>
/// <param name="EncoderParameters">Encoder parameters (attention, FFN, LayerNorms), comparable across searches.</param>
public sealed record DeployedWinner(double BoundMs, Architecture Arch, string OnnxFile, string CheckpointFile, string HuggingFaceFolder,
    long OnnxBytes, long EncoderParameters, DevScore Engine, DevScore OnnxRuntime, PaddingEffect? Padding, LatencyVerdict Verdict)
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
        ["bound (ms)", "architecture", "file", "size (MB) / encoder params (M)", "dev metric (engine int8 / ONNX Runtime)", "measured median / p90 (ms)", "meets bound (verdict, interval)"];

    public static string[] Cells(DeployedWinner w)
    {
        var inv = CultureInfo.InvariantCulture;
        var m = w.Verdict.Measurement;
        return
        [
            w.BoundMs.ToString("G4", inv), w.Arch.ToString(), w.OnnxFile,
            string.Create(inv, $"{w.OnnxBytes / 1e6:0.##} / {w.EncoderParameters / 1e6:0.###}"),
            string.Create(inv, $"{w.Engine.Metric:F4} / {w.OnnxRuntime.Metric:F4}"),
            string.Create(inv, $"{m.MedianMs:F3} / {m.P90Ms:F3}"),
            w.Verdict.Describe(),
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
            int verdict = Header.Length - 1;
            if (!w.MeetsBound) cells[verdict] = $"**{cells[verdict]}**";
            yield return "| " + string.Join(" | ", cells) + " |";
        }
    }
}
