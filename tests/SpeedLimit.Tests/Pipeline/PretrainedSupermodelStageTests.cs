using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Pipeline;

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
            var options = new SupermodelJob(new SupermodelTrainingOptions { Epochs = 0, BatchSize = 32 }, space, Seed: 1, Threads: 2, MaxPositions: 128);
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
        var options = new SupermodelJob(new SupermodelTrainingOptions(), new SearchSpace(new(1, 3, 1), new(16, 32, 16), new(32, 64, 32), 4), Seed: 1, Threads: 2, MaxPositions: 128);
        var e = Assert.Throws<UserInputException>(() => SupermodelStage.TrainFromPretrained(options, new PretrainedStartOptions { Source = "test" }, task, Pretrained(task),
            Path.GetTempPath(), null, new List<string>(), CancellationToken.None));
        Assert.Contains("layers 3 > 2", e.Message);
    }
}
