using System.Globalization;
using System.Text;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Reporting;

/// <summary>
/// Writes a run folder (results.json, report.md, front.png) atomically: everything goes into a
/// sibling temporary folder that is renamed into place only when complete, so a run folder is
/// either whole or absent.
/// </summary>
public static class RunReport
{
    public const string ResultsFile = "results.json";
    public const string ReportFile = "report.md";
    public const string PlotFile = "front.png";

    /// <summary>Writes the run folder; an existing folder is replaced only with <paramref name="overwrite"/>.</summary>
    public static void Write(string runFolder, RunResults results, bool overwrite = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(runFolder);
        ArgumentNullException.ThrowIfNull(results);
        var target = Path.GetFullPath(runFolder).TrimEnd(Path.DirectorySeparatorChar);
        if (Directory.Exists(target) && !overwrite)
            throw new UserInputException($"run folder '{runFolder}' already exists; choose another folder or allow overwriting");
        if (File.Exists(target))
            throw new UserInputException($"'{runFolder}' is a file, not a run folder; choose a folder path");
        var parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".{Path.GetFileName(target)}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            WriteInto(temp, results);
            if (Directory.Exists(target))
            {
                var old = Path.Combine(parent, $".{Path.GetFileName(target)}.old-{Guid.NewGuid():N}");
                Directory.Move(target, old);
                Directory.Move(temp, target);
                Directory.Delete(old, recursive: true);
            }
            else Directory.Move(temp, target);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }
    }

    /// <summary>
    /// Writes results.json, front.png and report.md (and, for a pipeline run, deployment.json and the
    /// package README) into an existing folder, each file once and complete. The pipeline calls it on
    /// its staging folder after export and verification, so the report is rendered from the finished
    /// winner records.
    /// </summary>
    public static void WriteInto(string folder, RunResults results, Deployment? deployment = null)
    {
        ArgumentNullException.ThrowIfNull(results);
        AtomicFile.WriteAllText(Path.Combine(folder, ResultsFile), results.ToJson());
        FrontPlot.Save(Path.Combine(folder, PlotFile), results);
        if (deployment is not null)
        {
            RunPackage.WriteDeployment(folder, deployment);
            RunPackage.WriteReadme(folder, deployment);
        }
        AtomicFile.WriteAllText(Path.Combine(folder, ReportFile), Markdown(results, deployment));
    }

    /// <summary>Encoder parameters (attention, FFN, LayerNorms) of (e, h, f): a size comparable across searches.</summary>
    public static long EncoderParameters(Architecture a) =>
        (long)a.Layers * (4L * a.Hidden * a.Hidden + 4L * a.Hidden + 2L * a.Hidden * a.Ffn + a.Ffn + a.Hidden + 4L * a.Hidden);

    public static string Markdown(RunResults results, Deployment? deployment = null)
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        void Line(string s = "") => md.Append(s).Append('\n');
        string Ms(double? v) => v is null ? "–" : v.Value.ToString("0.###", inv);
        string Metric(double v) => v.ToString("0.####", inv);
        string Params(Architecture a) => (EncoderParameters(a) / 1e6).ToString("0.###", inv);

        Line($"# {results.Title}");
        Line();
        Line($"Written {results.CreatedAt.ToString("u", inv)}. Candidates and fronts are placed at their **predicted** latency; " +
             "verified winners and baselines at their **measured** latency. A bound is met only when the measured latency is within it.");
        Line();
        Line($"![metric vs latency]({PlotFile})");
        Line();

        foreach (var s in results.Searches)
        {
            var d = s.Definition;
            var o = d.Options;
            Line($"## {s.Label}");
            Line();
            Line($"- task `{d.Task}`, precision **{EvolutionarySearch.PrecisionName(d.Precision)}**, seed {d.Seed}{(s.StudyName is null ? "" : $", study `{s.StudyName}`")}");
            Line($"- space: {d.Space}");
            Line($"- budget per candidate: {(d.Budget.Length == 0 ? "–" : d.Budget)}");
            Line(string.Create(inv, $"- search: {o.Generations} generations × {o.CandidatesPerGeneration} candidates, {o.Parents} parents, mutation p {o.MutationProbability}, per-dimension p {o.DimensionMutationProbability}, steps e ±{o.LayerMaxSteps} h ±{o.HiddenMaxSteps} f ±{o.FfnMaxSteps}; verify {o.VerifyStatistic.ToString().ToLowerInvariant()} of up to {o.MaxVerifications} candidates per bound"));
            var t = s.Timings;
            Line(string.Create(inv, $"- {s.Candidates.Count} candidates ({t.Evaluations} evaluated in this run, {t.Reused} reused), {t.Measurements} measurements ({t.ReusedMeasurements} reused); narrowing {t.NarrowSeconds:0.#} s, search {t.SearchSeconds:0.#} s, verification {t.VerifySeconds:0.#} s, total {t.TotalSeconds:0.#} s"));
            Line();
            Line("| bound (ms) | margin | \\|A*\\| | winner (e,h,f) | metric | predicted (ms) | measured (ms) | encoder params (M) | verified | note |");
            Line("|---:|---:|---:|---|---:|---:|---:|---:|---|---|");
            foreach (var b in s.Bounds)
            {
                var w = b.Winner;
                Line(string.Create(inv, $"| {Ms(b.BoundMs)} | {b.RelativeMargin:0.#%} | {b.NarrowedCount}{(b.Exhausted ? " (all seen)" : "")} | {(w is null ? "none" : w.Arch.ToString())} | {(w is null ? "–" : Metric(w.Metric))} | {Ms(w?.PredictedMs)} | {Ms(w?.MeasuredMs)} | {(w is null ? "–" : Params(w.Arch))} | {(b.Verified ? "yes" : "**no**")} | {b.Note} |"));
            }
            Line();
            Line("Pareto front (predicted latency):");
            Line();
            Line("| (e,h,f) | predicted (ms) | measured (ms) | metric |");
            Line("|---|---:|---:|---:|");
            foreach (var c in s.Front) Line($"| {c.Arch} | {Ms(c.PredictedMs)} | {Ms(c.MeasuredMs)} | {Metric(c.Metric)} |");
            Line();
        }

        foreach (var b in results.Baselines)
        {
            Line($"## {b.Label}");
            Line();
            Line($"- task `{b.Definition.Task}`, precision **{EvolutionarySearch.PrecisionName(b.Definition.Precision)}**, seed {b.Definition.Seed}, budget {(b.Definition.Budget.Length == 0 ? "–" : b.Definition.Budget)}");
            Line();
            Line("| baseline | (e,h,f) | metric | predicted (ms) | measured (ms) | encoder params (M) |");
            Line("|---|---|---:|---:|---:|---:|");
            foreach (var e in b.Entries)
                Line($"| {e.Name} | {e.Candidate.Arch} | {Metric(e.Candidate.Metric)} | {Ms(e.Candidate.PredictedMs)} | {Ms(e.Candidate.MeasuredMs)} | {Params(e.Candidate.Arch)} |");
            Line();
        }

        var bounds = results.Searches.SelectMany(s => s.Definition.BoundsMs).Distinct().Order().ToList();
        if (bounds.Count > 0 && results.Searches.Count + results.Baselines.Count > 1)
        {
            Line("## At each bound (measured latency)");
            Line();
            Line("Best model of each series whose measured latency is within the bound.");
            Line();
            var series = results.Searches.Select(s => s.Label).Concat(results.Baselines.Select(b => b.Label)).ToList();
            Line("| bound (ms) | " + string.Join(" | ", series) + " |");
            Line("|---:|" + string.Concat(series.Select(_ => "---|")));
            foreach (var bound in bounds)
            {
                var cells = new List<string>();
                foreach (var s in results.Searches)
                {
                    var w = s.Bounds.FirstOrDefault(x => x.BoundMs == bound)?.Winner;
                    cells.Add(w is not null && w.MeasuredMs <= bound ? $"{Metric(w.Metric)} {w.Arch} @ {Ms(w.MeasuredMs)} ms" : "–");
                }
                foreach (var b in results.Baselines)
                {
                    var best = b.Entries.Where(e => e.Candidate.MeasuredMs <= bound).MaxBy(e => e.Candidate.Metric);
                    cells.Add(best is null ? "–" : $"{Metric(best.Candidate.Metric)} {best.Name} @ {Ms(best.Candidate.MeasuredMs)} ms");
                }
                Line($"| {Ms(bound)} | " + string.Join(" | ", cells) + " |");
            }
            Line();
        }
        if (deployment is not null) DeploymentSection(deployment, Line);
        return md.ToString();
    }

    private static void DeploymentSection(Deployment d, Action<string> line)
    {
        var inv = CultureInfo.InvariantCulture;
        line("## Deployable models");
        line("");
        line($"Each file was rebuilt, exported and re-measured; dev metrics are on the {d.Winners.FirstOrDefault()?.Engine.Runtime ?? "engine"} and on ONNX Runtime " +
             $"{RunPackage.OnnxScoring}. How to call them: [{RunPackage.ReadmeFile}]({RunPackage.ReadmeFile}).");
        line("");
        foreach (var row in WinnerTable.Markdown(d.Winners)) line(row);
        if (d.Winners.Count > 0)
        {
            var m = d.Winners[0].Verdict.Measurement;
            line("");
            line(string.Create(inv, $"Measured with ONNX Runtime {m.RuntimeVersion} on {m.CpuModel}, {m.Threads} thread(s), batch {m.Batch} × {m.SequenceLength} tokens, {m.Runs} timed runs after warm-up; the bound is checked against the {d.Winners[0].Verdict.Statistic}."));
            foreach (var w in d.Winners.Where(w => w.Padding is not null))
            {
                var p = w.Padding!;
                line(string.Create(inv, $"int8 dynamic quantization makes outputs depend slightly on padding and batch composition: `{w.OnnxFile}` scored {w.OnnxRuntime.Metric:F4} alone and {p.BatchedMetric:F4} in padded batches of {p.BatchSize}; logits moved by up to {p.MaxAbsLogitDelta:G3}, the top class changed on {p.TopClassChanges} of {p.Examples} dev examples."));
            }
        }
        if (d.Notes.Count > 0)
        {
            line("");
            line("## Notes");
            line("");
            foreach (var n in d.Notes) line($"- {n}");
        }
        if (d.StageSeconds.Count > 0)
        {
            line("");
            line("## Stage timings");
            line("");
            foreach (var (stage, sec) in d.StageSeconds) line(string.Create(inv, $"- {stage}: {sec:F1} s"));
        }
        line("");
    }
}
