using System.Diagnostics;
using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Bench;

/// <summary>
/// Training throughput of the engine at sequence length 128: tokens/s and model FLOPs utilisation
/// (achieved matmul FLOP/s ÷ the FMA peak measured in the same run), plus peak memory of the
/// supermodel-sized run.
/// </summary>
public sealed class TrainingBench : IBenchSection
{
    public string Name => "train";
    public string Description => "training tokens/s, MFU vs measured FMA peak, peak memory (seq 128)";

    public void Run(BenchReport report, bool quick)
    {
        const int T = 128, vocab = 30522;
        int batch = quick ? 4 : 32, runs = quick ? 2 : 5;
        // MFU reference: the FMA peak of the same number of threads, measured again around each configuration's steps:
        // these VMs change speed by up to a third from minute to minute, and a peak from the start of the section would
        // turn that into MFU. The section's first one-core peak is printed beside it for comparison.
        report.Note($"  load before: {Affinity.LoadAverage()} (/proc/loadavg)");
        double corePeak = FmaPeak.Measure(1, 5).CpuGflops;
        report.Figure("fma_peak_per_core", corePeak, "GFLOP/s");
        double dataSecondsPerBatch = DataSecondsPerBatch(batch, T);
        report.Figure($"train_data_ms_per_batch_b{batch}", dataSecondsPerBatch * 1e3, "ms");
        foreach (int threads in new[] { 1, 2 })
        {
            foreach (var arch in new[] { new Architecture(4, 256, 1024), new Architecture(5, 528, 1016) })
            {
                var config = new BertConfig(arch, arch.Hidden % 12 == 0 ? 12 : 4, vocab, HeadKind.Classification, labels: 2, maxPositions: T); // 256 is not a multiple of 12
                var model = BertModel.CreateRandom(config, 1);
                model.Threads = threads;
                var trainer = new Trainer(model, new TrainingOptions { LearningRate = 1e-4f, Threads = threads }, 100, dropout: 0.1f);
                var rng = new Random(2);
                var ids = Enumerable.Range(0, batch * T).Select(_ => rng.Next(1000, vocab)).ToArray();
                var labelled = new LabeledBatch(EncoderInput.Unpadded(batch, T, ids), Enumerable.Range(0, batch).Select(i => i % 2).ToArray());
                StepFigures(report, "train", $"{arch}_b{batch}_{threads}t", trainer, labelled, T, threads, runs, corePeak, dataSecondsPerBatch);
            }
        }
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        report.Figure($"peak_working_set_after_(5,528,1016)_b{batch}x128", process.PeakWorkingSet64 / 1048576.0, "MiB");
        var big = new BertConfig(new Architecture(5, 528, 1016), 12, vocab, HeadKind.Classification, maxPositions: T);
        long parameters = new BertParameterLayout(big).TotalLength;
        report.Figure("model_state_(5,528,1016)_params+grads+adam", parameters * 4.0 * 4 / 1048576.0, "MiB");
    }

    /// <summary>
    /// Times <paramref name="runs"/> steps after a warm-up and prints tokens/s and MFU: model FLOPs per second against
    /// the FMA peak of as many threads, measured just before and after the steps (and, for comparison, against the
    /// section's first one-core peak × threads), on the wall and the process-CPU clocks, then the phase breakdown.
    /// </summary>
    internal static void StepFigures(BenchReport report, string prefix, string tag, Trainer trainer, LabeledBatch batch, int T, int threads,
        int runs, double sectionPeak, double dataSecondsPerBatch)
    {
        // Two untimed steps page in the activations, gradients and optimizer moments; TimeSteps takes one more
        // after the peak measurement, to wake the worker thread again.
        trainer.Step(batch);
        trainer.Step(batch);
        var before = FmaPeak.Measure(threads, 3);
        var (wall, cpu) = TimeSteps(trainer, batch, runs);
        var after = FmaPeak.Measure(threads, 3);
        // The peak of this many threads, as measured (two busy cores run a little slower than one alone), wall and CPU clock.
        double peakWall = (before.WallGflops + after.WallGflops) / 2, peakCpu = (before.CpuGflops + after.CpuGflops) / 2;
        double flops = TrainingFlops(trainer.Model.Config, batch.Input.Batch, T);
        double w = Timing.Median(wall), c = Timing.Median(cpu) / threads; // cpu per thread ≈ wall on an idle machine
        int tokens = batch.Input.Batch * T;
        report.Figure($"{prefix}_tokens_per_s_{tag}", tokens / w, "tokens/s");
        report.Figure($"{prefix}_tokens_per_s_{tag}_cpu_clock", tokens / c, "tokens/s");
        report.Figure($"{prefix}_gflops_{tag}_wall", flops / w / 1e9, "GFLOP/s");
        report.Figure($"fma_peak_t{threads}_around_{tag}", peakWall, "GFLOP/s");
        report.Figure($"{prefix}_mfu_{tag}", flops / w / 1e9 / peakWall, "ratio");
        report.Figure($"{prefix}_mfu_{tag}_cpu_clock", flops / c / 1e9 / peakCpu, "ratio");
        report.Figure($"{prefix}_mfu_{tag}_vs_section_start_peak", flops / w / 1e9 / (sectionPeak * threads), "ratio");
        PhaseBreakdown(report, prefix, tag, trainer.PhaseTimes, dataSecondsPerBatch);
    }

