using System.Diagnostics;
using System.Text.Json.Nodes;
using SpeedLimit.Cli;
using SpeedLimit.Reporting;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Pipeline;

/// <summary>End-to-end runs of `speedlimit search` on the built-in task with a tiny space and budget.</summary>
public class PipelineTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"sl-pipe-{Guid.NewGuid():N}");

    public PipelineTests()
    {
        Directory.CreateDirectory(_dir);
        var space = new SearchSpace(new(1, 2, 1), new(16, 48, 16), new(16, 64, 16), 2); // 24 architectures
        File.WriteAllText(SpacePath, space.ToJson());
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string SpacePath => Path.Combine(_dir, "space.json");

    /// <summary>Flags of a small but complete run; the large bound makes every candidate feasible.</summary>
    private string[] SearchArgs(string output, string bound = "50", params string[] extra) =>
    [
        "search", "--output", output, "--space", SpacePath, "--bound-ms", bound, "--latency-data", Path.Combine(_dir, "latency.jsonl"),
        "--max-train-examples", "2000", "--max-dev-examples", "300", "--max-length", "32", "--profile-count", "16",
        "--supermodel-epochs", "4", "--finetune-epochs", "1", "--finetune-examples", "500", "--generations", "2", "--population", "3",
        "--threads", "2", "--seed", "3", .. TinyProtocols, .. extra,
    ];

    /// <summary>
    /// Protocols small enough for tests. 100 runs put a p90's 95 % upper limit at the 96th run, so a few runs
    /// descheduled on a loaded machine do not decide the verdict (with 40 runs it is the slowest run).
    /// </summary>
    internal static readonly string[] TinyProtocols =
    [
        "--latency-protocol", "screening:runs=100,seconds=0,warmup-seconds=0,warmup-runs=2,round=20,max-seconds=0",
        "--verify-protocol", "verification:runs=200,seconds=0,warmup-seconds=0,warmup-runs=2,round=50,max-seconds=0.05",
    ];

    [Fact]
    public void SearchProducesAVerifiedDeployableRunFolder()
    {
        var output = Path.Combine(_dir, "run");
        Assert.Equal(0, Program.Run(SearchArgs(output, "50", "--baseline", "1,16,16")));
        foreach (var f in new[] { "best.onnx", "best.safetensors", "results.json", "report.md", "front.png", "deployment.json", "latency.jsonl", "study.db",
                     "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "README.md" })
            Assert.True(File.Exists(Path.Combine(output, f)), $"{f} missing from the run folder");
        Assert.False(Directory.Exists(output + ".partial"), "the work folder should be gone after a finished run");
        // Every text file parses with a strict reader (no BOM, valid UTF-8, valid JSON/JSONL).
        var strict = StrictText.CheckFolder(output);
        Assert.Contains("deployment.json", strict);
        Assert.Contains("tokenizer.json", strict);

        var deployment = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "deployment.json")))!;
        var winner = deployment["winners"]![0]!;
        Assert.True(winner["meetsBound"]!.GetValue<bool>());
        // The bound is on the default statistic (p90) and judged by its confidence interval's upper limit.
        var verdict = winner["verdict"]!;
        Assert.Equal("p90", verdict["statistic"]!.GetValue<string>());
        Assert.Equal("meets", verdict["outcome"]!.GetValue<string>());
        Assert.True(verdict["intervalHighMs"]!.GetValue<double>() <= 50);
        Assert.True(verdict["intervalLowMs"]!.GetValue<double>() <= verdict["valueMs"]!.GetValue<double>());
        Assert.Equal(200, verdict["measurement"]!["runs"]!.GetValue<int>()); // the verification protocol's minimum
        Assert.StartsWith("verification:", verdict["measurement"]!["protocol"]!["protocol"]!.GetValue<string>());
        var reportText = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Contains("The bound is on the **p90** latency", reportText);
        Assert.Contains("meets: p90", reportText);
        // The exported int8 model scores the dev split like the engine's int8 simulation (a few examples may flip).
        double engine = winner["engine"]!["metric"]!.GetValue<double>(), ort = winner["onnxRuntime"]!["metric"]!.GetValue<double>();
        Assert.InRange(Math.Abs(engine - ort), 0, 0.03);
        Assert.Equal(300, winner["padding"]!["examples"]!.GetValue<int>());

        // The package: the contract in deployment.json is the one in the ONNX metadata, and the tokenizer files match it.
        var contract = deployment["contract"]!;
        using (var runner = new SpeedLimit.Onnx.OnnxRunner(Path.Combine(output, "best.onnx")))
        {
            var meta = runner.Contract!;
            Assert.Equal(contract["task"]!.GetValue<string>(), meta.Task);
            Assert.Equal(contract["labels"]!.AsArray().Select(l => l!.GetValue<string>()), meta.Labels);
            Assert.Equal(32, meta.MaxLength);
            Assert.True(runner.PositionLimit >= 32);
        }
        var vocab = File.ReadAllLines(Path.Combine(output, "vocab.txt"));
        Assert.Equal(contract["vocabSha256"]!.GetValue<string>(), RunPackage.VocabSha256(vocab));
        var tokenizer = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "tokenizer.json")))!;
        Assert.Equal(32, tokenizer["truncation"]!["max_length"]!.GetValue<int>());
        Assert.Equal(vocab.Length, tokenizer["model"]!["vocab"]!.AsObject().Count);
        Assert.Equal(32, JsonNode.Parse(File.ReadAllText(Path.Combine(output, "tokenizer_config.json")))!["model_max_length"]!.GetValue<int>());
        // Beside the winner, the same weights as a Hugging Face folder that reads back as the checkpoint's model.
        Assert.Equal("best-hf", winner["huggingFaceFolder"]!.GetValue<string>());
        var hf = SpeedLimit.Pretrained.HuggingFaceFolder.Read(Path.Combine(output, "best-hf"));
        var ckpt = SpeedLimit.Checkpoints.BertCheckpoint.Load(Path.Combine(output, "best.safetensors"));
        Assert.Equal(ckpt.Config.Arch, hf.Config.Arch);
        var hfModel = hf.CreateModel(seed: 1, head: ckpt.Config.Head, labels: ckpt.Config.Labels, randomInitialized: out var notInFolder);
        Assert.Empty(notInFolder);
        Assert.Equal(ckpt.Parameters, hfModel.Parameters);
        Assert.Equal(new FileInfo(Path.Combine(output, "best.onnx")).Length, winner["onnxBytes"]!.GetValue<long>());
        // The README's C# recipe, from the run folder's own files, reproduces the reported ONNX Runtime dev metric exactly.
        var dev = SpeedLimit.Pipeline.EncodedTask.Load(new SpeedLimit.Pipeline.DataOptions { MaxTrainExamples = 2000, MaxDevExamples = 300, MaxSequenceLength = 32 }, seed: 3).Task.Dev;
        var folderEncoder = new SpeedLimit.Data.WordLevelEncoder(vocab.Skip(5));
        using (var runner = new SpeedLimit.Onnx.OnnxRunner(Path.Combine(output, "best.onnx")))
        {
            int correct = 0;
            foreach (var e in dev)
            {
                var enc = folderEncoder.Encode(e.TextA, e.TextB, runner.Contract!.MaxLength);
                var logits = runner.Predict([enc.InputIds], [enc.TokenTypeIds], batchSize: 1)[0];
                if (Array.IndexOf(logits, logits.Max()) == e.ClassId) correct++;
            }
            Assert.Equal(ort, (double)correct / dev.Count, 12);
        }
        var readme = File.ReadAllText(Path.Combine(output, "README.md"));
        Assert.Contains("new WordLevelEncoder(File.ReadAllLines(\"vocab.txt\").Skip(5))", readme);
        Assert.Contains("InferenceSession(\"best.onnx\")", readme);
        // The report is written once, from the finished winners: its deployable-models table names the file.
        var report = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(report, "## Deployable models"));
        Assert.Contains("`best.onnx`", report);

        var results = RunResults.Load(Path.Combine(output, "results.json"));
        var search = results.Searches[0];
        // The copied study store is complete on its own (its WAL was checkpointed before the copy).
        using (var store = StudyStore.Open(Path.Combine(output, "study.db")))
            Assert.Equal(search.Candidates.Count, store.Candidates("search-int8").Count);
        var best = search.Bounds[0].Winner!;
        // The smallest architecture, evaluated as an int8 baseline under the same budget, is beaten.
        var smallest = results.Baselines.Single(b => b.Definition.Precision == SpeedLimit.Precision.Int8).Entries.Single().Candidate;
        Assert.Equal(new SpeedLimit.Architecture(1, 16, 16), smallest.Arch);
        Assert.True(best.Metric > smallest.Metric, $"winner {best.Arch} {best.Metric:F3} does not beat the smallest architecture's {smallest.Metric:F3}");
        Assert.Equal(search.Candidates.Max(c => c.Metric), best.Metric);
    }

    [Fact]
    public void KilledSearchResumesWithoutRepeatingWorkAndMatchesAnUninterruptedRun()
    {
        // 1. Uninterrupted reference run (also profiles the shared latency dataset both runs then reuse).
        var reference = Path.Combine(_dir, "reference");
        Assert.Equal(0, Program.Run(SearchArgs(reference)));

        // 2. The same run in a child process, killed once two candidates are committed.
        var killed = Path.Combine(_dir, "killed");
        var cli = typeof(Program).Assembly.Location;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(cli);
        foreach (var arg in SearchArgs(killed)) start.ArgumentList.Add(arg);
        using (var child = Process.Start(start)!)
        {
            child.OutputDataReceived += (_, _) => { };
            child.ErrorDataReceived += (_, _) => { };
            child.BeginOutputReadLine();
            child.BeginErrorReadLine();
            var db = Path.Combine(killed + ".partial", "study.db");
            var clock = Stopwatch.StartNew();
            while (CommittedCandidates(db) < 2)
            {
                Assert.False(child.HasExited, "the child search finished before it could be killed; give it more candidates");
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(4), "the child search made no progress");
                Thread.Sleep(100);
            }
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
        }
        int before = CommittedCandidates(Path.Combine(killed + ".partial", "study.db"));
        Assert.False(Directory.Exists(killed), "a killed run must not leave an output folder");

        // 3. Resume: nothing finished is evaluated again and the result equals the reference.
        Assert.Equal(0, Program.Run(SearchArgs(killed, "50", "--resume")));
        var a = RunResults.Load(Path.Combine(reference, "results.json")).Searches[0];
        var b = RunResults.Load(Path.Combine(killed, "results.json")).Searches[0];
        Assert.True(b.Timings.Reused >= before, $"resume re-evaluated finished candidates: reused {b.Timings.Reused} of {before} committed");
        Assert.Equal(a.Timings.Evaluations, b.Timings.Evaluations + b.Timings.Reused);
        Assert.Equal(a.Candidates.Select(c => (c.Arch, c.Metric)), b.Candidates.OrderBy(c => c.Order).Select(c => (c.Arch, c.Metric)));
        Assert.Equal(a.Bounds[0].Winner!.Arch, b.Bounds[0].Winner!.Arch);
    }

    /// <summary>Candidates committed to the int8 search of a study file that may still be being written (0 while it is created).</summary>
    internal static int CommittedCandidates(string db)
    {
        if (!File.Exists(db)) return 0;
        try
        {
            using var store = StudyStore.Open(db);
            return store.Exists("search-int8") ? store.Candidates("search-int8").Count : 0;
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException or Microsoft.Data.Sqlite.SqliteException)
        {
            return 0; // being created
        }
    }
}
