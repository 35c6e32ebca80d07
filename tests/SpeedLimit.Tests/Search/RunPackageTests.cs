using System.Text.Json.Nodes;
using SpeedLimit.Data;
using SpeedLimit.Reporting;
using SpeedLimit.Tests.Data;

namespace SpeedLimit.Tests.Search;

public class RunPackageTests
{
    private static (BertTextEncoder Encoder, TaskDataset Task) Sst2Like(TempDir dir)
    {
        var encoder = BertTextEncoder.FromVocabFile(dir.File("vocab-in.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ngood\nbad\n##ly\n"));
        var task = new TaskDataset("sst2", TaskKind.Classification, ["negative", "positive"], PrimaryMetric.Accuracy,
            [new TaskExample("good", null, ClassId: 1)], [new TaskExample("bad", null, ClassId: 0)]);
        return (encoder, task);
    }

    [Fact]
    public void TokenizerFilesFollowHuggingFacesLayoutAndTheContract()
    {
        using var dir = new TempDir();
        var (encoder, task) = Sst2Like(dir);
        var contract = RunPackage.Contract(task, encoder, 64);
        Assert.Equal(("sst2", "classification", "accuracy", "bert-wordpiece", 64, true, 8),
            (contract.Task, contract.TaskKind, contract.Metric, contract.Tokenizer, contract.MaxLength, contract.DoLowerCase, contract.VocabSize));
        Assert.Equal(["negative", "positive"], contract.Labels);

        RunPackage.WriteTokenizer(dir.Path, encoder, contract);
        Assert.Equal(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "##ly"], File.ReadAllLines(Path.Combine(dir.Path, RunPackage.VocabFile)));
        using (StrictText.ParseJson(Path.Combine(dir.Path, RunPackage.SpecialTokensFile))) { }
        var config = JsonNode.Parse(StrictText.Read(Path.Combine(dir.Path, RunPackage.TokenizerConfigFile)))!;
        Assert.Equal("BertTokenizer", config["tokenizer_class"]!.GetValue<string>());
        Assert.True(config["do_lower_case"]!.GetValue<bool>());
        Assert.Equal(64, config["model_max_length"]!.GetValue<int>());
        Assert.Equal("right", config["truncation_side"]!.GetValue<string>());
        Assert.Equal("longest_first", config["truncation_strategy"]!.GetValue<string>());
        var tok = JsonNode.Parse(StrictText.Read(Path.Combine(dir.Path, RunPackage.TokenizerFile)))!;
        Assert.Equal("LongestFirst", tok["truncation"]!["strategy"]!.GetValue<string>());
        Assert.Equal(64, tok["truncation"]!["max_length"]!.GetValue<int>());
        Assert.Equal(7, tok["model"]!["vocab"]!["##ly"]!.GetValue<int>());
        Assert.Equal(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], tok["added_tokens"]!.AsArray().Select(t => t!["content"]!.GetValue<string>()));
        Assert.All(tok["added_tokens"]!.AsArray(), t => Assert.False(t!["normalized"]!.GetValue<bool>())); // matched in raw text, as bert-base-uncased
    }

    [Fact]
    public void AVocabularyThatIsNotTheContractsIsRefused()
    {
        using var dir = new TempDir();
        var (encoder, task) = Sst2Like(dir);
        var other = BertTextEncoder.FromVocabFile(dir.File("other.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ngood\nbad\n##er\n"));
        Assert.Throws<ArgumentException>(() => RunPackage.WriteTokenizer(dir.Path, other, RunPackage.Contract(task, encoder, 64)));
    }
}
