using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

public class SearchSpaceTests
{
    [Fact]
    public void PaperSpaceHasTable1Size()
    {
        Assert.Equal(13_125, SearchSpace.Paper.Count);
        Assert.Equal(13_125, SearchSpace.Paper.Enumerate().Count());
        Assert.Equal(new Architecture(5, 528, 1016), SearchSpace.Paper.Largest);
    }

    [Fact]
    public void JsonRoundTripsAndRejectsBadHeads()
    {
        var back = SearchSpace.FromJson(SearchSpace.Paper.ToJson());
        Assert.Equal(SearchSpace.Paper.Count, back.Count);
        Assert.Equal(SearchSpace.Paper.Largest, back.Largest);
        var ex = Assert.Throws<ArgumentException>(() => new SearchSpace(new(1, 2, 1), new(10, 30, 10), new(8, 8, 1), 4));
        Assert.Contains("not divisible", ex.Message);
        Assert.Throws<ArgumentException>(() => new SearchSpace(new(3, 2, 1), new(12, 24, 12), new(8, 8, 1), 4));
    }
}
