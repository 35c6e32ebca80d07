using SpeedLimit.Data;
using SpeedLimit.Pipeline;
using SpeedLimit.Tests.Data;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Pipeline;

/// <summary>The run's contract pieces: the options fingerprint, the run lock, the guard against a model that never trains.</summary>
public class RunContractTests
{
    [Fact]
    public void TheFingerprintCoversEveryStageAndNamesWhatDiffers()
    {
        var a = new PipelineOptions();
        var b = a with
        {
            Data = a.Data with { VocabPath = "other/vocab.txt" },
            Profiling = a.Profiling with { Protocol = a.Profiling.Protocol with { MinRuns = 500 } },
            Search = a.Search with { Generations = 9 },
        };
        var diffs = OptionsFingerprint.Differences(a.Fingerprint(), b.Fingerprint());
        Assert.Equal(3, diffs.Count);
        Assert.Contains(diffs, d => d.StartsWith("data.vocabPath: null then, \"other/vocab.txt\" now", StringComparison.Ordinal));
        Assert.Contains(diffs, d => d.StartsWith("profiling.protocol.minRuns: 100 then, 500 now", StringComparison.Ordinal));
        Assert.Contains(diffs, d => d.StartsWith("search.generations: 3 then, 9 now", StringComparison.Ordinal));
        // Where the folder goes is not a setting of the result.
        Assert.Empty(OptionsFingerprint.Differences(a.Fingerprint(), (a with { Output = new OutputOptions { Folder = "elsewhere", Resume = true } }).Fingerprint()));
    }

    [Fact]
    public void ADevSplitOnWhichTheCorrelationIsUndefinedIsRefusedNotScoredZero()
    {
        var train = Enumerable.Range(0, 8).Select(i => new TaskExample($"w{i}", null, Score: i)).ToList();
        TaskDataset Regression(params float[] dev) =>
            new("tiny-sts", TaskKind.Regression, [], PrimaryMetric.PearsonSpearman, train, dev.Select(v => new TaskExample("w1", null, Score: v)).ToList());
        var encoder = new WordLevelEncoder(Enumerable.Range(0, 8).Select(i => $"w{i}"));
        var one = Assert.Throws<UserInputException>(() => new EncodedTask(Regression(2f), encoder, 8));
        Assert.Contains("undefined on a dev split of 1 example", one.Message);
        var flat = Assert.Throws<UserInputException>(() => new EncodedTask(Regression(2f, 2f, 2f), encoder, 8));
        Assert.Contains("same gold value", flat.Message);
        Assert.Equal(2, new EncodedTask(Regression(1f, 3f), encoder, 8).Dev.Count); // two distinct values: defined
    }

    [Fact]
    public void ASecondLockOnTheSameOutputIsRefusedAndAStaleOneIsTakenOver()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"sl-lock-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var output = Path.Combine(dir, "run");
            using (var first = RunLock.Acquire(output))
            {
                var ex = Assert.Throws<UserInputException>(() => RunLock.Acquire(output));
                Assert.Contains("another run is writing", ex.Message);
            }
            Assert.False(File.Exists(RunLock.PathFor(output)), "released locks are deleted");

            // A lock file left by a process that no longer exists (e.g. killed on a file system without locks).
            File.WriteAllText(RunLock.PathFor(output), "2147483000");
            using var taken = RunLock.Acquire(output);
            Assert.Equal(2147483000, taken.StalePid);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void AnOutputWhoseLockCannotBeCreatedIsRefusedForWhatItIsNotAsBusy()
    {
        // A file where a folder of the output's path should be.
        using var dir = new TempDir();
        var file = dir.File("file", "x");
        var ex = Assert.Throws<UserInputException>(() => RunLock.Acquire(Path.Combine(file, "run")));
        Assert.StartsWith("cannot create the folder of", ex.Message);
        Assert.DoesNotContain("another run", ex.Message);

        // A folder that takes no new files (Linux's /proc, where CI runs): not "another run is writing".
        if (OperatingSystem.IsLinux())
        {
            ex = Assert.Throws<UserInputException>(() => RunLock.Acquire("/proc/sl-run"));
            Assert.StartsWith("cannot create the run lock", ex.Message);
            Assert.Contains("choose an --output on a writable file system", ex.Message);
        }
    }

    [Fact]
    public void SupermodelTrainingWhoseEveryStepIsSkippedStopsWithAnError()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"sl-diverge-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var task = new EncodedTask(BuiltinTask.Generate(new BuiltinTaskOptions { TrainSize = 800, DevSize = 16 }), BuiltinTask.Encoder, 32);
            // A learning rate of 1e30 sends the weights to infinity after the first step; every later step sees NaN.
            var job = new SupermodelJob(new SupermodelTrainingOptions { Epochs = 1, BatchSize = 16, LearningRate = 1e30f },
                new SearchSpace(new(1, 1, 1), new(16, 16, 16), new(16, 16, 16), 2), Seed: 1, Threads: 1, MaxPositions: 32);
            var ex = Assert.Throws<UserInputException>(() =>
                SupermodelStage.Train(job, task, Path.Combine(dir, "s.safetensors"), null, new List<string>(), CancellationToken.None));
            Assert.Contains("not training", ex.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
