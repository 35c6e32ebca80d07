using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SpeedLimit.Quantization;

/// <summary>Symmetric int8 weights of one linear layer: values (out,in) and one scale per tensor or per output row.</summary>
/// <param name="Values">Quantized weights, (out,in) row-major, in [−<see cref="DynamicQuantization.WeightQMax"/>, <see cref="DynamicQuantization.WeightQMax"/>].</param>
/// <param name="Scales">Length 1 (per tensor) or <paramref name="OutDim"/> (per output channel).</param>
internal sealed record QuantizedWeight(sbyte[] Values, float[] Scales, int OutDim, int InDim, bool PerChannel)
{
    public float ScaleOf(int row) => Scales.Length == 1 ? Scales[0] : Scales[row];

    private int[]? _widened;

    /// <summary>The values as int32, made once, so repeated forwards reuse them for exact vectorized dot products.</summary>
    internal int[] Widened
    {
        get
        {
            if (_widened is not null) return _widened;
            var w = new int[Values.Length];
            for (int i = 0; i < w.Length; i++) w[i] = Values[i];
            return _widened = w;
        }
    }
}

/// <summary>
/// Reference numerics of dynamic quantization exactly as ONNX Runtime computes them, so the engine
/// can simulate an int8 model (fake quantization) and the exporter writes the same int8 weights.
/// <list type="bullet">
/// <item>Activations: <c>DynamicQuantizeLinear</c>, uint8 per tensor: the range [min(0,min x), max(0,max x)]
/// maps to [0,255]; scale = range/255 (1 when the range is empty); zero point = saturate(round-half-even(−min/scale));
/// x_q = saturate(round-half-even(x/scale) + zp).</item>
/// <item>Weights: symmetric int8 in the reduced range, scale = max|w| / 64 (1 when all zero), w_q = clamp(round-half-even(w/scale), −64, 64),
/// as ONNX Runtime's quantizer does for signed symmetric weights with <c>reduce_range</c>; per tensor, or per output channel.</item>
/// <item>Linear layer: y = float(Σ (x_q − zp)·w_q) · (x_scale·w_scale) + b, the integer sum exact in int32.</item>
/// </list>
/// </summary>
internal static class DynamicQuantization
{
    /// <summary>
    /// Largest weight magnitude: 64, not 127. Without VNNI (AVX2-only CPUs) ORT's u8×s8 kernels add pairs of
    /// products in a saturating int16 (<c>vpmaddubsw</c>); 255·64·2 fits, 255·127·2 does not, so only the reduced
    /// range gives the same sums — and the same accuracy — on every x86 CPU the model may be deployed on.
    /// </summary>
    public const int WeightQMax = 64;

    /// <summary>Scale and zero point <c>DynamicQuantizeLinear</c> picks for <paramref name="x"/> (the whole tensor).</summary>
    public static (float Scale, byte ZeroPoint) ActivationParameters(ReadOnlySpan<float> x)
    {
        float min = 0f, max = 0f;
        if (!x.IsEmpty)
        {
            min = Math.Min(TensorPrimitives.Min(x), 0f);
            max = Math.Max(TensorPrimitives.Max(x), 0f);
        }
        float scale = max == min ? 1f : (max - min) / 255f;
        float initialZeroPoint = 0f - min / scale;
        float zp = MathF.Round(Math.Clamp(initialZeroPoint, 0f, 255f), MidpointRounding.ToEven);
        return (scale, (byte)zp);
    }

