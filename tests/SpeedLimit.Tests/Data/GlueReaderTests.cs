using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

public class GlueReaderTests
{
    private static List<TaskExample> Read(string task, string folder, string file, bool isTest = false) =>
        GlueTasks.ReadSplit(task, Path.Combine(SharedData.Glue(folder), file), isTest);

    private static int Count(List<TaskExample> xs, int classId) => xs.Count(e => e.ClassId == classId);

    [SharedDataFact]
    public void Sst2CountsAndBalance()
    {
        var train = Read("sst2", "SST-2", "train.tsv");
        Assert.Equal(67_349, train.Count);
        Assert.Equal((29_780, 37_569), (Count(train, 0), Count(train, 1)));
        Assert.Equal("hide new secretions from the parental units ", train[0].TextA);
        Assert.Null(train[0].TextB);
        var dev = Read("sst2", "SST-2", "dev.tsv");
        Assert.Equal((872, 428, 444), (dev.Count, Count(dev, 0), Count(dev, 1)));
        var test = Read("sst2", "SST-2", "test.tsv", isTest: true);
        Assert.Equal(1_821, test.Count);
        Assert.All(test, e => Assert.False(e.HasLabel));
    }

    [SharedDataFact]
    public void ColaIsHeaderlessAndGetsACarvedStratifiedDev()
    {
        var train = Read("cola", "CoLA", "train.tsv");
        Assert.Equal(8_551, train.Count);
        Assert.Equal((2_528, 6_023), (Count(train, 0), Count(train, 1)));
        // The first physical line is an example, not a header.
        Assert.Equal("Our friends won't buy this analysis, let alone the next one we propose.", train[0].TextA);
        Assert.Equal(1, train[0].ClassId);
        Assert.Equal(1_063, Read("cola", "CoLA", "test.tsv", isTest: true).Count);

        var task = GlueTasks.Load("CoLA", SharedData.Glue("CoLA"), new GlueLoadOptions { Seed = 7, CarvedDevFraction = 0.1 });
        Assert.True(task.DevCarvedFromTrain);
        Assert.Equal(PrimaryMetric.Matthews, task.PrimaryMetric);
        Assert.Equal(8_551, task.Train.Count + task.Dev.Count);
        Assert.Equal(253 + 602, task.Dev.Count); // 10 % of each class, rounded
        Assert.Equal((253, 602), (task.Dev.Count(e => e.ClassId == 0), task.Dev.Count(e => e.ClassId == 1)));
        var again = GlueTasks.Load("cola", SharedData.Glue("CoLA"), new GlueLoadOptions { Seed = 7 });
        Assert.Equal(task.Dev, again.Dev); // seeded
        var other = GlueTasks.Load("cola", SharedData.Glue("CoLA"), new GlueLoadOptions { Seed = 8 });
        Assert.NotEqual(task.Dev, other.Dev);
    }

    [SharedDataFact]
    public void MrpcHasABomAndPairs()
    {
        var path = Path.Combine(SharedData.Glue("MRPC"), "train.tsv");
        Assert.Equal(new byte[] { 0xEF, 0xBB, 0xBF }, File.ReadAllBytes(path)[..3]); // the file really starts with a BOM
        var train = Read("mrpc", "MRPC", "train.tsv");
        Assert.Equal((3_668, 2_474), (train.Count, Count(train, 1)));
        Assert.StartsWith("Amrozi accused his brother", train[0].TextA);
        Assert.StartsWith("Referring to him as only \"the witness\"", train[0].TextB);
        var dev = Read("mrpc", "MRPC", "dev.tsv");
        Assert.Equal((408, 279), (dev.Count, Count(dev, 1)));
        Assert.StartsWith("\"The foodservice pie business", dev[0].TextB); // leading quote kept: no quote handling
        Assert.Equal(1_725, Read("mrpc", "MRPC", "test.tsv", isTest: true).Count);
    }

    [SharedDataFact]
    public void StsbScoresAreFloatsAndDevIsCarved()
    {
        var train = Read("stsb", "STS-B", "train.tsv");
        Assert.Equal(5_749, train.Count);
        Assert.Equal(5.0f, train[0].Score);
        Assert.Equal(3.8f, train[1].Score);
        Assert.All(train, e => Assert.InRange(e.Score, 0f, 5f));
        Assert.Equal(1_379, Read("stsb", "STS-B", "test.tsv", isTest: true).Count);
        var task = GlueTasks.Load("sts-b", SharedData.Glue("STS-B"));
        Assert.Equal(TaskKind.Regression, task.Kind);
        Assert.True(task.DevCarvedFromTrain);
        Assert.Equal(5_749, task.Train.Count + task.Dev.Count);
        Assert.Equal(575, task.Dev.Count);
    }

    [SharedDataFact]
    public void RteAndQnliStringLabels()
    {
        var train = Read("rte", "RTE", "train.tsv");
        Assert.Equal((2_490, 1_249, 1_241), (train.Count, Count(train, 0), Count(train, 1)));
        var dev = Read("rte", "RTE", "dev.tsv");
        Assert.Equal((277, 146, 131), (dev.Count, Count(dev, 0), Count(dev, 1)));
        Assert.Equal(3_000, Read("rte", "RTE", "test.tsv", isTest: true).Count);
        var task = GlueTasks.Load("rte", SharedData.Glue("RTE"));
        Assert.False(task.DevCarvedFromTrain);
        Assert.Equal(["entailment", "not_entailment"], task.LabelNames);

        var qnli = Read("qnli", "QNLI", "dev.tsv");
        Assert.Equal((5_463, 2_702, 2_761), (qnli.Count, Count(qnli, 0), Count(qnli, 1)));
        Assert.Equal(5_463, Read("qnli", "QNLI", "test.tsv", isTest: true).Count);
    }

