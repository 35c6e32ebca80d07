using System.Diagnostics;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;
using SpeedLimit.Training;

namespace SpeedLimit.Bench;

/// <summary>
/// Supermodel training steps by the sandwich rule (the largest, the smallest and two random sub-models per batch) on
/// SST-2-sized data in the (4,256,1024) space of the search bench: the median step and the page faults per step (fresh
/// memory touched: each costs microseconds, 10–15 µs on the project's VMs).
/// </summary>
public sealed class SupermodelBench : IBenchSection
{
    public string Name => "supermodel";
    public string Description => "supermodel training steps (sandwich rule, SST-2-sized data, (4,256,1024) space, batch 32)";

    public void Run(BenchReport report, bool quick)
    {
        var space = new SearchSpace(new(1, 4, 1), new(64, 256, 64), new(256, 1024, 256), 4);
        var (dataset, encoder, source) = CandidateBench.LoadTask();
        var task = new EncodedTask(dataset, encoder, 64);
        int threads = Environment.ProcessorCount;
        var model = BertModel.CreateRandom(task.ConfigFor(space.Largest, space.Heads), 1);
        model.Threads = threads;
        int warmup = 5, steps = quick ? 10 : 40;
        var trainer = new SupermodelTrainer(new ElasticSupermodel(model), space,
            new TrainingOptions { LearningRate = 1e-4f, Seed = 1, Threads = threads }, new SupermodelOptions(), warmup + steps);
        trainer.ReserveWorkspace(32, task.MaxLength); // as the pipeline's supermodel stage does
        report.Note($"  task: {source}; load before: {Affinity.LoadAverage()} (/proc/loadavg); {threads} threads; {warmup} warm-up steps, then {steps} timed");
        var rng = new Random(1);
        var milliseconds = new List<double>();
        long faults = 0;
        int step = 0;
        foreach (var batch in task.TrainBatches(32, seed: 1, epoch: 0, limit: (warmup + steps) * 32))
        {
            long before = CandidateBench.MinorPageFaults();
            var clock = Stopwatch.StartNew();
            trainer.Step(batch, rng);
            if (step++ < warmup) continue;
            milliseconds.Add(clock.Elapsed.TotalMilliseconds);
            faults += CandidateBench.MinorPageFaults() - before;
        }
        report.Note($"  load after: {Affinity.LoadAverage()}");
        report.Figure("supermodel_step_ms_median", Timing.Median(milliseconds), "ms");
        report.Figure("supermodel_page_faults_per_step", faults / (double)milliseconds.Count, "faults");
    }
}
