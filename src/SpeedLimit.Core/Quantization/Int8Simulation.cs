using System.Numerics.Tensors;
using SpeedLimit.Kernels;
using SpeedLimit.Model;

namespace SpeedLimit.Quantization;

/// <summary>
/// Runs a model's linear layers as the int8 ONNX graph does (dynamic quantization: uint8
/// activations per tensor at run time, symmetric int8 weights), so a candidate's int8 accuracy
/// comes from the engine without exporting it. The integer products go through the fp32 GEMM
/// on integer-valued floats: each product (|x_q − zp| ≤ 255, |w_q| ≤ 127) is exact, and only the
/// float accumulation of long sums may round (relative ~1e-7, far below the quantization step);
/// <see cref="DynamicQuantization.QuantizedLinearForward(ReadOnlySpan{float}, int, int, QuantizedWeight, ReadOnlySpan{float}, Span{float})"/>
/// is the exact-integer reference it is tested against. Build it after training: it snapshots the
/// weights.
/// </summary>
public sealed class Int8Simulation
{
    private readonly Dictionary<string, (float[] Values, float[] Scales, int Out, int In)> _weights = new(StringComparer.Ordinal);
    private float[] _xq = [];

    public Int8Simulation(BertModel model, bool perChannel = false)
    {
        PerChannel = perChannel;
        foreach (var t in model.Layout.Tensors)
        {
            if (!IsQuantizedLinear(t.Name)) continue;
            var q = DynamicQuantization.QuantizeWeight(model.Tensor(t.Name), t.Rows, t.Columns, perChannel);
            var values = new float[q.Values.Length];
            for (int i = 0; i < values.Length; i++) values[i] = q.Values[i];
            var scales = Enumerable.Range(0, t.Rows).Select(q.ScaleOf).ToArray();
            _weights[t.Name] = (values, scales, t.Rows, t.Columns);
        }
    }

    public bool PerChannel { get; }

    /// <summary>Linear layers the int8 export quantizes: every encoder dense, the pooler and the classifier (not the MLM head).</summary>
    public static bool IsQuantizedLinear(string name) =>
        name.EndsWith(".weight", StringComparison.Ordinal) && !name.Contains("LayerNorm", StringComparison.Ordinal)
        && !name.Contains("embeddings", StringComparison.Ordinal) && !name.StartsWith("cls.", StringComparison.Ordinal);

    public bool Covers(string weightName) => _weights.ContainsKey(weightName);

    /// <summary>y(rows,out) = dequant(quant(x)·W_q) + b for the named weight.</summary>
    public void Forward(string weightName, ReadOnlySpan<float> x, ReadOnlySpan<float> bias, Span<float> y, int rows, int threads)
    {
        var (w, scales, outDim, inDim) = _weights[weightName];
        int n = rows * inDim;
        var input = x[..n];
        var (scale, zp) = DynamicQuantization.ActivationParameters(input);
        if (_xq.Length < n) _xq = new float[n];
        var xq = _xq.AsSpan(0, n);
        for (int i = 0; i < n; i++) xq[i] = DynamicQuantization.QuantizeActivation(input[i], scale, zp) - zp;
        Gemm.Multiply(false, true, rows, outDim, inDim, xq, inDim, w, inDim, y, outDim, accumulate: false, threads);
        bool perTensor = !PerChannel;
        for (int r = 0; r < rows; r++)
        {
            var row = y.Slice(r * outDim, outDim);
            if (perTensor) TensorPrimitives.Multiply(row, scale * scales[0], row);
            else for (int o = 0; o < outDim; o++) row[o] *= scale * scales[o];
            TensorPrimitives.Add(row, bias, row);
        }
    }
}
