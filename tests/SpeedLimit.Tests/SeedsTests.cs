namespace SpeedLimit.Tests;

public class SeedsTests
{
    [Fact]
    public void SubSeedsAreStableAndSpreadOut()
    {
        Assert.Equal(Seeds.Combine(7, 3, 1), Seeds.Combine(7, 3, 1));
        var all = new HashSet<int>();
        for (int s = 0; s < 20; s++) for (int a = 0; a < 50; a++) all.Add(Seeds.Combine(s, a));
        Assert.Equal(1000, all.Count);
        Assert.All(all, v => Assert.True(v >= 0));
    }
}
