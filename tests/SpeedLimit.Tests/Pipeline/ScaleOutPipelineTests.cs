using System.Text.Json.Nodes;
using SpeedLimit.Cli;
using SpeedLimit.Pipeline;
using SpeedLimit.Reporting;
using SpeedLimit.Search;
using SpeedLimit.Tests.Search;

namespace SpeedLimit.Tests.Pipeline;

/// <summary>`speedlimit search --study POSTGRES --no-local-evaluation` with a worker: the pipeline as coordinator.</summary>
[Collection("postgres")]
public sealed class ScaleOutPipelineTests(PostgresCluster cluster) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sl-pipe-scale-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [PostgresFact]
    public void SearchCoordinatesAWorkerThroughPostgresAndTheWorkersMetricsMatchTheRebuiltWinner()
    {
        var space = Path.Combine(_dir, "space.json");
        File.WriteAllText(space, new SearchSpace(new(1, 2, 1), new(16, 32, 16), new(16, 48, 16), 2).ToJson());
        var db = cluster.NewDatabase();
        var output = Path.Combine(_dir, "run");

        // The worker runs in this process (a thread) with the same code `speedlimit worker` runs.
        using var stop = new CancellationTokenSource();
        WorkerSummary? summary = null;
        var worker = new Thread(() => summary = new StudyWorker(db, (store, _, spec) => CandidatePackage.OpenEvaluator(store, spec, Path.Combine(_dir, "cache"), 1),
            new StudyWorkerOptions { Name = "test-worker", PollMilliseconds = 50 }).Run(stop.Token)) { IsBackground = true };
        worker.Start();
        int code = Program.Run([
            "search", "--output", output, "--space", space, "--bound-ms", "50", "--max-train-examples", "600", "--max-dev-examples", "150",
            "--max-length", "24", "--profile-count", "14", "--supermodel-epochs", "1", "--finetune-epochs", "1", "--finetune-examples", "128",
            "--generations", "2", "--population", "3", "--threads", "1", "--seed", "5",
            "--study", db, "--study-name", "ci", "--no-local-evaluation", "--lease-seconds", "10",
        ]);
        stop.Cancel();
        Assert.True(worker.Join(TimeSpan.FromMinutes(1)));
        Assert.Equal(0, code);

        var results = RunResults.Load(Path.Combine(output, "results.json"));
        var search = results.Searches[0];
        Assert.Equal(search.Candidates.Count, summary!.Evaluated);
        using var store = StudyStore.Open(db);
        Assert.Equal(search.Candidates, store.Candidates("ci/search-int8"));
        var entries = store.QueueEntries(store.Require("ci/search-int8", null).Id);
        Assert.All(entries, e => Assert.Equal(("test-worker", StudyStore.Done), (e.Worker, e.State)));
        Assert.Null(store.Status().Single().Coordinator); // handed back at the end
        Assert.False(File.Exists(Path.Combine(output, "study.db")), "the study lives in PostgreSQL, not in the run folder");

        // The coordinator rebuilds the winner with its own evaluator: the worker's metric for it must be the same.
        var deployment = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "deployment.json")))!;
        var notes = deployment["notes"]!.AsArray().Select(n => n!.GetValue<string>()).ToList();
        Assert.DoesNotContain(notes, n => n.Contains("differs from the searched", StringComparison.Ordinal));
        Assert.Contains(notes, n => n.Contains("ci/search-int8", StringComparison.Ordinal) && n.Contains("evaluated by workers only", StringComparison.Ordinal));
        Assert.Equal(search.Bounds[0].Winner!.Metric, deployment["winners"]![0]!["engine"]!["metric"]!.GetValue<double>());
    }
}
