using ScottPlot;
using SpeedLimit.Search;

namespace SpeedLimit.Reporting;

/// <summary>
/// Metric vs latency: every candidate at its predicted latency, each search's predicted front,
/// verified winners at their measured latency, baselines at measured (else predicted) latency,
/// and one dashed line per bound.
/// </summary>
internal static class FrontPlot
{
    public static void Save(string path, RunResults results, int width = 1100, int height = 700)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int colorIndex = 0;
        double xMax = 0;

        foreach (var search in results.Searches)
        {
            var color = palette.GetColor(colorIndex++);
            var all = search.Candidates;
            if (all.Count > 0)
            {
                var points = plot.Add.ScatterPoints(all.Select(c => c.PredictedMs ?? double.NaN).ToArray(), all.Select(c => c.Metric).ToArray());
                points.Color = color.WithAlpha(0.35);
                points.MarkerSize = 6;
                points.MarkerShape = MarkerShape.FilledCircle;
                points.LegendText = $"{search.Label}: candidates (predicted ms)";
                xMax = Math.Max(xMax, all.Max(c => c.PredictedMs ?? 0));
            }
            if (search.Front.Count > 0)
            {
                var front = plot.Add.Scatter(search.Front.Select(c => c.PredictedMs!.Value).ToArray(), search.Front.Select(c => c.Metric).ToArray());
                front.Color = color;
                front.LineWidth = 2;
                front.MarkerSize = 7;
                front.ConnectStyle = ConnectStyle.StepHorizontal;
                front.LegendText = $"{search.Label}: front (predicted)";
            }
            var winners = search.Bounds.Where(b => b.Winner?.MeasuredMs is not null).Select(b => b.Winner!).ToList();
            if (winners.Count > 0)
            {
                var w = plot.Add.ScatterPoints(winners.Select(c => c.MeasuredMs!.Value).ToArray(), winners.Select(c => c.Metric).ToArray());
                w.Color = color;
                w.MarkerSize = 16;
                w.MarkerShape = MarkerShape.FilledDiamond;
                w.LegendText = $"{search.Label}: verified winners (measured ms)";
                xMax = Math.Max(xMax, winners.Max(c => c.MeasuredMs!.Value));
            }
        }

        foreach (var baseline in results.Baselines)
        {
            var color = palette.GetColor(colorIndex++);
            var entries = baseline.Entries.Where(e => (e.Candidate.MeasuredMs ?? e.Candidate.PredictedMs) is not null).ToList();
            if (entries.Count == 0) continue;
            var xs = entries.Select(e => (e.Candidate.MeasuredMs ?? e.Candidate.PredictedMs)!.Value).ToArray();
            var ys = entries.Select(e => e.Candidate.Metric).ToArray();
            var b = plot.Add.Scatter(xs, ys);
            b.Color = color;
            b.LineWidth = 1;
            b.LinePattern = LinePattern.Dotted;
            b.MarkerSize = 11;
            b.MarkerShape = MarkerShape.FilledSquare;
            b.LegendText = $"{baseline.Label} (measured ms)";
            for (int i = 0; i < entries.Count; i++)
            {
                var label = plot.Add.Text(entries[i].Name, xs[i], ys[i]);
                label.LabelFontSize = 11;
                label.LabelFontColor = color;
                label.OffsetX = 8;
                label.OffsetY = -6;
            }
            xMax = Math.Max(xMax, xs.Max());
        }

        foreach (var bound in results.Searches.SelectMany(s => s.Definition.BoundsMs).Distinct().Order())
        {
            var line = plot.Add.VerticalLine(bound);
            line.Color = Colors.Gray;
            line.LinePattern = LinePattern.Dashed;
            line.LineWidth = 1.5f;
            line.Text = $"{bound:0.##} ms";
            line.LabelFontSize = 11;
            xMax = Math.Max(xMax, bound);
        }

        var task = results.Searches.Select(s => s.Definition.Task).Concat(results.Baselines.Select(b => b.Definition.Task)).FirstOrDefault() ?? "task";
        plot.Title(results.Title);
        plot.XLabel("latency (ms): candidates and fronts predicted, winners and baselines measured");
        plot.YLabel($"{task} dev metric (higher is better)");
        plot.ShowLegend(Alignment.LowerRight);
        plot.Axes.AutoScale();
        if (xMax > 0) plot.Axes.SetLimitsX(0, xMax * 1.08);
        plot.SavePng(path, width, height);
    }
}
