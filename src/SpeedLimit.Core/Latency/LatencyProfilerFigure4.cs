using System.Globalization;
using SpeedLimit.Model;

namespace SpeedLimit.Latency;

/// <summary>Which summary of a record's timed runs the analysis uses.</summary>
public enum LatencyStatistic { Median, Min, TrimmedMean, P90 }

/// <summary>The one parser of statistic words, so `profile fit --statistic` and `latency fit --target` accept the same ones.</summary>
public static class LatencyStatistics
{
    public const string Words = "median (or p50), min, trimmed-mean (or trimmed) or p90";

    public static LatencyStatistic Parse(string? text, string flag) => text?.Trim().ToLowerInvariant() switch
    {
        "median" or "p50" => LatencyStatistic.Median,
        "min" => LatencyStatistic.Min,
        "trimmed-mean" or "trimmed" => LatencyStatistic.TrimmedMean,
        "p90" => LatencyStatistic.P90,
        _ => throw new UserInputException($"{flag} '{text}' is not known; use {Words}"),
    };
}

/// <summary>One architecture measured at both precisions under the same conditions.</summary>
public sealed record LatencyPair(Architecture Arch, double Fp32Ms, double Int8Ms)
{
    public double Speedup => Fp32Ms / Int8Ms;
}

/// <summary>Two architectures of near-equal fp32 latency whose int8 latencies differ clearly.</summary>
public sealed record LatencyContrast(LatencyPair A, LatencyPair B)
{
    public double Fp32GapFraction => Math.Abs(A.Fp32Ms - B.Fp32Ms) / Math.Min(A.Fp32Ms, B.Fp32Ms);
    public double Int8Ratio => Math.Max(A.Int8Ms, B.Int8Ms) / Math.Min(A.Int8Ms, B.Int8Ms);
}

/// <summary>The paper's Figure 4 on this machine: fp32 latency against int8 latency over many architectures.</summary>
public sealed record Figure4Result(IReadOnlyList<LatencyPair> Pairs, double Slope, double InterceptMs, double RSquared,
    double MedianSpeedup, IReadOnlyList<LatencyContrast> Contrasts, string CpuModel, string RuntimeVersion, int Threads, int Batch, int SequenceLength,
    LatencyStatistic Statistic, string Clock)
{
    public string FitText => string.Create(CultureInfo.InvariantCulture, $"latency_fp32 = {Slope:0.000} × latency_int8 {(InterceptMs < 0 ? "−" : "+")} {Math.Abs(InterceptMs):0.000} ms");
}

