using System.Diagnostics;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;
using SpeedLimit.Tests.Pipeline;

namespace SpeedLimit.Tests.Cli;

/// <summary>
/// Process faults on a real `speedlimit search` child: a signal mid-run, a second run on the same
/// output while the first holds it, and what a killed export leaves behind. Each ends with a
/// `--resume` that completes with nothing left over.
/// </summary>
public sealed class ProcessFaultTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"sl-proc-{Guid.NewGuid():N}");

    public ProcessFaultTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "space.json"), new SearchSpace(new(1, 2, 1), new(16, 48, 16), new(16, 64, 16), 2).ToJson());
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string[] SearchArgs(params string[] extra) =>
    [
        "search", "--output", "run", "--space", "space.json", "--bound-ms", "50", "--latency-data", "latency.jsonl",
        "--max-train-examples", "1500", "--max-dev-examples", "200", "--max-length", "32", "--profile-count", "14",
        "--supermodel-epochs", "3", "--finetune-epochs", "1", "--finetune-examples", "300", "--generations", "5", "--population", "4",
        "--threads", "2", "--seed", "5", .. SpeedLimit.Tests.Pipeline.PipelineTests.TinyProtocols, .. extra,
    ];

    [Theory]
    [InlineData("TERM")]
    [InlineData("INT")]
    public async Task ASignalStopsTheRunCleanlyAndResumeFinishesIt(string signal)
    {
        var work = Path.Combine(_dir, "run.partial");
        using (var child = Process.Start(CliProcess.StartInfo(_dir, SearchArgs(), defaultSignals: true))!)
        {
            var stderr = child.StandardError.ReadToEndAsync();
            _ = child.StandardOutput.ReadToEndAsync();
            var clock = Stopwatch.StartNew();
            while (PipelineTests.CommittedCandidates(Path.Combine(work, "study.db")) < 1)
            {
                if (child.HasExited) Assert.Fail($"the search finished before it could be signalled: {await stderr}");
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(4), "the search made no progress");
                await Task.Delay(100);
            }

            // The child is frozen (SIGSTOP) from here until the signal is queued: a fast machine could otherwise finish
            // the whole search while the second run below starts up, and there would be nothing left to interrupt.
            CliProcess.Signal(child, "STOP");
            try
            {
                // A second run on the same output, even with --resume, is refused while the first holds it.
                var second = CliProcess.Run(_dir, SearchArgs("--resume"), quickStart: true);
                FaultBatteryTests.AssertCleanFailure("second run", SearchArgs("--resume"), second, "another run is writing");
                CliProcess.Signal(child, signal);
            }
            finally
            {
                CliProcess.Signal(child, "CONT");
            }
            Assert.True(child.WaitForExit(TimeSpan.FromMinutes(2)), "the signalled run did not stop");
            Assert.False(child.ExitCode == 0 && Directory.Exists(Path.Combine(_dir, "run")), "the run finished before the signal reached it");
            Assert.Equal(130, child.ExitCode);
            var text = await stderr;
            var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.StartsWith("error: cancelled", lines[^1]);
            Assert.DoesNotContain("   at ", text);
        }
        Assert.False(Directory.Exists(Path.Combine(_dir, "run")), "a stopped run must not leave an output folder");
        Assert.False(File.Exists(RunLock.PathFor(Path.Combine(_dir, "run"))), "the lock must be released");
        int committed = PipelineTests.CommittedCandidates(Path.Combine(work, "study.db"));
        Assert.True(committed >= 1);

        // What a kill -9 during export leaves: a staging folder in the work folder (and, from earlier versions, one beside the output).
        Directory.CreateDirectory(Path.Combine(work, "staging"));
        File.WriteAllText(Path.Combine(work, "staging", "best.onnx"), "half a model");
        Directory.CreateDirectory(Path.Combine(_dir, ".run.staging-0123"));

        var resumed = CliProcess.Run(_dir, SearchArgs("--resume"), TimeSpan.FromMinutes(5));
        Assert.True(resumed.ExitCode == 0, resumed.StdErr);
        foreach (var f in new[] { "best.onnx", "report.md", "results.json", "deployment.json", "study.db" })
            Assert.True(File.Exists(Path.Combine(_dir, "run", f)), $"{f} missing after the resume");
        Assert.False(Directory.Exists(work), "the work folder should be gone after the resumed run finished");
        Assert.Empty(Directory.GetDirectories(_dir, ".run.staging-*"));
        var results = Reporting.RunResults.Load(Path.Combine(_dir, "run", "results.json")).Searches[0];
        Assert.True(results.Timings.Reused >= committed, $"resume re-evaluated finished candidates: reused {results.Timings.Reused} of {committed}");
    }
}