    [Fact]
    public void AllNineTasksAndAliasesAreKnown()
    {
        foreach (var name in new[] { "CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "MNLI-mm", "mnli_mismatched", "QNLI", "RTE", "WNLI" })
            Assert.True(GlueTasks.TryNormalize(name, out _), name);
        Assert.Equal(PrimaryMetric.F1Accuracy, GlueTasks.MetricOf("qqp"));
        Assert.Equal(PrimaryMetric.PearsonSpearman, GlueTasks.MetricOf("stsb"));
        Assert.Equal(3, GlueTasks.LabelNamesOf("mnli").Count);
        var ex = Assert.Throws<UserInputException>(() => GlueTasks.ReadSplit("sst3", "x.tsv", false));
        Assert.Contains("sst3", ex.Message);
    }

    [Fact]
    public void MnliReadsByHeaderNamesWithDifferentColumnCounts()
    {
        using var dir = new TempDir();
        // train has 12 columns, dev_matched 16 (label1..label5): columns are found by name.
        var h12 = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label";
        var h16 = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label";
        string Line(string header, string s1, string s2, string gold)
        {
            var cols = header.Split('\t');
            var vals = cols.Select(c => c switch { "sentence1" => s1, "sentence2" => s2, "gold_label" => gold, _ => "x" });
            return string.Join('\t', vals);
        }
        dir.File("train.tsv", $"{h12}\n{Line(h12, "A man eats.", "Someone eats.", "entailment")}\n{Line(h12, "A cat.", "A dog.", "contradiction")}\n");
        dir.File("dev_matched.tsv", $"{h16}\n{Line(h16, "It rains.", "It is wet.", "neutral")}\n");
        dir.File("dev_mismatched.tsv", $"{h16}\n{Line(h16, "X.", "Y.", "contradiction")}\n");
        var m = GlueTasks.Load("mnli", dir.Path);
        Assert.Equal([1, 0], m.Train.Select(e => e.ClassId));
        Assert.Equal(("It rains.", "It is wet.", 2), (m.Dev[0].TextA, m.Dev[0].TextB, m.Dev[0].ClassId));
        var mm = GlueTasks.Load("mnli-mm", dir.Path);
        Assert.Equal(0, mm.Dev[0].ClassId);
    }

    [Fact]
    public void WrongColumnCountNamesFileAndLine()
    {
        using var dir = new TempDir();
        var path = dir.File("train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\tentailment\n");
        var ex = Assert.Throws<InvalidDataException>(() => GlueTasks.Load("rte", dir.Path));
        Assert.Contains($"{path}:3:", ex.Message);
        Assert.Contains("expected 4", ex.Message);
    }

    [Fact]
    public void BadLabelsNameFileAndLine()
    {
        using var dir = new TempDir();
        var sts = dir.File("sts.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n" +
            "0\tg\tf\ty\to\ts\ts\tA.\tB.\t4.2\n1\tg\tf\ty\to\ts\ts\tA.\tB.\thigh\n");
        var ex = Assert.Throws<InvalidDataException>(() => GlueTasks.ReadSplit("stsb", sts, false));
        Assert.Contains($"{sts}:3:", ex.Message);
        Assert.Contains("'high'", ex.Message);

        var rte = dir.File("rte.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n");
        ex = Assert.Throws<InvalidDataException>(() => GlueTasks.ReadSplit("rte", rte, false));
        Assert.Contains($"{rte}:2:", ex.Message);
        Assert.Contains("entailment, not_entailment", ex.Message);

        var cola = dir.File("cola.tsv", "gj04\t1\t\tFine.\ngj04\tyes\t\tNot fine.\n");
        ex = Assert.Throws<InvalidDataException>(() => GlueTasks.ReadSplit("cola", cola, false));
        Assert.Contains($"{cola}:2:", ex.Message);
    }

    [Fact]
    public void EmptyMissingAndLabellessFilesFail()
    {
        using var dir = new TempDir();
        var empty = dir.File("empty.tsv", "");
        Assert.Contains(empty, Assert.Throws<InvalidDataException>(() => GlueTasks.ReadSplit("sst2", empty, false)).Message);
        var headerOnly = dir.File("header.tsv", "sentence\tlabel\n");
        Assert.Contains(headerOnly, Assert.Throws<InvalidDataException>(() => GlueTasks.ReadSplit("sst2", headerOnly, false)).Message);
        var missing = Path.Combine(dir.Path, "train.tsv");
        Assert.Contains(missing, Assert.Throws<FileNotFoundException>(() => GlueTasks.Load("sst2", dir.Path)).Message);
        var noLabel = dir.File("nolabel.tsv", "index\tsentence\n0\thello\n");
        Assert.Contains("'label'", Assert.Throws<InvalidDataException>(() => GlueTasks.ReadSplit("sst2", noLabel, isTest: false)).Message);
        Assert.False(GlueTasks.ReadSplit("sst2", noLabel, isTest: true)[0].HasLabel);
        var blankInside = dir.File("blank.tsv", "sentence\tlabel\na\t1\n\nb\t0\n");
        Assert.Contains($"{blankInside}:3:", Assert.Throws<InvalidDataException>(() => GlueTasks.ReadSplit("sst2", blankInside, false)).Message);
    }
}
