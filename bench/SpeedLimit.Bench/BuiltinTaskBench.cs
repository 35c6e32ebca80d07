using System.Diagnostics;
using System.Globalization;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Training;

namespace SpeedLimit.Bench;

/// <summary>
/// How well encoders of growing size learn the built-in task from scratch on a fixed budget:
/// the demo space's sizes from (1,32,32) to (4,128,256), each trained alone with the same
/// recipe, scored on dev. The spread between the smallest and largest is what makes the demo's
/// search meaningful; the extremes run over several seeds to show it is above seed noise.
/// </summary>
public sealed class BuiltinTaskBench : IBenchSection
{
    public string Name => "builtin-task";
    public string Description => "dev accuracy of demo-space sizes trained from scratch on the built-in task (fixed budget)";

    /// <summary>The budget the demo's candidates get (see docs/builtin-task.md).</summary>
    public static BuiltinBudget DemoBudget { get; } = new(Epochs: 4, LearningRate: 1e-3f, TrainSize: 6000, MaxLength: 32, BatchSize: 32, Threads: 2);

    public void Run(BenchReport report, bool quick)
    {
        var budget = quick ? DemoBudget with { Epochs = 1, TrainSize = 1500 } : DemoBudget;
        report.Note($"  budget: {budget.Epochs} epochs × {budget.TrainSize} examples, batch {budget.BatchSize}, lr {budget.LearningRate}, warm-up 10 %, dropout 0.1, AdamW, max length {budget.MaxLength}, {budget.Threads} threads; dev 1000");
        Architecture[] sizes = quick
            ? [new(1, 32, 32), new(2, 64, 128)]
            : [new(1, 32, 32), new(1, 64, 128), new(2, 64, 128), new(3, 96, 192), new(4, 128, 256)];
        int[] extremeSeeds = quick ? [1] : [1, 2, 3];
        foreach (var arch in sizes)
        {
            bool extreme = arch == sizes[0] || arch == sizes[^1];
            var accs = new List<double>();
            double seconds = 0;
            foreach (var seed in extreme ? extremeSeeds : [1])
            {
                var r = TrainFromScratch(arch, budget, seed);
                accs.Add(r.DevAccuracy);
                seconds = r.Seconds;
                report.Note($"    {arch} seed {seed}: dev {r.DevAccuracy:F3} ({r.Seconds:F0} s, {r.Steps} steps)");
            }
            string name = $"({arch.Layers},{arch.Hidden},{arch.Ffn})";
            report.Figure($"builtin_dev_accuracy_{name}", accs.Average(), "accuracy");
            if (accs.Count > 1) report.Figure($"builtin_dev_accuracy_spread_{name}", accs.Max() - accs.Min(), "accuracy");
            report.Figure($"builtin_train_seconds_{name}", seconds, "s");
        }
    }

    public sealed record Result(double DevAccuracy, double Seconds, long Steps, IReadOnlyList<double> PerEpoch);

    /// <summary>Trains <paramref name="arch"/> from random weights on the built-in task and scores it on dev after each epoch.</summary>
    public static Result TrainFromScratch(Architecture arch, BuiltinBudget budget, int seed, BuiltinTaskOptions? taskOptions = null, Action<string>? log = null)
    {
        taskOptions ??= new BuiltinTaskOptions { TrainSize = budget.TrainSize };
        var task = new EncodedTask(BuiltinTask.Generate(taskOptions), BuiltinTask.Encoder, budget.MaxLength);
        var model = BertModel.CreateRandom(task.ConfigFor(arch, heads: 4), seed);
        model.Threads = budget.Threads;
        long steps = (long)budget.Epochs * ((task.Train.Count + budget.BatchSize - 1) / budget.BatchSize);
        var options = new TrainingOptions { LearningRate = budget.LearningRate, WarmupRatio = 0.1f, Seed = seed, Threads = budget.Threads };
        var trainer = new Trainer(model, options, steps, dropout: 0.1f);
        var perEpoch = new List<double>();
        long t0 = Stopwatch.GetTimestamp();
        for (int epoch = 0; epoch < budget.Epochs; epoch++)
        {
            double loss = 0;
            int n = 0;
            foreach (var batch in task.TrainBatches(budget.BatchSize, seed, epoch))
            {
                loss += trainer.Step(batch).Loss;
                n++;
            }
            perEpoch.Add(task.EvaluateDev(model).Primary);
            log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{arch} seed {seed} epoch {epoch + 1}: loss {loss / n:F3} dev {perEpoch[^1]:F3} ({Stopwatch.GetElapsedTime(t0).TotalSeconds:F0} s)"));
        }
        return new Result(perEpoch[^1], Stopwatch.GetElapsedTime(t0).TotalSeconds, trainer.OptimizerSteps, perEpoch);
    }
}

/// <summary>One training recipe: epochs over <paramref name="TrainSize"/> examples truncated to <paramref name="MaxLength"/> tokens.</summary>
public sealed record BuiltinBudget(int Epochs, float LearningRate, int TrainSize, int MaxLength, int BatchSize, int Threads);
