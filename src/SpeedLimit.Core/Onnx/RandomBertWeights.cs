using SpeedLimit.Model;

namespace SpeedLimit.Onnx;

/// <summary>Seeded random BERT parameters, for latency profiling (values do not change speed) and parity tests.</summary>
public static class RandomBertWeights
{
    /// <summary>
    /// Matrices and biases ~ N(0, <paramref name="std"/>) (BERT's initializer uses 0.02); LayerNorm
    /// weights 1 + N(0, 0.1) and biases N(0, std), so a parity test exercises every parameter.
    /// </summary>
    public static float[] Create(BertParameterLayout layout, int seed, float std = 0.02f)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var random = new Random(seed);
        var p = new float[layout.TotalLength];
        foreach (var t in layout.Tensors)
        {
            var span = p.AsSpan((int)t.Offset, (int)t.Length);
            bool layerNormWeight = t.Name.Contains("LayerNorm.weight", StringComparison.Ordinal);
            for (int i = 0; i < span.Length; i++)
            {
                float n = Normal(random);
                span[i] = layerNormWeight ? 1f + 0.1f * n : std * n;
            }
        }
        return p;
    }

    private static float Normal(Random random)
    {
        // Box–Muller; 1 − u keeps the log argument in (0, 1].
        double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
    }
}
