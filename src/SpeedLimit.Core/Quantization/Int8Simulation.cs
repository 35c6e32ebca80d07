using System.Numerics.Tensors;
using SpeedLimit.Kernels;
using SpeedLimit.Model;

namespace SpeedLimit.Quantization;

/// <summary>
/// Runs a model's linear layers as the int8 ONNX graph does (dynamic quantization: uint8
/// activations per tensor at run time, symmetric int8 weights), so a candidate's int8 accuracy
/// comes from the engine without exporting it. The products are integer dot products
/// (<see cref="Int8Gemm"/>: AVX-VNNI, AVX-512BW or AVX2, exact in int32 like ONNX Runtime's), on
/// weights quantized and packed once here; then y = float(acc)·(x_scale·w_scale) + b, rounded as
/// <see cref="DynamicQuantization.QuantizedLinearForward(ReadOnlySpan{float}, int, int, QuantizedWeight, ReadOnlySpan{float}, Span{float})"/>
/// (the exact-integer reference) rounds it. Build it after training: it snapshots the weights.
/// </summary>
public sealed class Int8Simulation
{
    private readonly Dictionary<string, Layer> _layers = new(StringComparer.Ordinal);
    private readonly bool _floatProducts;
    private byte[] _xq = [];
    private float[] _multipliers = [];
    private float[] _xf = [];

    private sealed record Layer(PackedInt8Matrix Packed, float[] WeightAsFloat, float[] Scales, int Out, int In);

    public Int8Simulation(BertModel model, bool perChannel = false) : this(model, perChannel, Int8GemmPath.Auto, floatProducts: false) { }

    /// <summary>A simulation that takes over <paramref name="earlier"/>'s scratch buffers (one candidate after another: their pages are touched already); <paramref name="earlier"/> must not be used again.</summary>
    internal Int8Simulation(BertModel model, Int8Simulation? earlier) : this(model, perChannel: false, Int8GemmPath.Auto, floatProducts: false)
    {
        if (earlier is null) return;
        (_xq, _multipliers, _xf) = (earlier._xq, earlier._multipliers, earlier._xf);
        (earlier._xq, earlier._multipliers, earlier._xf) = ([], [], []);
    }

    /// <param name="path">The integer kernel (tests force each one).</param>
    /// <param name="floatProducts">The earlier simulation: the integer products through the fp32 GEMM on integer-valued
    /// floats (exact while every partial sum stays below 2^24), kept as the reference the integer kernel is compared with.</param>
    internal Int8Simulation(BertModel model, bool perChannel, Int8GemmPath path, bool floatProducts)
    {
        PerChannel = perChannel;
        _floatProducts = floatProducts;
        foreach (var t in model.Layout.Tensors)
        {
            if (!IsQuantizedLinear(t.Name)) continue;
            var q = DynamicQuantization.QuantizeWeight(model.Tensor(t.Name), t.Rows, t.Columns, perChannel);
            var scales = Enumerable.Range(0, t.Rows).Select(q.ScaleOf).ToArray();
            float[] asFloat = [];
            PackedInt8Matrix packed;
            if (floatProducts)
            {
                asFloat = new float[q.Values.Length];
                for (int i = 0; i < asFloat.Length; i++) asFloat[i] = q.Values[i];
                packed = PackedInt8Matrix.Pack([], 0, 0, Int8GemmPath.Scalar);
            }
            else
            {
                packed = PackedInt8Matrix.Pack(q.Values, t.Rows, t.Columns, path);
            }
            _layers[t.Name] = new Layer(packed, asFloat, scales, t.Rows, t.Columns);
        }
    }

    public bool PerChannel { get; }

    /// <summary>Linear layers the int8 export quantizes: every encoder dense, the pooler and the classifier (not the MLM head).</summary>
    public static bool IsQuantizedLinear(string name) =>
        name.EndsWith(".weight", StringComparison.Ordinal) && !name.Contains("LayerNorm", StringComparison.Ordinal)
        && !name.Contains("embeddings", StringComparison.Ordinal) && !name.StartsWith("cls.", StringComparison.Ordinal);

    public bool Covers(string weightName) => _layers.ContainsKey(weightName);

    /// <summary>y(rows,out) = dequant(quant(x)·W_q) + b for the named weight (no bias when <paramref name="bias"/> is empty).</summary>
    public void Forward(string weightName, ReadOnlySpan<float> x, ReadOnlySpan<float> bias, Span<float> y, int rows, int threads)
    {
        var layer = _layers[weightName];
        int outDim = layer.Out, inDim = layer.In;
        int n = rows * inDim;
        var input = x[..n];
        if (_xq.Length < n) _xq = new byte[n];
        var xq = _xq.AsSpan(0, n);
        var (scale, zp) = DynamicQuantization.QuantizeActivations(input, xq, threads);
        if (_floatProducts)
        {
            if (_xf.Length < n) _xf = new float[n];
            var xf = _xf.AsSpan(0, n);
            for (int i = 0; i < n; i++) xf[i] = xq[i] - zp;
            Gemm.Multiply(false, true, rows, outDim, inDim, xf, inDim, layer.WeightAsFloat, inDim, y, outDim, accumulate: false, threads);
        }
        else
        {
            // Multipliers x_scale·w_scale rounded once per output, as the float-product form below does.
            if (_multipliers.Length < outDim) _multipliers = new float[outDim];
            var multipliers = _multipliers.AsSpan(0, PerChannel ? outDim : 1);
            for (int o = 0; o < multipliers.Length; o++) multipliers[o] = scale * layer.Scales[o];
            Int8Gemm.MultiplyDequantize(rows, xq, inDim, zp, layer.Packed, multipliers, bias, y, outDim, threads);
            return;
        }
        var scales = layer.Scales;
        for (int r = 0; r < rows; r++)
        {
            var row = y.Slice(r * outDim, outDim);
            if (!PerChannel) TensorPrimitives.Multiply(row, scale * scales[0], row);
            else for (int o = 0; o < outDim; o++) row[o] *= scale * scales[o];
            if (!bias.IsEmpty) TensorPrimitives.Add(row, bias, row);
        }
    }
}
