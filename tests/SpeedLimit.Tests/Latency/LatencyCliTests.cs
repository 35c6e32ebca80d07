using SpeedLimit.Cli;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Latency;

public class LatencyCliTests
{
    [Fact]
    public void FitWritesPredictorAndPlotAndNarrowUsesIt() => WithSyntheticDataset(80, seed: 3, (dir, data) =>
    {
        var pred = Path.Combine(dir, "p.json");
        Assert.Equal(0, Program.Run(["latency", "fit", "--data", data, "--output", pred, "--model", "features", "--learning-curve", "20,40"]));
        Assert.True(File.Exists(pred));
        var png = Path.Combine(dir, "p.png");
        Assert.True(new FileInfo(png).Length > 1000);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(png).Take(4));

        var loaded = LatencyPredictor.Load(pred);
        Assert.Equal(LatencyModelKind.Features, loaded.Model.Kind);
        Assert.Equal(0, Program.Run(["latency", "narrow", "--predictor", pred, "--bound-ms", "20"]));
        // A bound below every architecture: a user error (exit 2), not a crash.
        Assert.Equal(CliErrors.UserErrorExitCode, Program.Run(["latency", "narrow", "--predictor", pred, "--bound-ms", "0.01"]));
        Assert.Equal(CliErrors.UserErrorExitCode, Program.Run(["latency", "fit", "--data", data, "--output", pred, "--model", "tree"]));
        Assert.Equal(CliErrors.UserErrorExitCode, Program.Run(["latency", "fit", "--data", Path.Combine(dir, "missing.jsonl"), "--output", pred]));
    });

    /// <summary>
    /// Commands run side by side in one process (as the tests do) must not trip over Spectre's rule of one live
    /// display at a time: CI failed once when another test's progress bar was up while 'latency fit' started its spinner.
    /// </summary>
    [Fact]
    public void FitsRunSideBySideInOneProcessAllSucceed() => WithSyntheticDataset(60, seed: 5, (dir, data) =>
    {
        var codes = new int[4];
        Parallel.For(0, codes.Length, new ParallelOptions { MaxDegreeOfParallelism = codes.Length }, i =>
            codes[i] = Program.Run(["latency", "fit", "--data", data, "--output", Path.Combine(dir, $"p{i}.json"), "--model", "features", "--folds", "0"]));
        Assert.All(codes, c => Assert.Equal(0, c));
        Assert.All(Enumerable.Range(0, codes.Length), i => Assert.True(File.Exists(Path.Combine(dir, $"p{i}.json"))));
    });

    /// <summary>Runs <paramref name="test"/> in a fresh folder holding data.jsonl: <paramref name="count"/> synthetic latency records.</summary>
    private static void WithSyntheticDataset(int count, int seed, Action<string, string> test)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"latcli-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var data = Path.Combine(dir, "data.jsonl");
            foreach (var r in new SyntheticLatency(0.01).Sample(SearchSpace.Paper, count, new Random(seed))) LatencyDataset.Append(data, r);
            test(dir, data);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