    /// <summary>
    /// Where a step's time goes: forward, loss, backward, gradient check + clipping, optimizer (from the trainer's
    /// phase clock over the timed steps) and data (producing one batch from an encoded task: shuffle, pad, copy).
    /// </summary>
    internal static void PhaseBreakdown(BenchReport report, string prefix, string tag, TrainingPhaseTimes p, double dataSecondsPerBatch)
    {
        int n = Math.Max(1, p.MicroBatches);
        (string Name, double Seconds)[] phases =
        [
            ("forward", p.ForwardSeconds / n), ("loss", p.LossSeconds / n), ("backward", p.BackwardSeconds / n),
            ("gradient_check", p.GradientCheckSeconds / n), ("optimizer", p.OptimizerSeconds / n), ("data", dataSecondsPerBatch),
        ];
        double total = phases.Sum(x => x.Seconds);
        foreach (var (name, seconds) in phases)
            report.Figure($"{prefix}_phase_{name}_ms_{tag}", seconds * 1e3, "ms");
        report.Note("  " + string.Join(", ", phases.Select(x => $"{x.Name} {100 * x.Seconds / total:0.0}%")) + $" of {total * 1e3:0.0} ms per step");
    }

    /// <summary>Seconds to produce one training batch of the built-in task's data pipeline (pre-tokenized examples: shuffle, pad, copy), at the bench's batch size.</summary>
    internal static double DataSecondsPerBatch(int batch, int maxLength)
    {
        var dataset = SpeedLimit.Data.BuiltinTask.Generate(new SpeedLimit.Data.BuiltinTaskOptions { TrainSize = 64 * batch, DevSize = 10 });
        var task = new SpeedLimit.Pipeline.EncodedTask(dataset, SpeedLimit.Data.BuiltinTask.Encoder, maxLength);
        int count = 0;
        foreach (var _ in task.TrainBatches(batch, 1, 0)) count++; // warm-up
        var clock = Stopwatch.StartNew();
        count = 0;
        for (int epoch = 1; epoch <= 3; epoch++)
            foreach (var _ in task.TrainBatches(batch, 1, epoch)) count++;
        return clock.Elapsed.TotalSeconds / Math.Max(1, count);
    }

    /// <summary>One untimed step (activations, JIT), then <paramref name="runs"/> timed steps: wall and process-CPU seconds each.</summary>
    internal static (List<double> Wall, List<double> Cpu) TimeSteps(Trainer trainer, LabeledBatch batch, int runs)
    {
        trainer.Step(batch);
        trainer.PhaseTimes.Reset();
        var wall = new List<double>(); var cpu = new List<double>();
        for (int r = 0; r < runs; r++)
        {
            double c0 = GemmBench.ProcessCpuSeconds();
            var clock = Stopwatch.StartNew();
            trainer.Step(batch);
            wall.Add(clock.Elapsed.TotalSeconds);
            cpu.Add(GemmBench.ProcessCpuSeconds() - c0);
        }
        return (wall, cpu);
    }

    /// <summary>Matmul FLOPs of one training step (forward ×3: the backward does two products per forward one).</summary>
    internal static double TrainingFlops(BertConfig c, int batch, int T)
    {
        double tokens = (double)batch * T;
        double perLayer = 2 * tokens * (4.0 * c.Hidden * c.Hidden + 2.0 * c.Hidden * c.Ffn) // QKV, output, FFN
                          + 2 * 2.0 * batch * T * T * c.Hidden;                            // QKᵀ and P·V over all heads
        double head = 2.0 * batch * c.Hidden * (c.Hidden + c.Labels);
        return 3 * (c.Layers * perLayer + head);
    }
}
