using System.Diagnostics;
using SpeedLimit.Checkpoints;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Pretrained;
using SpeedLimit.Training;

namespace SpeedLimit.Bench;

/// <summary>
/// Importance reordering on real data: leading slices of a fine-tuned teacher (SPEEDLIMIT_TEACHER, a
/// checkpoint such as the one `search --pretrained` fine-tunes) scored on SST-2 dev (SPEEDLIMIT_SST2,
/// the GLUE folder) without reordering, with gradient importance and with L1 importance. The same
/// seeded subsample as scripts/paper-comparison.sh REDUCED=1 (1,200 train for the importance, 300 dev).
/// Skipped with a note when the variables are not set.
/// </summary>
public sealed class ImportanceBench : IBenchSection
{
    public string Name => "importance";
    public string Description => "leading slices of a fine-tuned teacher on SST-2 dev: unordered vs gradient vs L1 reordering";

    public void Run(BenchReport report, bool quick)
    {
        var teacherPath = Environment.GetEnvironmentVariable("SPEEDLIMIT_TEACHER");
        var data = Environment.GetEnvironmentVariable("SPEEDLIMIT_SST2");
        if (teacherPath is null || data is null || !File.Exists(teacherPath) || !Directory.Exists(data))
        {
            report.Note("skipped: set SPEEDLIMIT_TEACHER (a fine-tuned checkpoint) and SPEEDLIMIT_SST2 (the GLUE SST-2 folder)");
            return;
        }
        report.Note($"load: {File.ReadAllText("/proc/loadavg").Trim()}");
        var vocab = Path.Combine(Path.GetTempPath(), $"speedlimit-bench-vocab-{Guid.NewGuid():N}.txt");
        EncodedTask task;
        try
        {
            AtomicFile.WriteAllText(vocab, string.Join('\n', PretrainedLoader.LoadMiniLm().Vocab) + "\n");
            task = EncodedTask.Load(new DataOptions { Task = "sst2", DataDir = data, VocabPath = vocab, MaxSequenceLength = 64, MaxTrainExamples = 1200, MaxDevExamples = quick ? 100 : 300 }, seed: 1);
        }
        finally { File.Delete(vocab); }
        var saved = BertCheckpoint.Load(teacherPath);
        var archs = new[] { saved.Config.Arch, new Architecture(6, 384, 768), new Architecture(6, 384, 384), new Architecture(6, 288, 1536), new Architecture(6, 192, 768), new Architecture(3, 384, 1536) }
            .Where(a => a.FitsIn(saved.Config.Arch)).Distinct().ToList();
        var clock = Stopwatch.StartNew();
        foreach (var kind in new ImportanceKind?[] { null, ImportanceKind.Gradient, ImportanceKind.Magnitude })
        {
            var model = new BertModel(saved.Config, saved.Parameters.ToArray());
            string name = kind?.ToString().ToLowerInvariant() ?? "unordered";
            if (kind is { } k) ImportanceReordering.Reorder(model, k, task.TrainBatches(32, 1, epoch: 0).Take(16));
            var super = new ElasticSupermodel(model);
            foreach (var arch in archs)
            {
                var logits = task.PredictDev(super.Extract(arch));
                double acc = task.Score(logits).Primary;
                double loss = Losses.SoftmaxCrossEntropy(logits.SelectMany(r => r).ToArray(), task.Dev.Select(e => e.ClassId).ToArray(), saved.Config.Labels);
                report.Figure($"importance {name} {arch} dev accuracy", acc, "accuracy");
                report.Note($"{name,-10} {arch,-16} dev accuracy {acc:F4}, cross-entropy {loss:F3}");
            }
        }
        report.Note($"{clock.Elapsed.TotalSeconds:F0} s, {task.Dev.Count} dev examples");
    }
}
