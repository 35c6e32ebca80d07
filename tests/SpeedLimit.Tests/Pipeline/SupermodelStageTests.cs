using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Pipeline;

public class SupermodelStageTests
{
    private static SupermodelJob SmallJob(SupermodelTrainingOptions? options = null) =>
        new(options ?? new SupermodelTrainingOptions { Epochs = 1, BatchSize = 16 },
            new SearchSpace(new(1, 2, 1), new(16, 32, 16), new(16, 32, 16), 2), Seed: 1, Threads: 2, MaxPositions: 128);

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
            var options = SmallJob(new SupermodelTrainingOptions { Epochs = 1, BatchSize = 16, PretrainCorpus = [corpus] });
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
            var options = SmallJob(new SupermodelTrainingOptions { Epochs = 1, BatchSize = 16, TeacherCheckpoint = teacherPath });
            var ex = Assert.Throws<UserInputException>(() => SupermodelStage.Train(options, SmallTask(), Path.Combine(dir, "s.safetensors"), null, new List<string>(), CancellationToken.None));
            Assert.Contains("vocabulary of 999", ex.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
