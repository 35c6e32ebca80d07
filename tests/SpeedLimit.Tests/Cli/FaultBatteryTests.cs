using System.Text;
using SpeedLimit.Checkpoints;
using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Cli;

/// <summary>
/// Malformed inputs and impossible requests, each run through the real executable in its own
/// empty working folder. For every case: a non-zero exit, exactly one line on stderr that starts
/// with "error:" and names the problem, no stack trace anywhere, and nothing left in the folder.
/// (Child processes, not Program.Run in-process: swapping Console.Error races with other test classes.)
/// </summary>
public sealed class FaultBatteryTests : IClassFixture<FaultBatteryTests.Inputs>
{
    private readonly Inputs _in;

    public FaultBatteryTests(Inputs inputs) => _in = inputs;

    /// <summary>Input files the cases point at (outside the cases' working folders).</summary>
    public sealed class Inputs : IDisposable
    {
        public string Root { get; } = Path.Combine(Path.GetTempPath(), $"sl-faults-{Guid.NewGuid():N}");

        public Inputs()
        {
            Directory.CreateDirectory(Root);
            Write("space.json", new SearchSpace(new(1, 2, 1), new(16, 32, 16), new(16, 32, 16), 2).ToJson());
            Write("space24.json", new SearchSpace(new(1, 2, 1), new(16, 48, 16), new(16, 64, 16), 2).ToJson());
            Write("huge-space.json", new SearchSpace(new(1, 2000, 1), new(12, 120000, 12), new(1, 10000, 1), 12).ToJson());
            Write("bad-space.json", "{\"layers\": {\"min\": 1, ");
            Write("vocab.txt", string.Join('\n', "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "bad", "movie") + "\n");
            Directory.CreateDirectory(Path.Combine(Root, "sst2-bad"));
            Write("sst2-bad/train.tsv", "sentence\tlabel\na good movie\t1\na bad movie\t1\textra\n");
            Write("sst2-bad/dev.tsv", "sentence\tlabel\na good movie\t1\n");
            Directory.CreateDirectory(Path.Combine(Root, "sst2-label"));
            Write("sst2-label/train.tsv", "sentence\tlabel\na good movie\tmaybe\n");
            Write("sst2-label/dev.tsv", "sentence\tlabel\na good movie\t1\n");
            Directory.CreateDirectory(Path.Combine(Root, "sst2-nodev"));
            Write("sst2-nodev/train.tsv", "sentence\tlabel\na good movie\t1\n");
            Write("empty.txt", "");

            // Checkpoints: a good one, one with a NaN weight, one cut short, one that is not a checkpoint at all.
            var config = new BertConfig(new Architecture(1, 16, 16), 2, BuiltinTaskVocab, HeadKind.Classification, labels: 3, maxPositions: 128);
            var model = BertModel.CreateRandom(config, 1);
            BertCheckpoint.Save(PathOf("good.safetensors"), config, model.Parameters);
            var poisoned = model.Parameters.ToArray();
            poisoned[poisoned.Length / 2] = float.NaN;
            BertCheckpoint.Save(PathOf("nan.safetensors"), config, poisoned);
            var bytes = File.ReadAllBytes(PathOf("good.safetensors"));
            File.WriteAllBytes(PathOf("truncated.safetensors"), bytes[..(bytes.Length / 2)]);
            Write("garbage.safetensors", "this is not a safetensors file at all");

            // Latency datasets: an unparsable line, a negative latency, a record from another machine.
            var here = new LatencyRecord(1, 16, 16, 2, Precision.Int8, 1, 128, 0.2, 0.25, 0.21, 0.19, 10,
                LatencyProfiler.CpuModel(), 1, SpeedLimit.Onnx.OnnxRunner.RuntimeVersion, DateTimeOffset.UtcNow);
            Write("latency-garbage.jsonl", LatencyDataset.ToLine(here) + "\n{not json}\n");
            Write("latency-negative.jsonl", LatencyDataset.ToLine(here with { MedianMs = -0.5 }) + "\n");
            Write("latency-foreign.jsonl", LatencyDataset.ToLine(here with { CpuModel = "Some Other CPU 9000", Layers = 2 }) + "\n");
            Write("predictor-garbage.json", "{\"kind\": 42");
            Write("token.txt", "a-token-for-a-server-that-is-not-there\n");
        }

        /// <summary>The built-in task's vocabulary size (its encoder's), so checkpoints fit it.</summary>
        private static int BuiltinTaskVocab => SpeedLimit.Data.BuiltinTask.Encoder.VocabSize;

        public string PathOf(string name) => Path.Combine(Root, name);

        private void Write(string name, string text) => File.WriteAllText(PathOf(name), text, new UTF8Encoding(false));

        public void Dispose()
        {
            try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
        }
    }

    private const string In = "{in}";

    /// <summary>A small search whose checks are all cheap: each case below fails before profiling (unless it says otherwise).</summary>
    private static string[] Search(params string[] extra) =>
        ["search", "--output", "run", .. extra.Contains("--space") ? Array.Empty<string>() : ["--space", $"{In}/space.json"],
            "--bound-ms", "50", "--max-train-examples", "200", "--max-dev-examples", "50", "--max-length", "32", .. extra.Contains("--profile-count") ? Array.Empty<string>() : ["--profile-count", "14"],
            "--supermodel-epochs", "1", .. SpeedLimit.Tests.Pipeline.PipelineTests.TinyProtocols, .. extra];

    /// <summary>Name, arguments ({in} is the inputs folder), and a word the error line must contain.</summary>
    private static readonly (string Name, string[] Args, string Expected)[] Table =
    [
        // command line itself
        ("unknown flag", ["search", "--output", "run", "--bogus"], "--bogus"),
        ("unknown command", ["serch"], "serch"),
        ("not a number", Search("--seed", "abc"), "abc"),
        ("missing required output", ["search", "--bound-ms", "5"], "--output"),
        // the problem
        ("infeasible bound", Search("--space", $"{In}/space24.json", "--profile-count", "16", "--bound-ms", "0.00001"), "raise the bound"), // profiles, fits, then refuses before the supermodel
        ("negative bound", Search("--bound-ms", "-3"), "positive number of milliseconds"),
        ("zero bound", Search("--bound-ms", "0"), "positive number of milliseconds"),
        ("NaN bound", Search("--bound-ms", "NaN"), "positive number of milliseconds"),
        ("unknown precision", Search("--precision", "int4"), "int4"),
        ("baseline zero", Search("--baseline", "0,0,0"), "zero or negative"),
        ("baseline heads", Search("--baseline", "1,17,16"), "multiple"),
        ("baseline too big", Search("--baseline", "3,32,32"), "does not fit"),
        ("baseline malformed", Search("--baseline", "2,30"), "e,h,f"),
        ("space missing", Search("--space", $"{In}/nowhere.json"), "nowhere.json"),
        ("space malformed", Search("--space", $"{In}/bad-space.json"), "search space"),
        ("space huge", Search("--space", $"{In}/huge-space.json"), "architectures"),
        // data
        ("unknown task", Search("--task", "nosuchtask"), "unknown task"),
        ("data dir missing", Search("--task", "sst2", "--data-dir", $"{In}/nowhere", "--vocab", $"{In}/vocab.txt"), "nowhere"),
        ("vocab missing", Search("--task", "sst2", "--data-dir", $"{In}/sst2-bad", "--vocab", $"{In}/novocab.txt"), "novocab.txt"),
        ("tsv wrong columns", Search("--task", "sst2", "--data-dir", $"{In}/sst2-bad", "--vocab", $"{In}/vocab.txt"), "train.tsv:3"),
        ("tsv bad label", Search("--task", "sst2", "--data-dir", $"{In}/sst2-label", "--vocab", $"{In}/vocab.txt"), "maybe"),
        ("dev file missing", Search("--task", "sst2", "--data-dir", $"{In}/sst2-nodev", "--vocab", $"{In}/vocab.txt"), "validation split"),
        ("max length tiny", Search("--max-length", "2"), "--max-length"),
        ("max length huge", Search("--max-length", "100000"), "--max-length"),
        ("train examples zero", Search("--max-train-examples", "0"), "--max-train-examples"),
        // budgets and machine
        ("threads zero", Search("--threads", "0"), "--threads"),
        ("latency threads zero", Search("--latency-threads", "0"), "--latency-threads"),
        ("profile count small", Search("--profile-count", "3"), "--profile-count"),
        ("supermodel epochs negative", Search("--supermodel-epochs", "-1"), "--supermodel-epochs"),
        ("finetune epochs negative", Search("--finetune-epochs", "-1"), "epochs"),
        ("population zero", Search("--population", "0"), "CandidatesPerGeneration"),
        ("generations zero", Search("--generations", "0"), "Generations"),
        // files the supermodel stage would read late
        ("teacher missing", Search("--teacher", $"{In}/none.safetensors"), "none.safetensors"),
        ("teacher truncated", Search("--teacher", $"{In}/truncated.safetensors"), "truncated.safetensors"),
        ("teacher not a checkpoint", Search("--teacher", $"{In}/garbage.safetensors"), "garbage.safetensors"),
        ("teacher NaN", Search("--teacher", $"{In}/nan.safetensors"), "non-finite"),
        ("corpus missing", Search("--pretrain-corpus", $"{In}/nocorpus.txt"), "nocorpus.txt"),
        ("corpus empty", Search("--pretrain-corpus", $"{In}/empty.txt"), "empty"),
        // latency datasets
        ("latency data garbage", Search("--latency-data", $"{In}/latency-garbage.jsonl"), "latency-garbage.jsonl:2"),
        ("latency data negative", Search("--latency-data", $"{In}/latency-negative.jsonl"), "positive number"),
        ("latency data other device", Search("--latency-data", $"{In}/latency-foreign.jsonl"), "another device"),
        // the deployment machine (--latency-endpoint; port 9 on loopback refuses connections)
        ("latency endpoint without token", Search("--latency-endpoint", "http://127.0.0.1:9"), "SPEEDLIMIT_LATENCY_TOKEN"),
        ("latency endpoint not http", Search("--latency-endpoint", "ftp://127.0.0.1:9", "--latency-token-file", $"{In}/token.txt"), "http://"),
        ("latency token file missing", Search("--latency-endpoint", "http://127.0.0.1:9", "--latency-token-file", $"{In}/none.txt"), "none.txt"),
        ("latency endpoint down", Search("--latency-endpoint", "http://127.0.0.1:9", "--latency-token-file", $"{In}/token.txt", "--latency-retry-seconds", "0.5"), "did not answer"),
        ("profile endpoint down", ["profile", "--space", $"{In}/space.json", "--count", "2", "--latency-endpoint", "http://127.0.0.1:9", "--latency-token-file", $"{In}/token.txt", "--latency-retry-seconds", "0.5", "-o", "l.jsonl"], "did not answer"),
        ("serve not http", ["latency", "serve", "--urls", "https://127.0.0.1:0", "--store", "store"], "--urls"),
        ("serve upload limit", ["latency", "serve", "--urls", "http://127.0.0.1:0", "--store", "store", "--max-upload-mb", "0"], "--max-upload-mb"),
        // export
        ("export NaN checkpoint", ["export", "--checkpoint", $"{In}/nan.safetensors", "-o", "m.onnx"], "non-finite"),
        ("export garbage checkpoint", ["export", "--checkpoint", $"{In}/garbage.safetensors", "-o", "m.onnx"], "garbage.safetensors"),
        ("export heads", ["export", "--arch", "1,17,16", "-o", "m.onnx"], "17"),
        ("export precision", ["export", "--arch", "1,24,16", "--precision", "fp16", "-o", "m.onnx"], "fp16"),
        ("export missing folder", ["export", "--arch", "1,24,16", "-o", "nofolder/m.onnx"], "nofolder"),
        // latency commands
        ("fit missing data", ["latency", "fit", "--data", $"{In}/none.jsonl", "--output", "p.json"], "none.jsonl"),
        ("fit garbage data", ["latency", "fit", "--data", $"{In}/latency-garbage.jsonl", "--output", "p.json"], "latency-garbage.jsonl:2"),
        ("narrow garbage predictor", ["latency", "narrow", "--predictor", $"{In}/predictor-garbage.json", "--bound-ms", "5"], "predictor-garbage.json"),
        ("narrow missing predictor", ["latency", "narrow", "--predictor", $"{In}/none.json", "--bound-ms", "5"], "none.json"),
        ("profile bad space", ["profile", "--space", $"{In}/bad-space.json", "-o", "l.jsonl"], "search space"),
        ("profile too many", ["profile", "--space", $"{In}/space.json", "--count", "1000", "-o", "l.jsonl"], "--count"),
        // other commands
        ("inspect unknown task", ["data", "inspect", "--task", "nosuchtask"], "unknown task"),
        ("inspect malformed tsv", ["data", "inspect", "--task", "sst2", "--data-dir", $"{In}/sst2-bad", "--vocab", $"{In}/vocab.txt"], "train.tsv:3"),
        ("supermodel missing folder", ["supermodel", "train", "--output", "nofolder/s.safetensors", "--space", $"{In}/space.json"], "nofolder"),
        ("supermodel NaN teacher", ["supermodel", "train", "--output", "s.safetensors", "--space", $"{In}/space.json", "--teacher", $"{In}/nan.safetensors"], "non-finite"),
        ("supermodel negative epochs", ["supermodel", "train", "--output", "s.safetensors", "--epochs", "-2"], "--supermodel-epochs"),
    ];

    public static IEnumerable<object[]> Cases() => Table.Select(c => new object[] { c.Name });

    [Theory]
    [MemberData(nameof(Cases))]
    public void FailsWithOneErrorLineAndLeavesNothing(string name)
    {
        var (_, template, expected) = Table.Single(c => c.Name == name);
        var args = template.Select(a => a.Replace(In, _in.Root, StringComparison.Ordinal)).ToArray();
        var work = Path.Combine(_in.Root, "case-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        var outcome = CliProcess.Run(work, args, quickStart: true);
        AssertCleanFailure(name, args, outcome, expected);
        Assert.Empty(CliProcess.Listing(work));
    }

    internal static void AssertCleanFailure(string name, string[] args, CliProcess.Outcome outcome, string expected)
    {
        var lines = outcome.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(outcome.ExitCode != 0, $"{name}: exit code 0 for {string.Join(' ', args)}");
        Assert.True(lines.Length == 1 && lines[0].StartsWith("error:", StringComparison.Ordinal),
            $"{name}: stderr should be one 'error:' line, was:\n{outcome.StdErr}");
        Assert.Contains(expected, lines[0], StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("   at ", outcome.StdOut + outcome.StdErr); // no stack trace
        Assert.DoesNotContain("Exception", outcome.StdOut + outcome.StdErr);
    }

    [Fact]
    public void AnExistingOutputAndAnUnfinishedRunAreRefusedWithoutTouchingThem()
    {
        var work = Path.Combine(_in.Root, "case-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        string Resolve(string a) => a.Replace(In, _in.Root, StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(work, "run"), "a file in the way");
        var args = Search().Select(Resolve).ToArray();
        AssertCleanFailure("output exists", args, CliProcess.Run(work, args, quickStart: true), "already exists");
        File.Delete(Path.Combine(work, "run"));

        Directory.CreateDirectory(Path.Combine(work, "run.partial"));
        File.WriteAllText(Path.Combine(work, "run.partial", "options.json"), "{\"seed\": 99}");
        var before = CliProcess.Listing(work);
        AssertCleanFailure("unfinished without --resume", args, CliProcess.Run(work, args, quickStart: true), "--resume");
        var resumed = Search("--resume").Select(Resolve).ToArray();
        AssertCleanFailure("resume with other settings", resumed, CliProcess.Run(work, resumed, quickStart: true), "seed: 99 then, 1 now");
        Assert.Equal(before, CliProcess.Listing(work));
    }
}
