using SpeedLimit.Latency;
using SpeedLimit.Pipeline;
using SpeedLimit.Pretrained;

namespace SpeedLimit.Tests.Pipeline;

public class PretrainedOptionsTests
{
    [Fact]
    public void BadPretrainedSettingsNameTheFlag()
    {
        Assert.Contains("--pretrained", Assert.Throws<ArgumentException>(() => new PretrainedStartOptions().Validate()).Message);
        Assert.Contains("--teacher-epochs", Assert.Throws<ArgumentException>(() => new PretrainedStartOptions { Source = "minilm-l6", TeacherEpochs = 0 }.Validate()).Message);
        Assert.Contains("importance batches", Assert.Throws<ArgumentException>(() => new PretrainedStartOptions { Source = "minilm-l6", ImportanceBatches = 0 }.Validate()).Message);
        Assert.Contains("magnitude", Assert.Throws<ArgumentException>(() => ImportanceReordering.ParseKind("random")).Message);
        Assert.Equal(ImportanceKind.Magnitude, ImportanceReordering.ParseKind("L1"));
        new PretrainedStartOptions { Source = "minilm-l6" }.Validate();
    }

    [Fact]
    public void ThreadCpuClockNeedsOneLatencyThread()
    {
        new ProfilingOptions { Clock = LatencyClock.ThreadCpu, Threads = 1 }.Validate();
        Assert.Contains("--latency-threads 1", Assert.Throws<ArgumentException>(() => new ProfilingOptions { Clock = LatencyClock.ThreadCpu, Threads = 2 }.Validate()).Message);
    }
}
