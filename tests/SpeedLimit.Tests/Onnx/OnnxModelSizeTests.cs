using SpeedLimit.Model;
using SpeedLimit.Onnx;

namespace SpeedLimit.Tests.Onnx;

public class OnnxModelSizeTests
{
    [Fact]
    public void SizeIsTheExportedFilesAndDoesNotDependOnTheWeights()
    {
        var config = new BertConfig(new Architecture(2, 24, 40), 4, 50, HeadKind.Classification, labels: 2, maxPositions: 16);
        var trained = BertModel.CreateRandom(config, seed: 77, std: 0.5f); // other values than the size helper's
        var dir = Path.Combine(Path.GetTempPath(), $"sl-size-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            foreach (var precision in new[] { Precision.Fp32, Precision.Int8 })
            {
                var path = Path.Combine(dir, $"{precision}.onnx");
                BertOnnxExporter.Save(config, trained.Layout, trained.Parameters, path, new OnnxExportOptions { Precision = precision });
                Assert.Equal(new FileInfo(path).Length, OnnxModelSize.Bytes(config, precision));
            }
        }
        finally { Directory.Delete(dir, true); }
        Assert.Equal(trained.Parameters.LongLength, OnnxModelSize.Parameters(config));
        // int8 stores each linear weight in one byte instead of four
        Assert.True(OnnxModelSize.Bytes(config, Precision.Int8) < OnnxModelSize.Bytes(config, Precision.Fp32));
    }
}
