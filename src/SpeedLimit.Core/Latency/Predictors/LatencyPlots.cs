using ScottPlot;

namespace SpeedLimit.Latency.Predictors;

/// <summary>PNG figures of a latency predictor's fit.</summary>
public static class LatencyPlots
{
    /// <summary>Predicted vs measured latency of held-out architectures, with the y = x line and ±10 % bands.</summary>
    public static void SavePredictedVsMeasured(string path, IReadOnlyList<PredictedPoint> points, string title, int width = 900, int height = 700)
    {
        if (points.Count == 0) throw new ArgumentException("no held-out predictions to plot; fit with a hold-out fraction above 0");
        var plot = new Plot();
        var measured = points.Select(p => p.MeasuredMs).ToArray();
        var predicted = points.Select(p => p.PredictedMs).ToArray();
        double lo = Math.Min(measured.Min(), predicted.Min()) * 0.95, hi = Math.Max(measured.Max(), predicted.Max()) * 1.05;
        var diag = plot.Add.Line(lo, lo, hi, hi);
        diag.LegendText = "predicted = measured";
        diag.LineColor = Colors.Black;
        foreach (var (factor, label) in new[] { (1.1, "±10 %"), (0.9, "") })
        {
            var band = plot.Add.Line(lo, lo * factor, hi, hi * factor);
            band.LinePattern = LinePattern.Dashed;
            band.LineColor = Colors.Gray;
            band.LegendText = label;
        }
        var scatter = plot.Add.ScatterPoints(measured, predicted);
        scatter.LegendText = $"held-out architectures ({points.Count})";
        scatter.MarkerSize = 5;
        plot.Title(title);
        plot.XLabel("measured latency (ms)");
        plot.YLabel("predicted latency (ms)");
        plot.Axes.SetLimits(lo, hi, lo, hi);
        plot.ShowLegend(Alignment.UpperLeft);
        Save(plot, path, width, height);
    }

    /// <summary>Held-out MAPE against the number of profiled architectures fitted on.</summary>
    public static void SaveLearningCurve(string path, IReadOnlyList<(string Label, IReadOnlyList<LearningCurvePoint> Points)> curves, string title,
        int width = 900, int height = 600)
    {
        var plot = new Plot();
        foreach (var (label, pts) in curves)
        {
            if (pts.Count == 0) continue;
            var s = plot.Add.Scatter(pts.Select(p => (double)p.TrainCount).ToArray(), pts.Select(p => p.MeanMapePercent).ToArray());
            s.LegendText = label;
        }
        plot.Title(title);
        plot.XLabel("profiled architectures fitted on");
        plot.YLabel("held-out MAPE (%)");
        plot.ShowLegend(Alignment.UpperRight);
        Save(plot, path, width, height);
    }

    private static void Save(Plot plot, string path, int width, int height)
    {
        AtomicFile.WriteVia(path, tmp => plot.SavePng(tmp, width, height));
    }
}
