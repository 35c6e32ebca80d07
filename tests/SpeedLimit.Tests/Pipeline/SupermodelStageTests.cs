using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Pipeline;

public class SupermodelStageTests
{
    private static PipelineOptions SmallOptions() => new()
    {
        Space = new SearchSpace(new(1, 2, 1), new(16, 32, 16), new(16, 32, 16), 2),
        SupermodelEpochs = 1, SupermodelBatchSize = 16, MaxSequenceLength = 32, TrainThreads = 2, BoundsMs = [1],
    };

    private static EncodedTask SmallTask() =>
        new(BuiltinTask.Generate(new BuiltinTaskOptions { TrainSize = 64, DevSize = 16 }), BuiltinTask.Encoder, 32);

    [Fact]
    public void PretrainsWithMaskedLmThenTrainsOnTheTask()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"sl-stage-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var task = SmallTask();
            var corpus = Path.Combine(dir, "corpus.txt");
            File.WriteAllLines(corpus, task.Task.Train.Select(e => $"{e.TextA} {e.TextB}"));
            var options = SmallOptions();
            options.PretrainCorpus = [corpus];
            var notes = new List<string>();
            var stages = new List<string>();
            var checkpoint = Path.Combine(dir, "supermodel.safetensors");
            var super = SupermodelStage.Train(options, task, checkpoint, new SyncProgress<PipelineProgress>(p => stages.Add(p.Message)), notes, CancellationToken.None);
            Assert.Contains(stages, m => m.StartsWith("masked-LM pretraining", StringComparison.Ordinal));
            Assert.Contains(stages, m => m.StartsWith("supermodel", StringComparison.Ordinal));
            var pretrained = BertCheckpoint.Load(Path.ChangeExtension(checkpoint, ".pretrain.safetensors"));
            Assert.Equal(HeadKind.MaskedLm, pretrained.Config.Head);
            Assert.Equal(HeadKind.Classification, BertCheckpoint.Load(checkpoint).Config.Head);
            Assert.Equal(super.Supermodel.Parameters, BertCheckpoint.Load(checkpoint).Parameters);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void CopyEncoderTakesEmbeddingsAndLayersOnly()
    {
        var arch = new Architecture(1, 8, 8);
        var mlm = BertModel.CreateRandom(new BertConfig(arch, 2, 20, HeadKind.MaskedLm), 1);
        var cls = BertModel.CreateRandom(new BertConfig(arch, 2, 20, HeadKind.Classification), 2);
        var pooler = cls.Tensor(BertParameterLayout.Names.PoolerWeight).ToArray();
        SupermodelStage.CopyEncoder(mlm, cls);
        Assert.Equal(mlm.Tensor(BertParameterLayout.Names.Query(0, "weight")).ToArray(), cls.Tensor(BertParameterLayout.Names.Query(0, "weight")).ToArray());
        Assert.Equal(mlm.Tensor(BertParameterLayout.Names.WordEmbeddings).ToArray(), cls.Tensor(BertParameterLayout.Names.WordEmbeddings).ToArray());
        Assert.Equal(pooler, cls.Tensor(BertParameterLayout.Names.PoolerWeight).ToArray());
    }

    [Fact]
    public void TeacherWithAnotherVocabularyIsRejected()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"sl-teacher-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var teacherPath = Path.Combine(dir, "teacher.safetensors");
            var teacher = BertModel.CreateRandom(new BertConfig(new Architecture(1, 8, 8), 2, 999, HeadKind.Classification, labels: 3), 1);
            BertCheckpoint.Save(teacherPath, teacher.Config, teacher.Parameters);
            var options = SmallOptions();
            options.TeacherCheckpoint = teacherPath;
            var ex = Assert.Throws<UserInputException>(() => SupermodelStage.Train(options, SmallTask(), Path.Combine(dir, "s.safetensors"), null, new List<string>(), CancellationToken.None));
            Assert.Contains("vocabulary of 999", ex.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class PretrainedSupermodelStageTests
{
    private static EncodedTask Task() =>
        new(BuiltinTask.Generate(new BuiltinTaskOptions { TrainSize = 256, DevSize = 64 }), BuiltinTask.Encoder, 32);

    /// <summary>A stand-in "pretrained" encoder: random weights under the task's head (the stage does not care where they came from).</summary>
    private static BertModel Pretrained(EncodedTask task) => BertModel.CreateRandom(task.ConfigFor(new Architecture(2, 32, 64), heads: 4), seed: 8);

    [Fact]
    public void StartsFromTheReorderedTeacherAndResumesWithoutFineTuningAgain()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"sl-pre-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var task = Task();
            var pretrained = Pretrained(task);
            var space = SpeedLimit.Pretrained.PretrainedSpace.Derive(pretrained.Config, new() { HiddenStep = 16, FfnStep = 32 });
            var options = new PipelineOptions { Space = space, SupermodelEpochs = 0, SupermodelBatchSize = 32, TrainThreads = 2, MaxSequenceLength = 32 };
            var start = new PretrainedStartOptions { Source = "test", TeacherEpochs = 1, TeacherLearningRate = 1e-3f, ImportanceBatches = 2 };
            var notes = new List<string>();
            var built = SupermodelStage.TrainFromPretrained(options, start, task, pretrained, dir, null, notes, CancellationToken.None);
            Assert.True(File.Exists(Path.Combine(dir, "teacher.safetensors")));
            Assert.NotEqual(pretrained.Parameters, built.Teacher.Parameters); // fine-tuned
            // No supermodel steps: the supermodel is the reordered teacher, which computes what the teacher computes.
            var dev = task.PredictDev(built.Teacher);
            var sup = task.PredictDev(built.Supermodel.Extract(space.Largest));
            for (int i = 0; i < dev.Length; i++)
                for (int c = 0; c < dev[i].Length; c++) Assert.True(Math.Abs(dev[i][c] - sup[i][c]) < 2e-5, $"example {i}: {dev[i][c]} vs {sup[i][c]}");
            var teacherFile = BertCheckpoint.Load(Path.Combine(dir, "teacher.safetensors")).Parameters;
            Assert.NotEqual(teacherFile, built.Supermodel.Supermodel.Parameters); // permuted
            Assert.Contains(notes, n => n.Contains("reordered by gradient importance", StringComparison.Ordinal));

            var again = new List<string>();
            var resumed = SupermodelStage.TrainFromPretrained(options, start, task, pretrained, dir, null, again, CancellationToken.None);
            Assert.Contains(again, n => n.StartsWith("teacher reused", StringComparison.Ordinal));
            Assert.Equal(built.Supermodel.Supermodel.Parameters, resumed.Supermodel.Supermodel.Parameters);
            Assert.Equal(built.TeacherMetricFp32, resumed.TeacherMetricFp32);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ASpaceLargerThanThePretrainedModelIsRefused()
    {
        var task = Task();
        var options = new PipelineOptions { Space = new SearchSpace(new(1, 3, 1), new(16, 32, 16), new(32, 64, 32), 4), TrainThreads = 2, MaxSequenceLength = 32 };
        var e = Assert.Throws<UserInputException>(() => SupermodelStage.TrainFromPretrained(options, new PretrainedStartOptions { Source = "test" }, task, Pretrained(task),
            Path.GetTempPath(), null, new List<string>(), CancellationToken.None));
        Assert.Contains("layers 3 > 2", e.Message);
    }
}
