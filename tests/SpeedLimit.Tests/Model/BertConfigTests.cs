using SpeedLimit.Model;

namespace SpeedLimit.Tests.Model;

public class BertConfigTests
{
    [Fact]
    public void HeadSizeMustBeIntegral()
    {
        var ex = Assert.Throws<ArgumentException>(() => new BertConfig(new Architecture(2, 130, 64), 12, 100, HeadKind.Classification));
        Assert.Contains("not divisible by 12 heads", ex.Message);
        Assert.Equal(11, new BertConfig(new Architecture(2, 132, 64), 12, 100, HeadKind.Classification).HeadSize);
    }

    [Fact]
    public void LayoutCarvesContiguousNamedTensors()
    {
        var config = new BertConfig(new Architecture(2, 24, 40), 4, 50, HeadKind.Classification, labels: 3, maxPositions: 16);
        var layout = new BertParameterLayout(config);
        long expected = 0;
        foreach (var t in layout.Tensors) { Assert.Equal(expected, t.Offset); expected += t.Length; }
        Assert.Equal(expected, layout.TotalLength);
        Assert.Equal(new[] { 40, 24 }, layout[BertParameterLayout.Names.Intermediate(1, "weight")].Shape);
        Assert.Equal(new[] { 3, 24 }, layout[BertParameterLayout.Names.ClassifierWeight].Shape);
        // hand count: embeddings 50*24+16*24+2*24+2*24; per layer 4*(24*24+24)+2*24+40*24+40+24*40+24+2*24; pooler 24*24+24; classifier 3*24+3
        long embeddings = 50 * 24 + 16 * 24 + 2 * 24 + 2 * 24;
        long perLayer = 4 * (24 * 24 + 24) + 2 * 24 + 40 * 24 + 40 + 24 * 40 + 24 + 2 * 24;
        Assert.Equal(embeddings + 2 * perLayer + 24 * 24 + 24 + 3 * 24 + 3, layout.TotalLength);
    }
}
