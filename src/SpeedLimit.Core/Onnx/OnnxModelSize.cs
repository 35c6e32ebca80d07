using System.Collections.Concurrent;
using SpeedLimit.Model;

namespace SpeedLimit.Onnx;

/// <summary>
/// Model sizes as the paper's Figure 3 compares them: bytes of the ONNX file the exporter writes
/// (int8 or fp32) and the parameter count. Every initializer is a fixed-width tensor, so the file
/// size depends on the shape only, not on the weight values: it is computed once per (config,
/// precision) from a seeded random model.
/// </summary>
public static class OnnxModelSize
{
    private static readonly ConcurrentDictionary<(BertConfig, Precision), long> s_bytes = new();

    /// <summary>Bytes of the exported ONNX file of a model with <paramref name="config"/> at <paramref name="precision"/>.</summary>
    public static long Bytes(BertConfig config, Precision precision)
    {
        ArgumentNullException.ThrowIfNull(config);
        return s_bytes.GetOrAdd((config, precision), key =>
        {
            var layout = new BertParameterLayout(key.Item1);
            var weights = RandomBertWeights.Create(layout, seed: 1);
            return BertOnnxExporter.ToBytes(key.Item1, layout, weights, new OnnxExportOptions { Precision = key.Item2 }).LongLength;
        });
    }

    /// <summary>All parameters of the model (embeddings, encoder, pooler, head).</summary>
    public static long Parameters(BertConfig config) => new BertParameterLayout(config).TotalLength;
}