    /// <summary>
    /// <see cref="ActivationParameters(ReadOnlySpan{float})"/> and <see cref="QuantizeActivations(ReadOnlySpan{float}, float, byte, Span{byte})"/>
    /// of a whole activation tensor split over <paramref name="threads"/>: the same scale, zero point and bytes (min and
    /// max are exact in any order; quantization is elementwise). Scoring quantizes the FFN output layer's input, a
    /// (tokens × FFN) tensor, on every call; on one thread that took longer than the int8 product itself.
    /// </summary>
    public static unsafe (float Scale, byte ZeroPoint) QuantizeActivations(ReadOnlySpan<float> x, Span<byte> quantized, int threads)
    {
        if (quantized.Length < x.Length) throw new ArgumentException($"output holds {quantized.Length} values, input has {x.Length}");
        int n = x.Length, parts = Math.Clamp(Math.Min(threads, n / Kernels.EngineParallel.MinElementsPerPart), 1, 64);
        if (parts == 1)
        {
            var (scale1, zp1) = ActivationParameters(x);
            QuantizeActivations(x, scale1, zp1, quantized);
            return (scale1, zp1);
        }
        fixed (float* px = x)
        fixed (byte* pq = quantized)
        {
            nint xAt = (nint)px, qAt = (nint)pq; // fixed locals cannot be captured
            var mins = new float[parts];
            var maxs = new float[parts];
            // parts of whole 32-value groups, so each part's vector loop covers what the one-part loop would
            int Start(int part) => (int)((long)(n / 32) * part / parts) * 32;
            int End(int part) => part == parts - 1 ? n : Start(part + 1);
            Kernels.EngineParallel.For(parts, parts, part =>
            {
                var slice = new ReadOnlySpan<float>((float*)xAt + Start(part), End(part) - Start(part));
                mins[part] = slice.IsEmpty ? 0f : TensorPrimitives.Min(slice);
                maxs[part] = slice.IsEmpty ? 0f : TensorPrimitives.Max(slice);
            });
            // the parameters of the smallest and largest values, as the one-pass form computes them
            float lo = mins[0], hi = maxs[0];
            for (int part = 1; part < parts; part++) { lo = Math.Min(lo, mins[part]); hi = Math.Max(hi, maxs[part]); }
            var (scale, zp) = ActivationParameters([lo, hi]);
            Kernels.EngineParallel.For(parts, parts, part =>
                QuantizeActivations(new ReadOnlySpan<float>((float*)xAt + Start(part), End(part) - Start(part)), scale, zp,
                    new Span<byte>((byte*)qAt + Start(part), End(part) - Start(part))));
            return (scale, zp);
        }
    }

    /// <summary>One element quantized as ORT does: divide, clamp to the representable range, round half to even, shift.</summary>
    public static byte QuantizeActivation(float x, float scale, byte zeroPoint)
    {
        float v = x / scale;
        v = Math.Clamp(v, 0f - zeroPoint, 255f - zeroPoint);
        return (byte)((int)MathF.Round(v, MidpointRounding.ToEven) + zeroPoint);
    }

    /// <summary>
    /// <see cref="QuantizeActivation"/> of every element — the same divide, clamp, round half to even and shift —
    /// 32 at a time in vector registers (the int8 GEMM's input stage; the scalar form is its twin), into
    /// <paramref name="quantized"/>.
    /// </summary>
    public static void QuantizeActivations(ReadOnlySpan<float> x, float scale, byte zeroPoint, Span<byte> quantized)
    {
        if (quantized.Length < x.Length) throw new ArgumentException($"output holds {quantized.Length} values, input has {x.Length}");
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var s = Vector256.Create(scale);
            var lo = Vector256.Create(0f - zeroPoint);
            var hi = Vector256.Create(255f - zeroPoint);
            var zp = Vector256.Create((int)zeroPoint);
            for (; i + 32 <= x.Length; i += 32)
            {
                var q0 = Quantize8(Vector256.Create(x.Slice(i, 8)), s, lo, hi, zp);
                var q1 = Quantize8(Vector256.Create(x.Slice(i + 8, 8)), s, lo, hi, zp);
                var q2 = Quantize8(Vector256.Create(x.Slice(i + 16, 8)), s, lo, hi, zp);
                var q3 = Quantize8(Vector256.Create(x.Slice(i + 24, 8)), s, lo, hi, zp);
                // Values are in [0, 255]: the narrowing (which wraps) keeps them exactly.
                var bytes = Vector256.Narrow(Vector256.Narrow(q0, q1).AsUInt16(), Vector256.Narrow(q2, q3).AsUInt16());
                bytes.CopyTo(quantized.Slice(i, 32));
            }
        }
        for (; i < x.Length; i++) quantized[i] = QuantizeActivation(x[i], scale, zeroPoint);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Quantize8(Vector256<float> x, Vector256<float> scale, Vector256<float> lo, Vector256<float> hi, Vector256<int> zp)
    {
        var v = Vector256.Min(Vector256.Max(x / scale, lo), hi);
        return Vector256.ConvertToInt32(Vector256.Round(v)) + zp; // Round: to nearest, ties to even; the value is integral, so the conversion is exact
    }

    /// <summary><c>DynamicQuantizeLinear</c> over the whole tensor: returns its scale and zero point and fills <paramref name="quantized"/>.</summary>
    public static (float Scale, byte ZeroPoint) DynamicQuantizeLinear(ReadOnlySpan<float> x, Span<byte> quantized)
    {
        if (quantized.Length < x.Length) throw new ArgumentException($"output holds {quantized.Length} values, input has {x.Length}");
        var (scale, zp) = ActivationParameters(x);
        for (int i = 0; i < x.Length; i++) quantized[i] = QuantizeActivation(x[i], scale, zp);
        return (scale, zp);
    }

