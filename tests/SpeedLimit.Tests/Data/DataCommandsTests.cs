using SpeedLimit.Cli;
using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

public class DataCommandsTests
{
    [Fact]
    public void InspectBuiltinSucceedsAndUnknownTaskIsAUserError()
    {
        Assert.Equal(0, Program.Run(["data", "inspect", "--task", "builtin", "--seed", "3"]));
        Assert.Equal(CliErrors.UserErrorExitCode, Program.Run(["data", "inspect", "--task", "nosuchtask"]));
        Assert.Equal(CliErrors.UserErrorExitCode, Program.Run(["data", "inspect", "--task", "rte"])); // no --data-dir
    }

    [SharedDataFact]
    public void InspectGlueFolderFindsTheVocabAboveIt()
    {
        Assert.Equal(0, Program.Run(["data", "inspect", "--task", "rte", "--data-dir", SharedData.Glue("RTE")]));
        Assert.NotNull(TaskCatalog.FindBertVocab([SharedData.Glue("RTE")]));
    }

    [Fact]
    public void SummaryCountsAndPercentiles()
    {
        var task = BuiltinTask.Generate(new BuiltinTaskOptions { TrainSize = 90, DevSize = 30, Seed = 2 });
        var summaries = DataInspector.Summarize(task, task.BuiltinEncoder!, maxLength: 40, maxTokenized: 50);
        Assert.Equal(["train", "dev"], summaries.Select(s => s.Split));
        Assert.Equal((90, 50), (summaries[0].Examples, summaries[0].TokenizedExamples));
        Assert.Equal(90, summaries[0].LabelCounts.Sum(c => c.Count));
        var devLengths = task.Dev.Select(e => task.BuiltinEncoder!.Encode(e.TextA, e.TextB, 1000).Length).Order().ToArray();
        Assert.Equal(devLengths[14], summaries[1].LengthP50); // nearest rank: ceil(0.5·30) = 15th
        Assert.Equal(devLengths[^1], summaries[1].LengthMax);
        Assert.Equal(devLengths.Count(l => l > 40), summaries[1].Truncated);
        Assert.Equal(3, DataInspector.Percentile([1, 2, 3, 4], 0.5) + 1);
    }
}