/// <summary>Pairs fp32/int8 records, fits <c>fp32 = a·int8 + b</c> by least squares, finds contrasting pairs, draws the scatter.</summary>
public static class LatencyProfilerFigure4
{
    /// <param name="maxFp32Gap">Two fp32 latencies count as near-equal within this fraction.</param>
    /// <param name="minInt8Ratio">Their int8 latencies count as clearly different at this ratio or more.</param>
    public static Figure4Result Analyze(IEnumerable<LatencyRecord> records, int threads = 1, int batch = 1, int sequenceLength = 128,
        double maxFp32Gap = 0.03, double minInt8Ratio = 1.25, int maxContrasts = 5, LatencyStatistic statistic = LatencyStatistic.Median)
    {
        var selected = records.Where(r => r.Threads == threads && r.Batch == batch && r.SequenceLength == sequenceLength).ToList();
        if (selected.Select(r => r.Clock).Distinct().Count() > 1)
            throw new UserInputException("the records mix wall-clock and thread-CPU timings; analyse one clock at a time");
        // The latest measurement wins when an experiment appears twice.
        var byKey = selected.GroupBy(r => (r.Arch, r.Precision)).ToDictionary(g => g.Key, g => g.OrderBy(r => r.MeasuredAt).Last());
        var pairs = byKey.Keys.Where(k => k.Precision == Precision.Fp32).Select(k => k.Arch)
            .Where(a => byKey.ContainsKey((a, Precision.Int8)))
            .Select(a => new LatencyPair(a, Value(byKey[(a, Precision.Fp32)], statistic), Value(byKey[(a, Precision.Int8)], statistic)))
            .OrderBy(p => p.Int8Ms).ToList();
        if (pairs.Count < 3)
            throw new UserInputException($"need at least 3 architectures measured in both fp32 and int8 at {threads} thread(s), batch {batch} × {sequenceLength}; found {pairs.Count}. Run 'speedlimit profile' first");

        // Least squares y = a·x + b with x = int8, y = fp32.
        double n = pairs.Count, mx = pairs.Average(p => p.Int8Ms), my = pairs.Average(p => p.Fp32Ms);
        double sxy = pairs.Sum(p => (p.Int8Ms - mx) * (p.Fp32Ms - my)), sxx = pairs.Sum(p => (p.Int8Ms - mx) * (p.Int8Ms - mx));
        double slope = sxy / sxx, intercept = my - slope * mx;
        double ssRes = pairs.Sum(p => Math.Pow(p.Fp32Ms - (slope * p.Int8Ms + intercept), 2));
        double ssTot = pairs.Sum(p => Math.Pow(p.Fp32Ms - my, 2));
        var speedups = pairs.Select(p => p.Speedup).OrderBy(s => s).ToArray();
        double medianSpeedup = speedups.Length % 2 == 1 ? speedups[speedups.Length / 2] : 0.5 * (speedups[speedups.Length / 2 - 1] + speedups[speedups.Length / 2]);

        var contrasts = new List<LatencyContrast>();
        for (int i = 0; i < pairs.Count; i++)
            for (int j = i + 1; j < pairs.Count; j++)
            {
                var c = new LatencyContrast(pairs[i], pairs[j]);
                if (c.Fp32GapFraction <= maxFp32Gap && c.Int8Ratio >= minInt8Ratio) contrasts.Add(c);
            }
        // Strongest contrasts first, each architecture used once.
        var used = new HashSet<Architecture>();
        var chosen = new List<LatencyContrast>();
        foreach (var c in contrasts.OrderByDescending(c => c.Int8Ratio))
        {
            if (chosen.Count >= maxContrasts) break;
            if (used.Contains(c.A.Arch) || used.Contains(c.B.Arch)) continue;
            used.Add(c.A.Arch); used.Add(c.B.Arch);
            chosen.Add(c);
        }
        var any = byKey.Values.First();
        return new Figure4Result(pairs, slope, intercept, ssTot == 0 ? 1 : 1 - ssRes / ssTot, medianSpeedup, chosen,
            any.CpuModel, any.RuntimeVersion, threads, batch, sequenceLength, statistic, any.Clock);
    }

    public static double Value(LatencyRecord r, LatencyStatistic statistic) => statistic switch
    {
        LatencyStatistic.Median => r.MedianMs,
        LatencyStatistic.Min => r.MinMs,
        LatencyStatistic.TrimmedMean => r.TrimmedMeanMs,
        LatencyStatistic.P90 => r.P90Ms,
        _ => throw new ArgumentException($"unknown latency statistic {statistic}"),
    };

