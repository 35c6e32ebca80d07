using SpeedLimit.Training;

namespace SpeedLimit.Tests.Training;

public class LearningRateScheduleTests
{
    [Fact]
    public void LinearWarmupThenLinearDecay_KnownValues()
    {
        var s = new LearningRateSchedule(1e-3f, totalSteps: 100, warmupSteps: 10);
        Assert.Equal(1e-4f, s.At(0), 1e-9f);
        Assert.Equal(5e-4f, s.At(4), 1e-9f);
        Assert.Equal(1e-3f, s.At(9), 1e-9f);
        Assert.Equal(1e-3f, s.At(10), 1e-9f);   // (100-10)/(100-10)
        Assert.Equal(5e-4f, s.At(55), 1e-9f);   // (100-55)/90
        Assert.Equal(1e-5f / 0.9f, s.At(99), 1e-9f);
        Assert.Equal(0f, s.At(100));
        Assert.Equal(0f, s.At(1000));
        for (long t = 11; t < 100; t++) Assert.True(s.At(t) < s.At(t - 1));
    }

    [Fact]
    public void ConstantAfterWarmup_AndNoWarmup()
    {
        var c = new LearningRateSchedule(2e-5f, 50, 5, LearningRateScheduleKind.Constant);
        Assert.Equal(4e-6f, c.At(0), 1e-12f);
        Assert.Equal(2e-5f, c.At(5));
        Assert.Equal(2e-5f, c.At(500));
        var d = new LearningRateSchedule(1f, 4, 0);
        Assert.Equal([1f, 0.75f, 0.5f, 0.25f, 0f], Enumerable.Range(0, 5).Select(t => d.At(t)).ToArray());
    }

    [Fact]
    public void FromRatio_RoundsWarmupUp()
    {
        Assert.Equal(11, LearningRateSchedule.FromRatio(1e-3f, 101, 0.1f).WarmupSteps);
        Assert.Equal(0, LearningRateSchedule.FromRatio(1e-3f, 101, 0f).WarmupSteps);
        var fromOptions = LearningRateSchedule.FromOptions(new TrainingOptions { LearningRate = 3e-4f, WarmupRatio = 0.25f }, 40);
        Assert.Equal(10, fromOptions.WarmupSteps);
        Assert.Equal(3e-4f, fromOptions.PeakLearningRate);
    }

    [Fact]
    public void RejectsBadArguments()
    {
        Assert.Throws<ArgumentException>(() => new LearningRateSchedule(0f, 10, 1));
        Assert.Throws<ArgumentException>(() => new LearningRateSchedule(1f, 10, 11));
        Assert.Throws<ArgumentException>(() => LearningRateSchedule.FromRatio(1f, 10, 1.5f));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(1f, 10, 1).At(-1));
        var ex = Assert.Throws<ArgumentException>(() => new TrainingOptions { AccumulationSteps = 0 }.Validate());
        Assert.Contains("accumulation", ex.Message);
    }
}