    /// <summary>Symmetric int8 quantization of a (out,in) weight, per tensor or per output channel (row).</summary>
    public static QuantizedWeight QuantizeWeight(ReadOnlySpan<float> weight, int outDim, int inDim, bool perChannel)
    {
        if (outDim < 1 || inDim < 1) throw new ArgumentException($"weight shape ({outDim},{inDim}) must be positive");
        if (weight.Length != (long)outDim * inDim) throw new ArgumentException($"weight has {weight.Length} values, shape ({outDim},{inDim}) needs {(long)outDim * inDim}");
        var values = new sbyte[weight.Length];
        var scales = new float[perChannel ? outDim : 1];
        if (!perChannel) scales[0] = SymmetricScale(weight);
        for (int o = 0; o < outDim; o++)
        {
            var row = weight.Slice(o * inDim, inDim);
            float scale = perChannel ? scales[o] = SymmetricScale(row) : scales[0];
            for (int k = 0; k < inDim; k++)
            {
                float q = MathF.Round(row[k] / scale, MidpointRounding.ToEven);
                values[o * inDim + k] = (sbyte)Math.Clamp(q, -WeightQMax, WeightQMax);
            }
        }
        return new QuantizedWeight(values, scales, outDim, inDim, perChannel);
    }

    private static float SymmetricScale(ReadOnlySpan<float> w)
    {
        float absMax = TensorPrimitives.MaxMagnitude(w);
        absMax = Math.Abs(absMax);
        // ORT's quantizer: rmax = max|w|, rmin = −rmax, scale = (rmax − rmin) / (qmax − qmin), here (64 − (−64)).
        float scale = (absMax + absMax) / (2f * WeightQMax);
        return scale == 0f ? 1f : scale;
    }

    /// <summary>
    /// What the int8 graph computes for one linear layer: dynamically quantize <paramref name="x"/> (rows,inDim)
    /// as one tensor, quantize the (out,in) weight symmetrically, integer matmul, rescale, add bias → y (rows,outDim).
    /// </summary>
    public static void QuantizedLinearForward(ReadOnlySpan<float> x, int rows, int inDim, ReadOnlySpan<float> weight, int outDim,
        ReadOnlySpan<float> bias, Span<float> y, bool perChannel) =>
        QuantizedLinearForward(x, rows, inDim, QuantizeWeight(weight, outDim, inDim, perChannel), bias, y);

    /// <summary>As above with a weight quantized once (<see cref="QuantizeWeight"/>), for repeated calls.</summary>
    public static void QuantizedLinearForward(ReadOnlySpan<float> x, int rows, int inDim, QuantizedWeight weight,
        ReadOnlySpan<float> bias, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(weight);
        int outDim = weight.OutDim;
        if (rows < 0 || inDim != weight.InDim) throw new ArgumentException($"input width {inDim} does not match the weight's {weight.InDim}");
        if (x.Length < (long)rows * inDim) throw new ArgumentException($"input holds {x.Length} values, ({rows},{inDim}) needs {(long)rows * inDim}");
        if (y.Length < (long)rows * outDim) throw new ArgumentException($"output holds {y.Length} values, ({rows},{outDim}) needs {(long)rows * outDim}");
        if (!bias.IsEmpty && bias.Length != outDim) throw new ArgumentException($"bias has {bias.Length} values, expected {outDim}");
        var input = x[..(rows * inDim)];
        var (scale, zp) = ActivationParameters(input);

        // Integer operands widened to int32 so the dot products are exact and vectorized.
        var xq = new int[input.Length];
        for (int i = 0; i < input.Length; i++) xq[i] = QuantizeActivation(input[i], scale, zp) - zp;
        var wq = weight.Widened;
        var multipliers = new float[outDim];
        for (int o = 0; o < outDim; o++) multipliers[o] = scale * weight.ScaleOf(o);
        var b = bias.IsEmpty ? null : bias.ToArray();
        var output = new float[rows * outDim];

        void Row(int r)
        {
            var xr = new ReadOnlySpan<int>(xq, r * inDim, inDim);
            for (int o = 0; o < outDim; o++)
            {
                int acc = TensorPrimitives.Dot<int>(xr, new ReadOnlySpan<int>(wq, o * inDim, inDim));
                float v = acc * multipliers[o];
                output[r * outDim + o] = b is null ? v : v + b[o];
            }
        }
        // Rows are independent; large layers use the thread pool (results do not depend on the split).
        if ((long)rows * outDim * inDim >= 1 << 22 && rows > 1) Parallel.For(0, rows, Row);
        else for (int r = 0; r < rows; r++) Row(r);
        output.CopyTo(y);
    }
}
