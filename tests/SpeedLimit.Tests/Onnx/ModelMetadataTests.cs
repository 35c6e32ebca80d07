using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Onnx;

namespace SpeedLimit.Tests.Onnx;

public class ModelMetadataTests
{
    private static readonly ModelContract s_contract = new("sst2", "classification", ["negative", "positive"], "accuracy",
        "bert-wordpiece", MaxLength: 32, DoLowerCase: true, VocabSize: 97, VocabSha256: new string('a', 64));

    private static byte[] Export(ModelContract? contract, Precision precision = Precision.Int8)
    {
        var config = new BertConfig(new Architecture(1, 24, 32), 4, vocabSize: 97, HeadKind.Classification, labels: 2, maxPositions: 40);
        var layout = new BertParameterLayout(config);
        return BertOnnxExporter.ToBytes(config, layout, RandomBertWeights.Create(layout, 5),
            new OnnxExportOptions { Precision = precision, Contract = contract });
    }

    [Fact]
    public void MetadataCarriesThePositionLimitArchitectureAndContract()
    {
        using var runner = new OnnxRunner(Export(s_contract));
        Assert.Equal("40", runner.Metadata[BertOnnxExporter.PositionLimitKey]);
        Assert.Equal(40, runner.PositionLimit);
        Assert.Equal("1,24,32", runner.Metadata["architecture"].Replace("(", "").Replace(")", "").Replace(" ", ""));
        Assert.Equal("int8", runner.Metadata["precision"]);
        Assert.Equal("[\"negative\",\"positive\"]", runner.Metadata["labels"]);
        Assert.Equal("longest_first", runner.Metadata["truncation_strategy"]);
        var back = runner.Contract!;
        Assert.Equal(s_contract with { Labels = back.Labels }, back);
        Assert.Equal(s_contract.Labels, back.Labels);
    }

    [Fact]
    public void ABareExportStillDeclaresItsPositionLimit()
    {
        using var runner = new OnnxRunner(Export(null, Precision.Fp32));
        Assert.Equal(40, runner.PositionLimit);
        Assert.Null(runner.Contract);
    }

    [Fact]
    public void InputsLongerThanThePositionLimitGetAClearError()
    {
        using var runner = new OnnxRunner(Export(s_contract));
        Assert.Single(runner.Predict([Enumerable.Range(1, 40).ToArray()])); // exactly the limit runs
        var ex = Assert.Throws<ArgumentException>(() => runner.Predict([new[] { 1, 2 }, Enumerable.Range(1, 41).ToArray()]));
        Assert.Contains("example 1 has 41 tokens but the model has only 40 positions", ex.Message);
        Assert.Contains("max length 32", ex.Message);
        Assert.Throws<ArgumentException>(() => runner.CreateBuffer(1, 41));
    }

    [Fact]
    public void PartialOrForeignMetadataIsNoContract()
    {
        var full = s_contract.ToMetadata();
        var back = ModelContract.FromMetadata(full)!;
        Assert.Equal(s_contract with { Labels = back.Labels }, back);
        Assert.Null(ModelContract.FromMetadata(new Dictionary<string, string> { ["task"] = "text-classification" })); // another tool's key
        Assert.Null(ModelContract.FromMetadata(new Dictionary<string, string>(full) { ["labels"] = "not json" }));
        Assert.Null(ModelContract.FromMetadata(new Dictionary<string, string>(full) { ["max_length"] = "-3" }));
    }

    [Fact]
    public void AContractThatDoesNotFitTheModelIsRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() => Export(s_contract with { MaxLength = 41 }));
        Assert.Contains("40 positions", ex.Message);
        Assert.Throws<ArgumentException>(() => Export(s_contract with { VocabSize = 98 }));
    }
}