    /// <summary>Scatter of (int8, fp32) latencies with the fit line and the paper's line, as a PNG (written via temp + rename).</summary>
    public static void SavePlot(Figure4Result result, string path, int width = 900, int height = 650)
    {
        ArgumentNullException.ThrowIfNull(result);
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"cannot write '{path}': directory '{dir}' does not exist");
        var plot = new ScottPlot.Plot();
        var xs = result.Pairs.Select(p => p.Int8Ms).ToArray();
        var ys = result.Pairs.Select(p => p.Fp32Ms).ToArray();
        var points = plot.Add.ScatterPoints(xs, ys);
        points.MarkerSize = 6;
        points.LegendText = $"{result.Pairs.Count} architectures of the paper's space";
        double x0 = 0, x1 = xs.Max() * 1.05;
        var fit = plot.Add.Line(x0, result.Slope * x0 + result.InterceptMs, x1, result.Slope * x1 + result.InterceptMs);
        fit.LineWidth = 2;
        fit.LegendText = $"fit: {result.FitText} (R² = {result.RSquared.ToString("0.000", CultureInfo.InvariantCulture)})";
        var paper = plot.Add.Line(x0, -2.65, x1, 1.75 * x1 - 2.65);
        paper.LinePattern = ScottPlot.LinePattern.Dashed;
        paper.LineWidth = 1.5f;
        paper.LegendText = "paper (AVX-VNNI Xeon): 1.75 × int8 − 2.65 ms";
        foreach (var c in result.Contrasts)
        {
            var link = plot.Add.Line(c.A.Int8Ms, c.A.Fp32Ms, c.B.Int8Ms, c.B.Fp32Ms);
            link.LineWidth = 1;
            link.Color = ScottPlot.Colors.Gray;
        }
        var stat = $"{StatisticName(result.Statistic)}, {result.Clock} clock";
        plot.XLabel($"int8 latency (ms, {stat})");
        plot.YLabel($"fp32 latency (ms, {stat})");
        plot.Title($"fp32 vs int8 latency, batch {result.Batch} × {result.SequenceLength} tokens, {result.Threads} thread(s)");
        plot.Axes.SetLimits(0, x1, 0, Math.Max(ys.Max(), result.Slope * x1 + result.InterceptMs) * 1.05);
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        AtomicFile.WriteVia(full, tmp => plot.SavePng(tmp, width, height));
    }

    public static string StatisticName(LatencyStatistic s) => s switch
    {
        LatencyStatistic.TrimmedMean => "trimmed mean",
        _ => s.ToString().ToLowerInvariant(),
    };

    /// <summary>A Markdown summary of the result (fit, R², speedup, contrasting pairs).</summary>
    public static string ToMarkdown(Figure4Result r)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new System.Text.StringBuilder();
        sb.AppendLine(inv, $"- Architectures measured in both precisions: **{r.Pairs.Count}**; statistic: **{StatisticName(r.Statistic)}** of each model's timed runs");
        sb.AppendLine(inv, $"- Least-squares fit: **{r.FitText}**, R² = **{r.RSquared:0.000}** (paper: 1.75 × int8 − 2.65 ms)");
        sb.AppendLine(inv, $"- Median int8 speedup (fp32 ÷ int8): **{r.MedianSpeedup:0.00}×** (range {r.Pairs.Min(p => p.Speedup):0.00}–{r.Pairs.Max(p => p.Speedup):0.00}×)");
        sb.AppendLine(inv, $"- Machine: {r.CpuModel}, ONNX Runtime {r.RuntimeVersion}, {r.Threads} thread(s), batch {r.Batch} × {r.SequenceLength} tokens, {r.Clock} clock");
        sb.AppendLine();
        if (r.Contrasts.Count == 0)
        {
            sb.AppendLine("No pair of architectures with near-equal fp32 latency and clearly different int8 latency was found.");
            return sb.ToString();
        }
        sb.AppendLine("| architecture A | fp32 A (ms) | int8 A (ms) | architecture B | fp32 B (ms) | int8 B (ms) | fp32 gap | int8 ratio |");
        sb.AppendLine("|---|---:|---:|---|---:|---:|---:|---:|");
        foreach (var c in r.Contrasts)
            sb.AppendLine(inv, $"| {c.A.Arch} | {c.A.Fp32Ms:0.00} | {c.A.Int8Ms:0.00} | {c.B.Arch} | {c.B.Fp32Ms:0.00} | {c.B.Int8Ms:0.00} | {c.Fp32GapFraction:P1} | {c.Int8Ratio:0.00}× |");
        return sb.ToString();
    }
}
