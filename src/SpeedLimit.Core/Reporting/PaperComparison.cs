using System.Globalization;
using System.Text;
using ScottPlot;
using SpeedLimit.Search;

namespace SpeedLimit.Reporting;

/// <summary>One model placed for the comparison: its dev metric, measured latency and size.</summary>
public sealed record ComparedModel(string Name, Architecture Arch, Precision Precision, double Metric, double MeasuredMs, long OnnxBytes, long Parameters);

/// <summary>At one bound: each series' best model whose measured latency is within it.</summary>
public sealed record ComparisonRow(double BoundMs, ComparedModel? Int8Search, ComparedModel? Fp32Search, ComparedModel? UniformInt8, ComparedModel? UniformFp32);

/// <summary>
/// The paper's comparison (its Figures 1 and 3) from a run with <c>--compare-fp32</c>, uniform
/// baselines and a teacher: per bound the int8 search's winner against the fp32 search's and the
/// best uniform baselines, all at measured latency; sizes as exported ONNX bytes.
/// </summary>
public sealed record PaperComparison(string Title, IReadOnlyList<ComparisonRow> Rows, ComparedModel? TeacherFp32, ComparedModel? TeacherInt8,
    IReadOnlyList<ComparedModel> Uniform)
{
    /// <summary>Label prefix of the baseline series that holds the fine-tuned teacher.</summary>
    public const string TeacherLabel = "teacher";

    /// <summary>Bounds where both searches have a winner within the bound.</summary>
    public int BoundsCompared => Rows.Count(r => r.Int8Search is not null && r.Fp32Search is not null);
    /// <summary>Of those, bounds where the int8 winner's metric is at or above the fp32 winner's.</summary>
    public int Int8AtOrAbove => Rows.Count(r => r.Int8Search is { } a && r.Fp32Search is { } b && a.Metric >= b.Metric);
    /// <summary>The int8 winner at the loosest bound that has one.</summary>
    public ComparedModel? LoosestInt8 => Rows.Where(r => r.Int8Search is not null).MaxBy(r => r.BoundMs)?.Int8Search;
    /// <summary>Mean over compared bounds of fp32-winner bytes ÷ int8-winner bytes (the paper reports 3.4×).</summary>
    public double? MeanSizeRatio
    {
        get
        {
            var ratios = Rows.Where(r => r.Int8Search is not null && r.Fp32Search is not null)
                .Select(r => (double)r.Fp32Search!.OnnxBytes / r.Int8Search!.OnnxBytes).ToList();
            return ratios.Count == 0 ? null : ratios.Average();
        }
    }

    /// <summary>Collects the comparison; <paramref name="onnxBytes"/> and <paramref name="parameters"/> size an architecture as deployed.</summary>
    /// <param name="remeasuredMs">
    /// Optional latencies measured again (e.g. with the thread-CPU clock on a loaded machine): models are
    /// placed at these instead of the run's own measurements, and a uniform baseline counts within a bound
    /// by them. The searches' winners stay the ones each search verified.
    /// </param>
    public static PaperComparison From(RunResults results, Func<Architecture, Precision, long> onnxBytes, Func<Architecture, long> parameters,
        Func<Architecture, Precision, double?>? remeasuredMs = null)
    {
        ArgumentNullException.ThrowIfNull(results);
        ComparedModel Model(string name, CandidateRecord c, Precision p) =>
            new(name, c.Arch, p, c.Metric, remeasuredMs?.Invoke(c.Arch, p) ?? c.MeasuredMs!.Value, onnxBytes(c.Arch, p), parameters(c.Arch));
        var int8 = results.Searches.FirstOrDefault(s => s.Precision == Precision.Int8);
        var fp32 = results.Searches.FirstOrDefault(s => s.Precision == Precision.Fp32);
        var teacher = results.Baselines.Where(b => b.Label.StartsWith(TeacherLabel, StringComparison.Ordinal)).ToList();
        var uniform = results.Baselines.Except(teacher)
            .SelectMany(b => b.Entries.Where(e => e.Candidate.MeasuredMs is not null).Select(e => Model($"{e.Name} {EvolutionarySearch.PrecisionName(b.Precision)}", e.Candidate, b.Precision)))
            .ToList();
        ComparedModel? Teacher(Precision p) => teacher.Where(b => b.Precision == p).SelectMany(b => b.Entries)
            .Where(e => e.Candidate.MeasuredMs is not null).Select(e => Model($"teacher {EvolutionarySearch.PrecisionName(p)}", e.Candidate, p)).FirstOrDefault();
        ComparedModel? Winner(SearchResult? s, double bound)
        {
            var w = s?.Bounds.FirstOrDefault(b => b.BoundMs == bound)?.Winner;
            return w?.MeasuredMs is double ms && ms <= bound ? Model($"{s!.Label} winner", w, s.Precision) : null;
        }
        var bounds = results.Searches.SelectMany(s => s.Definition.BoundsMs).Distinct().Order().ToList();
        var rows = bounds.Select(b => new ComparisonRow(b, Winner(int8, b), Winner(fp32, b),
            uniform.Where(u => u.Precision == Precision.Int8 && u.MeasuredMs <= b).MaxBy(u => u.Metric),
            uniform.Where(u => u.Precision == Precision.Fp32 && u.MeasuredMs <= b).MaxBy(u => u.Metric))).ToList();
        return new PaperComparison(results.Title, rows, Teacher(Precision.Fp32), Teacher(Precision.Int8), uniform);
    }

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private static string Mb(long bytes) => (bytes / 1e6).ToString("0.0", Inv);
    private static string Cell(ComparedModel? m) => m is null ? "–" :
        string.Create(Inv, $"{m.Metric:0.0000} {m.Arch} @ {m.MeasuredMs:0.###} ms, {Mb(m.OnnxBytes)} MB");

    /// <summary>The tables and headline figures as Markdown.</summary>
    public string Markdown()
    {
        var md = new StringBuilder();
        void Line(string s = "") => md.Append(s).Append('\n');
        Line("| bound (ms) | int8 search (SpeedLimit) | fp32 search (AutoTinyBERT-style) | best uniform int8 | best uniform fp32 | int8 − fp32 search |");
        Line("|---:|---|---|---|---|---:|");
        foreach (var r in Rows)
        {
            string diff = r.Int8Search is { } a && r.Fp32Search is { } b ? (100 * (a.Metric - b.Metric)).ToString("+0.00;−0.00;0.00", Inv) + " pts" : "–";
            Line(string.Create(Inv, $"| {r.BoundMs:0.###} | {Cell(r.Int8Search)} | {Cell(r.Fp32Search)} | {Cell(r.UniformInt8)} | {Cell(r.UniformFp32)} | {diff} |"));
        }
        Line();
        Line("| model | (e,h,f) | dev metric | measured (ms) | ONNX (MB) | parameters (M) |");
        Line("|---|---|---:|---:|---:|---:|");
        foreach (var m in new[] { TeacherFp32, TeacherInt8 }.OfType<ComparedModel>().Concat(Uniform))
            Line(string.Create(Inv, $"| {m.Name} | {m.Arch} | {m.Metric:0.0000} | {m.MeasuredMs:0.###} | {Mb(m.OnnxBytes)} | {m.Parameters / 1e6:0.00} |"));
        Line();
        foreach (var s in Headlines()) Line($"- {s}");
        return md.ToString();
    }

    /// <summary>The figures the issue asks for, as sentences (also printed by the CLI).</summary>
    public IReadOnlyList<string> Headlines()
    {
        var list = new List<string>
        {
            $"int8 search at or above the fp32 search at {Int8AtOrAbove} of {BoundsCompared} bounds where both found a model within the bound (of {Rows.Count} bounds)",
        };
        if (LoosestInt8 is { } best && TeacherFp32 is { } t)
            list.Add(string.Create(Inv, $"best int8 model at the loosest bound {best.Arch}: {best.Metric:0.0000}, teacher (fp32) {t.Metric:0.0000}: {100 * (best.Metric - t.Metric):+0.00;−0.00} points; {t.MeasuredMs / best.MeasuredMs:0.0}× faster, {(double)t.OnnxBytes / best.OnnxBytes:0.0}× smaller"));
        if (MeanSizeRatio is { } ratio)
            list.Add(string.Create(Inv, $"fp32-search winners are on average {ratio:0.00}× the bytes of the int8-search winners at the same bound (paper: 3.4×)"));
        return list;
    }

    /// <summary>Figure 1 (metric vs measured latency, every series) and Figure 3 (winners' ONNX sizes per bound) as PNGs.</summary>
    public void SavePlots(string accuracyPng, string sizesPng, int width = 1100, int height = 700)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        void Series(IReadOnlyList<ComparedModel> models, string legend, int color, MarkerShape shape, float size, bool connect)
        {
            if (models.Count == 0) return;
            var xs = models.Select(m => m.MeasuredMs).ToArray();
            var ys = models.Select(m => m.Metric).ToArray();
            var s = plot.Add.Scatter(xs, ys);
            s.Color = palette.GetColor(color);
            s.LineWidth = connect ? 2 : 0;
            s.MarkerShape = shape;
            s.MarkerSize = size;
            s.LegendText = legend;
            foreach (var m in models)
            {
                var label = plot.Add.Text(m.Arch.ToString(), m.MeasuredMs, m.Metric);
                label.LabelFontSize = 10;
                label.LabelFontColor = palette.GetColor(color);
                label.OffsetX = 6;
                label.OffsetY = -4;
            }
        }
        Series(Rows.Select(r => r.Int8Search).OfType<ComparedModel>().DistinctBy(m => m.Arch).OrderBy(m => m.MeasuredMs).ToList(), "int8 search (SpeedLimit) winners", 0, MarkerShape.FilledDiamond, 14, true);
        Series(Rows.Select(r => r.Fp32Search).OfType<ComparedModel>().DistinctBy(m => m.Arch).OrderBy(m => m.MeasuredMs).ToList(), "fp32 search (AutoTinyBERT-style) winners", 1, MarkerShape.FilledCircle, 12, true);
        Series(Uniform.Where(u => u.Precision == Precision.Int8).OrderBy(m => m.MeasuredMs).ToList(), "uniform int8", 2, MarkerShape.FilledSquare, 10, false);
        Series(Uniform.Where(u => u.Precision == Precision.Fp32).OrderBy(m => m.MeasuredMs).ToList(), "uniform fp32", 3, MarkerShape.OpenSquare, 10, false);
        Series(new[] { TeacherFp32, TeacherInt8 }.OfType<ComparedModel>().ToList(), "teacher (fine-tuned pretrained): fp32, int8", 4, MarkerShape.FilledTriangleUp, 14, false);
        foreach (var r in Rows)
        {
            var line = plot.Add.VerticalLine(r.BoundMs);
            line.Color = Colors.Gray;
            line.LinePattern = LinePattern.Dashed;
            line.Text = string.Create(Inv, $"{r.BoundMs:0.##} ms");
            line.LabelFontSize = 10;
        }
        plot.Title(Title);
        plot.XLabel("measured latency (ms, batch 1 × 128 tokens)");
        plot.YLabel("dev metric");
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(accuracyPng, width, height);

        var bars = new Plot();
        var list = new List<Bar>();
        var ticks = new List<Tick>();
        for (int i = 0; i < Rows.Count; i++)
        {
            var r = Rows[i];
            if (r.Int8Search is { } a) list.Add(new Bar { Position = 3 * i, Value = a.OnnxBytes / 1e6, FillColor = palette.GetColor(0), Label = a.Arch.ToString() });
            if (r.Fp32Search is { } b) list.Add(new Bar { Position = 3 * i + 1, Value = b.OnnxBytes / 1e6, FillColor = palette.GetColor(1), Label = b.Arch.ToString() });
            ticks.Add(new Tick(3 * i + 0.5, string.Create(Inv, $"{r.BoundMs:0.##} ms")));
        }
        var barPlot = bars.Add.Bars(list);
        barPlot.ValueLabelStyle.FontSize = 10;
        bars.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        bars.Legend.ManualItems.Add(new LegendItem { LabelText = "int8 search winner (int8 ONNX)", FillColor = palette.GetColor(0) });
        bars.Legend.ManualItems.Add(new LegendItem { LabelText = "fp32 search winner (fp32 ONNX)", FillColor = palette.GetColor(1) });
        bars.ShowLegend(Alignment.UpperLeft);
        bars.Title("Winners' deployed size per bound");
        bars.YLabel("ONNX file (MB)");
        bars.Axes.Margins(bottom: 0);
        bars.SavePng(sizesPng, width, height * 3 / 4);
    }
}
