using System.Diagnostics;
using SpeedLimit.Data;
using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;

namespace SpeedLimit.Bench;

/// <summary>
/// Candidate evaluations per hour on SST-2-sized data in a (4,256,1024)-class space: extract from
/// a supermodel, fine-tune on the evaluation budget, int8-simulate, score the 872-example dev split.
/// Uses GLUE SST-2 from ../shared/data when present, else a built-in task of the same size.
/// </summary>
public sealed class CandidateBench : IBenchSection
{
    public string Name => "search";
    public string Description => "candidate evaluations per hour (SST-2-sized data, (4,256,1024)-class space)";

    public void Run(BenchReport report, bool quick)
    {
        var space = new SearchSpace(new(1, 4, 1), new(64, 256, 64), new(256, 1024, 256), 4);
        var (dataset, encoder, source) = LoadTask();
        report.Note($"task: {source}; {dataset.Train.Count} train / {dataset.Dev.Count} dev; space {space}");
        var task = new EncodedTask(dataset, encoder, 64);
        var config = task.ConfigFor(space.Largest, space.Heads);
        var model = BertModel.CreateRandom(config, 1);
        model.Threads = Environment.ProcessorCount;
        var super = new ElasticSupermodel(model);
        var fineTune = new FineTuneOptions { Epochs = 1, MaxExamples = quick ? 256 : 2000, BatchSize = 32 };
        var evaluator = new CandidateEvaluator(super, task, fineTune, Precision.Int8, Environment.ProcessorCount);
        var random = new Random(3);
        int n = quick ? 2 : 6;
        var seconds = new List<double>();
        var archs = new List<Architecture>();
        for (int i = 0; i < n; i++)
        {
            var arch = space.Sample(random);
            archs.Add(arch);
            long faults = MinorPageFaults();
            var clock = Stopwatch.StartNew();
            evaluator.Evaluate(arch, i, CancellationToken.None);
            seconds.Add(clock.Elapsed.TotalSeconds);
            report.Note($"  {arch}: {clock.Elapsed.TotalSeconds:F1} s, {MinorPageFaults() - faults:N0} page faults");
        }
        report.Figure($"candidate_seconds_median_finetune{fineTune.MaxExamples}", Timing.Median(seconds), "s");
        // The first candidate also pays the JIT and the first touch of the evaluator's reused buffers.
        if (seconds.Count > 2) report.Figure("candidate_seconds_median_after_first", Timing.Median(seconds.Skip(1).ToList()), "s");
        report.Figure("candidates_per_hour", 3600 / Timing.Median(seconds), "candidates/h");
        if (n > 2 && Environment.ProcessorCount > 1) SideBySide(report, super, task, fineTune, archs, seconds);
    }

    /// <summary>
    /// The same candidates (all but the first) two or more at a time on one thread each, through the search's
    /// <see cref="CandidateBook.EvaluateMany"/> as the pipeline runs them by default (<c>--concurrent-candidates</c>),
    /// beside their one-at-a-time times above; each evaluation is warmed up first, as the one-at-a-time evaluator was by
    /// the first candidate.
    /// </summary>
    private static void SideBySide(BenchReport report, ElasticSupermodel super, EncodedTask task, FineTuneOptions fineTune, List<Architecture> archs, List<double> seconds)
    {
        var (k, each) = new SearchOptions().SideBySide(Environment.ProcessorCount);
        var evaluator = new CandidateEvaluator(super, task, fineTune, Precision.Int8, each, k);
        Task.WaitAll(Enumerable.Range(0, k).Select(_ => Task.Factory.StartNew(() => evaluator.Evaluate(archs[0], 0, CancellationToken.None),
            TaskCreationOptions.LongRunning)).ToArray()); // at the same time, so each of the k evaluations has its memory
        // The search's own mechanism (scheduling, ordered commits) on the candidates after archs[0], the warm-up.
        var book = new CandidateBook(null, 0, "bench", Precision.Int8, fineTune.Describe(), seed: 1);
        var clock = Stopwatch.StartNew();
        book.EvaluateMany(archs.Skip(1).Select(a => (a, (double?)null)).ToList(), evaluator, CancellationToken.None);
        double sideBySide = clock.Elapsed.TotalSeconds, oneAtATime = seconds.Skip(1).Sum();
        report.Note($"  the last {archs.Count - 1}: one at a time on {Environment.ProcessorCount} threads {oneAtATime:F1} s, {k} side by side on {each} thread(s) each {sideBySide:F1} s");
        report.Figure("candidates_per_hour_side_by_side", 3600 * (archs.Count - 1) / sideBySide, "candidates/h");
        report.Figure("side_by_side_speedup_vs_one_at_a_time", oneAtATime / sideBySide, "ratio");
    }

    /// <summary>The process's minor page faults so far (Linux; 0 elsewhere): first touches of fresh memory, which cost microseconds each in a VM.</summary>
    internal static long MinorPageFaults()
    {
        try
        {
            var stat = File.ReadAllText("/proc/self/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' '); // after "pid (comm) ": field 3 onwards
            return long.Parse(fields[7], System.Globalization.CultureInfo.InvariantCulture); // field 10, minflt
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }

    internal static (TaskDataset, ITextEncoder, string) LoadTask()
    {
        var glue = FindShared("data/glue/SST-2");
        var vocab = TaskCatalog.FindBertVocab([AppContext.BaseDirectory]);
        if (glue is not null && vocab is not null)
            return (TaskCatalog.Load("sst2", glue), BertTextEncoder.FromVocabFile(vocab), "GLUE SST-2");
        var builtin = BuiltinTask.Generate(new BuiltinTaskOptions { TrainSize = 67_349, DevSize = 872 });
        return (builtin, BuiltinTask.Encoder, "built-in task at SST-2 size (../shared/data not found)");
    }

    private static string? FindShared(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", relative);
            if (File.Exists(candidate) || Directory.Exists(candidate)) return candidate;
        }
        return null;
    }
}
