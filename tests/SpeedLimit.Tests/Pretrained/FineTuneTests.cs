using SpeedLimit.Checkpoints;
using SpeedLimit.Cli;
using SpeedLimit.Model;
using SpeedLimit.Onnx;
using SpeedLimit.Pipeline;
using SpeedLimit.Pretrained;
using SpeedLimit.Tests.Data;

namespace SpeedLimit.Tests.Pretrained;

/// <summary>
/// Fine-tuning a pretrained encoder into the teacher: on real SST-2 data the pretrained start beats the
/// random one by a wide margin; the teacher job writes its files, its exports agree with the engine, and a
/// killed run resumes to the same weights as an uninterrupted one.
/// </summary>
[Collection("console")]
public sealed class FineTuneTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("finetune-test-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private DataOptions Sst2(int train, int dev, int maxLength) =>
        new() { Task = "sst2", DataDir = SharedData.Glue("SST-2"), MaxSequenceLength = maxLength, MaxTrainExamples = train, MaxDevExamples = dev };

    [SharedDataFact]
    public void PretrainedStartBeatsRandomStartByAWideMargin()
    {
        // The first 3 layers of all-MiniLM-L6-v2 against the same architecture from BERT's random
        // initialization: the same 100 steps (batch 16, max 32 tokens, lr 2e-4), seeds, batches and dropout.
        var encoder = PretrainedLoader.LoadMiniLm();
        var task = TeacherFineTuning.LoadTask(encoder, Sst2(train: 4000, dev: 300, maxLength: 32), seed: 1, _dir);
        var full = encoder.CreateModel(HeadKind.Classification, 2, seed: 7, out _);
        var pretrained = new ElasticSupermodel(full).Extract(new Architecture(3, 384, 1536));
        var random = BertModel.CreateRandom(pretrained.Config, seed: 7);
        var options = new TeacherFineTuneOptions { BatchSize = 16, LearningRate = 2e-4f, MaxSteps = 100, Threads = 2, Seed = 11 };
        var accuracy = new Dictionary<string, double>();
        foreach (var (name, model) in new[] { ("pretrained", pretrained), ("random", random) })
        {
            TeacherFineTuning.Train(model, task, options, statePath: null, fingerprint: "", progress: null, notes: [], CancellationToken.None);
            accuracy[name] = task.EvaluateDev(model).Primary;
        }
        Assert.True(accuracy["pretrained"] >= accuracy["random"] + 0.1,
            $"pretrained {accuracy["pretrained"]:F3} vs random {accuracy["random"]:F3} on {task.Dev.Count} SST-2 dev examples after 100 steps");
    }

    /// <summary>A small random "pretrained" BERT over the real bert-base-uncased vocabulary, as a Hugging Face folder.</summary>
    private string SmallPretrainedFolder()
    {
        var vocab = HuggingFaceFolder.ReadVocabLines(SharedData.BertVocab);
        var config = new BertConfig(new Architecture(2, 24, 48), 4, vocab.Length, HeadKind.MaskedLm, maxPositions: 64);
        var dir = Path.Combine(_dir, "small-pretrained");
        HuggingFaceFolder.Write(dir, config, RandomBertWeights.Create(new BertParameterLayout(config), 3, 0.05f), vocab);
        return dir;
    }

    [SharedDataFact]
    public void TeacherJobWritesCheckpointExportsAndAHuggingFaceFolderThatAgree()
    {
        var encoder = PretrainedLoader.Load(SmallPretrainedFolder());
        var outDir = Path.Combine(_dir, "teacher");
        var task = TeacherFineTuning.LoadTask(encoder, Sst2(train: 200, dev: 64, maxLength: 24), seed: 1, outDir);
        var result = TeacherFineTuning.Run(encoder, task, new TeacherFineTuneOptions { Epochs = 1, BatchSize = 16, LearningRate = 1e-3f, Threads = 2 }, outDir);
        Assert.Equal(13, result.Steps); // ⌈200 / 16⌉
        Assert.Contains(result.Notes, n => n.Contains("classifier.weight") && n.Contains("bert.pooler.dense.weight")); // MLM checkpoint: new pooler and classifier
        foreach (var f in new[] { TeacherFineTuning.CheckpointFile, TeacherFineTuning.Fp32OnnxFile, TeacherFineTuning.Int8OnnxFile, TeacherFineTuning.VocabFile, TeacherFineTuning.SummaryFile })
            Assert.True(File.Exists(Path.Combine(outDir, f)), f);
        Assert.False(Directory.Exists(Path.Combine(outDir, "work")), "the training state is removed once the teacher is written");
        // The checkpoint is the model; ONNX Runtime on the fp32 export scores what the engine scores.
        var saved = BertCheckpoint.Load(result.CheckpointFile);
        Assert.Equal(result.Model.Parameters, saved.Parameters);
        Assert.Equal(result.DevMetric, result.OnnxDevMetricFp32, 6);
        Assert.True(Math.Abs(result.DevMetricInt8 - result.OnnxDevMetricInt8) <= 2.0 / task.Dev.Count, $"int8: engine {result.DevMetricInt8} vs ORT {result.OnnxDevMetricInt8}");
        var back = HuggingFaceFolder.Read(result.HuggingFaceFolder);
        Assert.Equal(result.Model.Parameters, back.CreateModel().Parameters);
        Assert.Contains("\"dev_metric_fp32\"", File.ReadAllText(result.SummaryFile));
    }

    [SharedDataFact]
    public void KilledRunResumesToTheSameWeights()
    {
        var encoder = PretrainedLoader.Load(SmallPretrainedFolder());
        var task = TeacherFineTuning.LoadTask(encoder, Sst2(train: 96, dev: 16, maxLength: 24), seed: 1, _dir);
        var options = new TeacherFineTuneOptions { Epochs = 2, BatchSize = 16, LearningRate = 1e-3f, CheckpointEverySteps = 2, Threads = 1 };
        BertModel Fresh() => encoder.CreateModel(HeadKind.Classification, 2, options.Seed, out _);

        var reference = Fresh();
        TeacherFineTuning.Train(reference, task, options, Path.Combine(_dir, "ref.safetensors"), "same", null, [], CancellationToken.None);

        var state = Path.Combine(_dir, "killed.safetensors");
        using (var cts = new CancellationTokenSource())
        {
            var progress = new SyncProgress<FineTuneProgress>(p => { if (p.Step == 5) cts.Cancel(); });
            Assert.Throws<OperationCanceledException>(() => TeacherFineTuning.Train(Fresh(), task, options, state, "same", progress, [], cts.Token));
        }
        var notes = new List<string>();
        var resumed = Fresh();
        TeacherFineTuning.Train(resumed, task, options, state, "same", null, notes, CancellationToken.None);
        Assert.Contains(notes, n => n.Contains("at step 4 of 12"));
        Assert.Equal(reference.Parameters, resumed.Parameters);

        var ex = Assert.Throws<UserInputException>(() => TeacherFineTuning.Train(Fresh(), task, options, state, "other", null, [], CancellationToken.None));
        Assert.Contains("other settings", ex.Message);
    }

    [Fact]
    public void BadFineTuneRequestsFailWithOneLine()
    {
        var output = Path.Combine(_dir, "bad");
        var cases = new (string[] Args, string Expected)[]
        {
            (["finetune", "--pretrained", Path.Combine(_dir, "nowhere"), "--task", "sst2", "--output", output], "neither a folder"),
            (["finetune", "--pretrained", "minilm-l6", "--task", "builtin", "--output", output], "built-in task"),
            (["finetune", "--pretrained", "minilm-l6", "--task", "sst2", "--lr", "-1", "--output", output], "--lr"),
            (["finetune", "--pretrained", "minilm-l6", "--task", "sst2", "--max-length", "600", "--output", output], "--max-length"),
            (["pretrained", "export", "--checkpoint", Path.Combine(_dir, "none.safetensors"), "--vocab", "v.txt", "--output", output], "none.safetensors"),
            (["pretrained", "import", "--pretrained", "minilm-l6", "--dtype", "f8", "--output", output], "--dtype"),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, _, err) = ConsoleCapture.Run(() => Program.Run(args));
            var text = err.Trim();
            Assert.True(code != 0, $"{string.Join(' ', args)} should fail");
            Assert.StartsWith("error:", text);
            Assert.Contains(expected, text);
            Assert.DoesNotContain("   at ", text);
            Assert.False(Directory.Exists(output), $"{string.Join(' ', args)} left an output folder");
        }
    }
}
