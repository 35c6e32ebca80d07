using SpeedLimit.Model;
using SpeedLimit.Quantization;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Tests.Onnx;

/// <summary>
/// A plain scalar BERT forward written from the semantics the exporter documents, in double
/// precision where it can be, as an independent reference for the ONNX graphs. With
/// <c>int8</c> every linear layer goes through <see cref="DynamicQuantization.QuantizedLinearForward"/>
/// on the whole activation tensor, as the int8 graph does.
/// </summary>
internal sealed class ReferenceBert(BertConfig config, BertParameterLayout layout, float[] parameters)
{
    private ReadOnlySpan<float> P(string name)
    {
        var t = layout[name];
        return parameters.AsSpan((int)t.Offset, (int)t.Length);
    }

    /// <summary>Logits (B, labels) for ids/mask/types (B, T).</summary>
    public float[] Forward(long[] ids, long[] mask, long[] types, int batch, int seq, bool int8 = false, bool perChannel = false)
    {
        int h = config.Hidden, f = config.Ffn, heads = config.Heads, hs = config.HeadSize, rows = batch * seq;
        var x = new float[rows * h];
        var word = P(N.WordEmbeddings);
        var pos = P(N.PositionEmbeddings);
        var tt = P(N.TokenTypeEmbeddings);
        for (int r = 0; r < rows; r++)
        {
            int t = r % seq;
            for (int c = 0; c < h; c++)
                x[r * h + c] = word[(int)ids[r] * h + c] + pos[t * h + c] + tt[(int)types[r] * h + c];
        }
        LayerNorm(x, rows, P(N.EmbeddingsLayerNormWeight), P(N.EmbeddingsLayerNormBias));

        for (int l = 0; l < config.Layers; l++)
        {
            var q = Linear(x, rows, h, N.Query(l, "weight"), N.Query(l, "bias"), h, int8, perChannel);
            var k = Linear(x, rows, h, N.Key(l, "weight"), N.Key(l, "bias"), h, int8, perChannel);
            var v = Linear(x, rows, h, N.Value(l, "weight"), N.Value(l, "bias"), h, int8, perChannel);
            var context = new float[rows * h];
            var scores = new double[seq];
            double scale = 1.0 / Math.Sqrt(hs);
            for (int b = 0; b < batch; b++)
                for (int head = 0; head < heads; head++)
                    for (int i = 0; i < seq; i++)
                    {
                        double max = double.NegativeInfinity;
                        for (int j = 0; j < seq; j++)
                        {
                            double s = 0;
                            for (int d = 0; d < hs; d++)
                                s += (double)q[(b * seq + i) * h + head * hs + d] * k[(b * seq + j) * h + head * hs + d];
                            s = s * scale + (1 - mask[b * seq + j]) * -10000.0;
                            scores[j] = s;
                            max = Math.Max(max, s);
                        }
                        double sum = 0;
                        for (int j = 0; j < seq; j++) sum += scores[j] = Math.Exp(scores[j] - max);
                        for (int d = 0; d < hs; d++)
                        {
                            double acc = 0;
                            for (int j = 0; j < seq; j++) acc += scores[j] / sum * v[(b * seq + j) * h + head * hs + d];
                            context[(b * seq + i) * h + head * hs + d] = (float)acc;
                        }
                    }
            var attn = Linear(context, rows, h, N.AttentionOutput(l, "weight"), N.AttentionOutput(l, "bias"), h, int8, perChannel);
            for (int i = 0; i < x.Length; i++) x[i] += attn[i];
            LayerNorm(x, rows, P(N.AttentionLayerNorm(l, "weight")), P(N.AttentionLayerNorm(l, "bias")));
            var inter = Linear(x, rows, h, N.Intermediate(l, "weight"), N.Intermediate(l, "bias"), f, int8, perChannel);
            for (int i = 0; i < inter.Length; i++) inter[i] = (float)(0.5 * inter[i] * (1 + Erf(inter[i] / Math.Sqrt(2))));
            var ffn = Linear(inter, rows, f, N.Output(l, "weight"), N.Output(l, "bias"), h, int8, perChannel);
            for (int i = 0; i < x.Length; i++) x[i] += ffn[i];
            LayerNorm(x, rows, P(N.OutputLayerNorm(l, "weight")), P(N.OutputLayerNorm(l, "bias")));
        }

        var first = new float[batch * h];
        for (int b = 0; b < batch; b++) Array.Copy(x, b * seq * h, first, b * h, h);
        var pooled = Linear(first, batch, h, N.PoolerWeight, N.PoolerBias, h, int8, perChannel);
        for (int i = 0; i < pooled.Length; i++) pooled[i] = MathF.Tanh(pooled[i]);
        return Linear(pooled, batch, h, N.ClassifierWeight, N.ClassifierBias, config.Labels, int8, perChannel);
    }

    private float[] Linear(float[] x, int rows, int inDim, string weightName, string biasName, int outDim, bool int8, bool perChannel)
    {
        var w = P(weightName);
        var bias = P(biasName);
        var y = new float[rows * outDim];
        if (int8)
        {
            DynamicQuantization.QuantizedLinearForward(x, rows, inDim, w, outDim, bias, y, perChannel);
            return y;
        }
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < outDim; o++)
            {
                double acc = bias[o];
                for (int k = 0; k < inDim; k++) acc += (double)x[r * inDim + k] * w[o * inDim + k];
                y[r * outDim + o] = (float)acc;
            }
        return y;
    }

    private void LayerNorm(float[] x, int rows, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta)
    {
        int h = config.Hidden;
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, variance = 0;
            for (int c = 0; c < h; c++) mean += x[r * h + c];
            mean /= h;
            for (int c = 0; c < h; c++) variance += (x[r * h + c] - mean) * (x[r * h + c] - mean);
            variance /= h;
            double inv = 1.0 / Math.Sqrt(variance + config.LayerNormEps);
            for (int c = 0; c < h; c++) x[r * h + c] = (float)((x[r * h + c] - mean) * inv * gamma[c] + beta[c]);
        }
    }

    /// <summary>erf to ~1e-12 (far below float resolution): Taylor series below 3, continued fraction for erfc above.</summary>
    private static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax > 5.5) return Math.Sign(x);
        if (ax < 3)
        {
            double sum = x, term = x, x2 = x * x;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17) break;
            }
            return 2 / Math.Sqrt(Math.PI) * sum;
        }
        // Continued fraction for erfc (Lentz), then erf = 1 − erfc.
        double t = 0;
        for (int n = 60; n >= 1; n--) t = n / 2.0 / (ax + t);
        double erfc = Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / (ax + t);
        return Math.Sign(x) * (1 - erfc);
    }
}
