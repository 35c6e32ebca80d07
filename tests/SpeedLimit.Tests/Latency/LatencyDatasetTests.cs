using SpeedLimit.Latency;

namespace SpeedLimit.Tests.Latency;

public class LatencyDatasetTests
{
    private static LatencyRecord Record(int e, double ms) => new(e, 24, 40, 4, Precision.Int8, 1, 128, ms, ms * 1.1, ms, ms * 0.9, 10, "test cpu", 1, "1.0", DateTimeOffset.UnixEpoch);

    [Fact]
    public void AppendsLoadsAndSkipsPartialLastLine()
    {
        var path = Path.Combine(Path.GetTempPath(), $"lat-{Guid.NewGuid():N}.jsonl");
        try
        {
            LatencyDataset.Append(path, Record(1, 1.5));
            LatencyDataset.Append(path, Record(2, 2.5));
            File.AppendAllText(path, "{\"layers\":3,\"hid"); // a write cut short
            var loaded = LatencyDataset.Load(path);
            Assert.Equal(2, loaded.Count);
            Assert.Equal(Record(2, 2.5), loaded[1]);
            LatencyDataset.Append(path, Record(3, 3.5)); // repairs the partial line first
            Assert.Equal(new[] { 1, 2, 3 }, LatencyDataset.Load(path).Select(r => r.Layers));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void MalformedLineNamesFileAndLine()
    {
        var path = Path.Combine(Path.GetTempPath(), $"lat-{Guid.NewGuid():N}.jsonl");
        try
        {
            File.WriteAllText(path, LatencyDataset.ToLine(Record(1, 1)) + "\nnot json\n");
            var ex = Assert.Throws<InvalidDataException>(() => LatencyDataset.Load(path));
            Assert.Contains(":2:", ex.Message);
        }
        finally { File.Delete(path); }
    }
}
