using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Latency;

public class SpaceNarrowingTests
{
    /// <summary>A known latency function: distinct values, increasing in every dimension.</summary>
    private sealed class KnownPredictor(double margin) : ILatencyPredictor
    {
        public double PredictMs(Architecture a) => a.Layers * 10 + a.Hidden * 0.01 + a.Ffn * 0.001;
        public double RelativeMargin => margin;
    }

    private static readonly SearchSpace Space = new(new(1, 3, 1), new(12, 48, 12), new(10, 30, 10), 12);

    [Fact]
    public void BoundBelowEveryArchitectureNamesTheFastest()
    {
        var p = new KnownPredictor(0.1);
        var ex = Assert.Throws<UserInputException>(() => SpaceNarrowing.Narrow(Space, p, 5));
        Assert.Contains("(1,12,10)", ex.Message);
        Assert.Contains(p.PredictMs(new Architecture(1, 12, 10)).ToString("0.###"), ex.Message);
        Assert.Contains("raise the bound", ex.Message);
    }

    [Fact]
    public void BoundAboveEveryArchitectureKeepsAll()
    {
        var n = SpaceNarrowing.Narrow(Space, new KnownPredictor(0.1), 1000);
        Assert.Equal(Space.Count, n.Count);
        Assert.Equal(new Architecture(3, 48, 30), n.Slowest.Arch);
        Assert.Equal(new Architecture(1, 12, 10), n.Fastest.Arch);
        var spread = n.Spread();
        Assert.Equal(3, spread[0].DistinctValues);
        Assert.Equal(12, spread[1].Min);
        Assert.Equal(48, spread[1].Max);
    }

    [Fact]
    public void BoundExactlyOnOneArchitectureIncludesItAndNothingSlower()
    {
        foreach (var margin in new[] { 0.0, 0.07 })
        {
            var p = new KnownPredictor(margin);
            var target = new Architecture(2, 24, 20);
            double bound = p.PredictMs(target) * (1 + margin);
            var n = SpaceNarrowing.Narrow(Space, p, bound);
            Assert.True(n.Contains(target));
            var expected = Space.Enumerate().Where(a => p.PredictMs(a) <= p.PredictMs(target)).ToHashSet();
            Assert.Equal(expected, n.Feasible.Select(f => f.Arch).ToHashSet());
            Assert.Equal(target, n.Slowest.Arch);
            // Just below the bound the target drops out.
            var below = SpaceNarrowing.Narrow(Space, p, Math.BitDecrement(bound));
            Assert.False(below.Contains(target));
            Assert.Equal(n.Count - 1, below.Count);
        }
    }

    [Fact]
    public void MarginShrinksTheSpace()
    {
        var loose = SpaceNarrowing.Narrow(Space, new KnownPredictor(0.0), 25);
        var tight = SpaceNarrowing.Narrow(Space, new KnownPredictor(0.3), 25);
        Assert.True(tight.Count < loose.Count);
        Assert.All(tight.Feasible, f => Assert.True(f.UpperMs <= 25));
    }

    [Fact]
    public void RejectsNonPositiveBound()
    {
        Assert.Throws<ArgumentException>(() => SpaceNarrowing.Narrow(Space, new KnownPredictor(0), 0));
        Assert.Throws<ArgumentException>(() => SpaceNarrowing.Narrow(Space, new KnownPredictor(0), double.NaN));
    }
}
