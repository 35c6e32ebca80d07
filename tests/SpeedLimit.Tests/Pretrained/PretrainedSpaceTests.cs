using SpeedLimit.Model;
using SpeedLimit.Pretrained;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Pretrained;

public class PretrainedSpaceTests
{
    private static readonly BertConfig MiniLm = new(new Architecture(6, 384, 1536), 12, 30522, HeadKind.Classification);

    [Fact]
    public void DerivedSpaceEndsAtThePretrainedShapeWithItsHeads()
    {
        var space = PretrainedSpace.Derive(MiniLm);
        Assert.Equal(new Architecture(6, 384, 1536), space.Largest);
        Assert.Equal(new Architecture(1, 96, 192), space.Smallest);
        Assert.Equal(12, space.Heads);
        Assert.Equal(6 * 25 * 57, space.Count);
        PretrainedSpace.Check(space, MiniLm); // its own space passes

        var coarse = PretrainedSpace.Derive(MiniLm, new PretrainedSpaceOptions { MinLayers = 2, MinHidden = 100, HiddenStep = 48, MinFfn = 500, FfnStep = 256 });
        Assert.Equal(new Architecture(6, 384, 1536), coarse.Largest);
        Assert.Equal(new Architecture(2, 144, 512), coarse.Smallest); // 100 rounds up to the grid 384 − 5·48; 500 up to 1536 − 4·256
        Assert.All(coarse.Enumerate(), a => Assert.Equal(0, a.Hidden % 12));
    }

    [Fact]
    public void SpacesThatExceedTheModelOrChangeItsHeadsAreRefusedWithTheFix()
    {
        var tooDeep = new SearchSpace(new(1, 8, 1), new(96, 384, 12), new(192, 1536, 24), 12);
        var e = Assert.Throws<UserInputException>(() => PretrainedSpace.Check(tooDeep, MiniLm));
        Assert.Contains("layers 8 > 6", e.Message);
        Assert.Contains("at most (6,384,1536)", e.Message);

        var tooWide = SearchSpace.Paper; // (5, 528, 1016): hidden exceeds 384
        e = Assert.Throws<UserInputException>(() => PretrainedSpace.Check(tooWide, MiniLm));
        Assert.Contains("hidden 528 > 384", e.Message);
        Assert.DoesNotContain("FFN", e.Message);

        var tooBroadFfn = new SearchSpace(new(1, 6, 1), new(96, 384, 12), new(192, 2048, 32), 12);
        Assert.Contains("FFN 2048 > 1536", Assert.Throws<UserInputException>(() => PretrainedSpace.Check(tooBroadFfn, MiniLm)).Message);

        var otherHeads = SearchSpace.Demo; // 4 heads
        e = Assert.Throws<UserInputException>(() => PretrainedSpace.Check(otherHeads, MiniLm));
        Assert.Contains("4 heads", e.Message);
        Assert.Contains("has 12", e.Message);

        Assert.Contains("multiple of the model's 12 heads", Assert.Throws<UserInputException>(() => PretrainedSpace.Derive(MiniLm, new PretrainedSpaceOptions { HiddenStep = 16 })).Message);
        Assert.Throws<UserInputException>(() => PretrainedSpace.Derive(MiniLm, new PretrainedSpaceOptions { MinLayers = 7 }));
        Assert.Throws<UserInputException>(() => PretrainedSpace.Derive(MiniLm, new PretrainedSpaceOptions { MinFfn = 4000 }));

        // a smaller space inside the model is fine
        PretrainedSpace.Check(new SearchSpace(new(1, 4, 1), new(120, 264, 12), new(128, 1016, 12), 12), MiniLm);
    }
}
