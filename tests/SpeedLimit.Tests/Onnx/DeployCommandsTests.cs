using SpeedLimit.Latency;
using SpeedLimit.Onnx;

namespace SpeedLimit.Tests.Onnx;

[Collection("console")] // the CLI writes to the process-wide console
public class DeployCommandsTests
{
    private static int Run(params string[] args) => SpeedLimit.Cli.Program.Run(args);

    [Fact]
    public void Export_WritesAModelOnnxRuntimeRuns()
    {
        var path = Path.Combine(Path.GetTempPath(), $"speedlimit-cli-{Guid.NewGuid():N}.onnx");
        try
        {
            Assert.Equal(0, Run("export", "--arch", "1,24,32", "--heads", "4", "--vocab-size", "100", "--precision", "int8", "--per-channel", "--labels", "3", "-o", path));
            using var runner = new OnnxRunner(path);
            Assert.Equal(3, runner.Labels);
            Assert.Equal(3, runner.Predict([new[] { 1, 2, 3 }])[0].Length);
        }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData("export", "--arch", "2,130,256", "-o", "/tmp/speedlimit-never.onnx")]        // hidden not divisible by heads
    [InlineData("export", "--arch", "2,x,256", "-o", "/tmp/speedlimit-never.onnx")]          // not e,h,f
    [InlineData("export", "--arch", "0,132,256", "-o", "/tmp/speedlimit-never.onnx")]        // no layers
    [InlineData("export", "--arch", "1,24,32", "--precision", "fp16", "-o", "/tmp/speedlimit-never.onnx")]
    [InlineData("export", "--arch", "1,24,32", "--heads", "4", "--vocab-size", "50", "-o", "/nonexistent-dir/m.onnx")]
    [InlineData("profile", "--count", "0", "-o", "/tmp/speedlimit-never.jsonl")]
    [InlineData("profile", "--count", "2", "--precision", "bf16", "-o", "/tmp/speedlimit-never.jsonl")]
    [InlineData("profile", "fit", "-i", "/nonexistent-dir/latency.jsonl")]
    [InlineData("profile", "--count", "2", "--clock", "sundial", "-o", "/tmp/speedlimit-never.jsonl")]
    [InlineData("profile", "--count", "2", "--clock", "thread-cpu", "--threads", "2", "-o", "/tmp/speedlimit-never.jsonl")]
    [InlineData("export", "-o", "/tmp/speedlimit-never.onnx")]                                  // neither --arch nor --checkpoint
    public void BadInput_IsOneErrorLineAndExitCode2(params string[] args)
    {
        var (code, _, err) = ConsoleCapture.Run(() => Run(args));
        Assert.Equal(2, code);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.False(File.Exists("/tmp/speedlimit-never.onnx"));
        Assert.False(File.Exists("/tmp/speedlimit-never.jsonl"));
    }

    [Fact]
    public void Profile_MeasuresSmallSpaceAndFitReadsIt()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"speedlimit-prof-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var space = Path.Combine(dir, "space.json");
            File.WriteAllText(space, new SpeedLimit.Search.SearchSpace(new(1, 2, 1), new(8, 16, 8), new(8, 16, 8), 2).ToJson());
            var data = Path.Combine(dir, "lat.jsonl");
            Assert.Equal(0, Run("profile", "--space", space, "--count", "3", "--length", "4", "--seed", "2", "-o", data));
            Assert.Equal(6, LatencyDataset.Load(data).Count);
            var png = Path.Combine(dir, "fig.png");
            var md = Path.Combine(dir, "fig.md");
            Assert.Equal(0, Run("profile", "fit", "-i", data, "--length", "4", "--plot", png, "--markdown", md));
            Assert.True(new FileInfo(png).Length > 1000);
            Assert.Contains("Least-squares fit", File.ReadAllText(md));
        }
        finally { Directory.Delete(dir, true); }
    }
}
