using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using SpeedLimit.Kernels;

namespace SpeedLimit.Model.Layers;

/// <summary>
/// Exact-form GELU, x·Φ(x) = 0.5·x·(1 + erf(x/√2)), as BERT and ONNX Runtime's Gelu define it.
/// .NET has no erf, so <see cref="Erf"/> uses Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7, below
/// float resolution of the result). Where Vector512 is accelerated, one fused pass computes it sixteen values at a
/// time in registers, with a single-precision exp; elsewhere the same steps run as a chain of TensorPrimitives passes
/// over chunks (<see cref="ForwardComposed"/>, <see cref="BackwardComposed"/>, whose exp computes in double). The two
/// agree within two ulps; each gives the same bits on any thread count.
/// </summary>
internal static class Gelu
{
    private const float InvSqrt2 = 0.70710678118654752f;
    private const float InvSqrt2Pi = 0.39894228040143268f;
    private const int Chunk = 512;

    // Abramowitz & Stegun 7.1.26 coefficients.
    private const float P = 0.3275911f;
    private const float A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f, A4 = -1.453152027f, A5 = 1.061405429f;

    /// <summary>y[..count] = gelu(x[..count]), split over threads for large tensors (the FFN's (B·T, F)).</summary>
    public static void Forward(float[] x, float[] y, int count, int threads) =>
        EngineParallel.Split(count, EngineParallel.MinElementsPerPart, threads, (start, end) => Forward(x.AsSpan(start, end - start), y.AsSpan(start, end - start)));

    /// <summary>dx[..count] += dy·gelu'(x) (or = with <paramref name="accumulate"/> false: no cleared buffer needed), split over threads for large tensors.</summary>
    public static void Backward(float[] x, float[] dy, float[] dx, int count, int threads, bool accumulate = true) =>
        EngineParallel.Split(count, EngineParallel.MinElementsPerPart, threads, (start, end) => Backward(x.AsSpan(start, end - start), dy.AsSpan(start, end - start), dx.AsSpan(start, end - start), accumulate));

    /// <summary>
    /// The FFN activation fused with its bias: u = y + b per row (written over <paramref name="y"/>: the
    /// pre-activation <see cref="Backward(float[], float[], float[], int, int)"/> reads), g = gelu(u), in one pass
    /// over the (rows, cols) tensor instead of a bias pass and a GELU pass; rows split over threads when large.
    /// The same operations as the two passes, so the same bits.
    /// </summary>
    public static void BiasForward(float[] y, ReadOnlyMemory<float> bias, float[] g, int rows, int cols, int threads)
    {
        if (bias.Length != cols) throw new ArgumentException($"bias has {bias.Length} values, the rows {cols}");
        EngineParallel.SplitRows(rows, cols, threads, (r0, r1) =>
        {
            var b = bias.Span;
            for (int r = r0; r < r1; r++)
            {
                var u = y.AsSpan(r * cols, cols);
                TensorPrimitives.Add(u, b, u);
                Forward(u, g.AsSpan(r * cols, cols));
            }
        });
    }

    /// <summary>y = gelu(x).</summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        if (Fused) ForwardFused(x, y);
        else ForwardComposed(x, y);
    }

    /// <summary>dx += dy · (Φ(x) + x·φ(x)) (or = when <paramref name="accumulate"/> is false).</summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, bool accumulate = true)
    {
        if (Fused) BackwardFused(x, dy, dx, accumulate);
        else BackwardComposed(x, dy, dx, accumulate);
    }

    /// <summary>Whether the fused one-pass kernels run (Vector512 accelerated); the composed passes otherwise.</summary>
    internal static bool Fused { get; } = Vector512.IsHardwareAccelerated;

    /// <summary>
    /// <see cref="Forward(ReadOnlySpan{float}, Span{float})"/> in one pass, sixteen values at a time: the steps of
    /// <see cref="ForwardComposed"/> with no pass over scratch between them, and <see cref="SingleExp.OfNonPositive"/> for the exp. A last partial vector goes through a zero-padded copy, so every value gets the same operations
    /// wherever it lies and however the tensor is split over threads.
    /// </summary>
    internal static unsafe void ForwardFused(ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length < x.Length) throw new ArgumentException($"gelu output holds {y.Length} values, the input {x.Length}");
        int n = x.Length, i = 0;
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float py = ref MemoryMarshal.GetReference(y);
        for (; i + 16 <= n; i += 16)
            GeluVector(Vector512.LoadUnsafe(ref px, (nuint)i)).StoreUnsafe(ref py, (nuint)i);
        if (i < n)
        {
            float* pad = stackalloc float[16];
            new Span<float>(pad, 16).Clear();
            x[i..].CopyTo(new Span<float>(pad, 16));
            GeluVector(Vector512.Load(pad)).Store(pad);
            new ReadOnlySpan<float>(pad, n - i).CopyTo(y[i..]);
        }
    }

    /// <summary><see cref="Backward(ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, bool)"/> in one pass (as <see cref="ForwardFused"/>).</summary>
    internal static unsafe void BackwardFused(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, bool accumulate)
    {
        if (dy.Length < x.Length || dx.Length < x.Length) throw new ArgumentException($"gelu gradients hold {dy.Length} and {dx.Length} values, the input {x.Length}");
        int n = x.Length, i = 0;
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float pdy = ref MemoryMarshal.GetReference(dy);
        ref float pdx = ref MemoryMarshal.GetReference(dx);
        for (; i + 16 <= n; i += 16)
        {
            var slope = SlopeVector(Vector512.LoadUnsafe(ref px, (nuint)i));
            var d = Vector512.LoadUnsafe(ref pdy, (nuint)i);
            (accumulate ? Vector512.FusedMultiplyAdd(slope, d, Vector512.LoadUnsafe(ref pdx, (nuint)i)) : slope * d).StoreUnsafe(ref pdx, (nuint)i);
        }
        if (i < n)
        {
            float* pad = stackalloc float[48];
            new Span<float>(pad, 48).Clear();
            x[i..n].CopyTo(new Span<float>(pad, 16));
            dy[i..n].CopyTo(new Span<float>(pad + 16, 16));
            dx[i..n].CopyTo(new Span<float>(pad + 32, 16));
            var slope = SlopeVector(Vector512.Load(pad));
            var d = Vector512.Load(pad + 16);
            (accumulate ? Vector512.FusedMultiplyAdd(slope, d, Vector512.Load(pad + 32)) : slope * d).Store(pad + 32);
            new ReadOnlySpan<float>(pad + 32, n - i).CopyTo(dx[i..]);
        }
    }

    /// <summary>gelu of sixteen values: 0.5·x + 0.5·x·erf(x/√2), as <see cref="ForwardComposed"/> computes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> GeluVector(Vector512<float> x)
    {
        var erf = ErfVector(x * Vector512.Create(InvSqrt2));
        var h = x * Vector512.Create(0.5f);
        return Vector512.FusedMultiplyAdd(erf, h, h);
    }

    /// <summary>gelu'(x) = Φ(x) + x·φ(x) of sixteen values, as <see cref="BackwardComposed"/> computes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> SlopeVector(Vector512<float> x)
    {
        var half = Vector512.Create(0.5f);
        var cdf = Vector512.FusedMultiplyAdd(ErfVector(x * Vector512.Create(InvSqrt2)), half, half);
        var pdf = SingleExp.OfNonPositive(x * x * Vector512.Create(-0.5f)) * Vector512.Create(InvSqrt2Pi);
        return Vector512.FusedMultiplyAdd(pdf, x, cdf);
    }

    /// <summary>erf of sixteen values, the steps of <see cref="ErfInPlace"/> in the same order (the exp in single precision).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ErfVector(Vector512<float> v)
    {
        var one = Vector512<float>.One;
        var sign = Vector512.CopySign(one, v);
        var a = Vector512.Abs(v);
        var t = one / Vector512.FusedMultiplyAdd(a, Vector512.Create(P), one);
        var e = SingleExp.OfNonPositive(-(a * a));
        var q = t * Vector512.Create(A5) + Vector512.Create(A4);
        q = Vector512.FusedMultiplyAdd(q, t, Vector512.Create(A3));
        q = Vector512.FusedMultiplyAdd(q, t, Vector512.Create(A2));
        q = Vector512.FusedMultiplyAdd(q, t, Vector512.Create(A1));
        return (one - q * t * e) * sign;
    }

    /// <summary>y = gelu(x) as a chain of TensorPrimitives passes over chunks of 512 (the reference for <see cref="ForwardFused"/>).</summary>
    internal static void ForwardComposed(ReadOnlySpan<float> x, Span<float> y)
    {
        Span<float> erf = stackalloc float[Chunk];
        Span<float> tmp = stackalloc float[Chunk];
        for (int start = 0; start < x.Length; start += Chunk)
        {
            int n = Math.Min(Chunk, x.Length - start);
            var xs = x.Slice(start, n);
            var e = erf[..n];
            TensorPrimitives.Multiply(xs, InvSqrt2, e);
            ErfInPlace(e, tmp[..n]);
            // y = 0.5·x·(1 + erf) = 0.5·x + 0.5·x·erf
            var h = tmp[..n];
            TensorPrimitives.Multiply(xs, 0.5f, h);
            TensorPrimitives.FusedMultiplyAdd(e, h, h, y.Slice(start, n));
        }
    }

    /// <summary>dx += dy · (Φ(x) + x·φ(x)) as a chain of TensorPrimitives passes (the reference for <see cref="BackwardFused"/>).</summary>
    internal static void BackwardComposed(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, bool accumulate)
    {
        Span<float> cdf = stackalloc float[Chunk];
        Span<float> pdf = stackalloc float[Chunk];
        for (int start = 0; start < x.Length; start += Chunk)
        {
            int n = Math.Min(Chunk, x.Length - start);
            var xs = x.Slice(start, n);
            var c = cdf[..n];
            var p = pdf[..n];
            TensorPrimitives.Multiply(xs, InvSqrt2, c);
            ErfInPlace(c, p);
            TensorPrimitives.FusedMultiplyAdd(c, 0.5f, Halves[..n], c); // Φ(x) = 0.5·erf + 0.5
            TensorPrimitives.Multiply(xs, xs, p);
            TensorPrimitives.Multiply(p, -0.5f, p);
            TensorPrimitives.Exp(p, p);
            TensorPrimitives.Multiply(p, InvSqrt2Pi, p);    // φ(x)
            TensorPrimitives.FusedMultiplyAdd(p, xs, c, c); // Φ + x·φ
            var dxs = dx.Slice(start, n);
            if (accumulate) TensorPrimitives.FusedMultiplyAdd(c, dy.Slice(start, n), dxs, dxs);
            else TensorPrimitives.Multiply(c, dy.Slice(start, n), dxs); // = the multiply-add onto zeros
        }
    }

    /// <summary>Scalar erf (same approximation), for references and single values.</summary>
    public static float Erf(float x)
    {
        float ax = MathF.Abs(x);
        float t = 1f / MathF.FusedMultiplyAdd(P, ax, 1f);
        float poly = MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(A5 * t + A4, t, A3), t, A2), t, A1) * t;
        float r = 1f - poly * MathF.Exp(-ax * ax);
        return x < 0 ? -r : r;
    }

    /// <summary>v ← erf(v), using <paramref name="t"/> as scratch of the same length (Horner steps as fused multiply-adds).</summary>
    private static void ErfInPlace(Span<float> v, Span<float> t)
    {
        Span<float> sign = stackalloc float[v.Length];
        TensorPrimitives.CopySign(OnesOf(sign.Length), v, sign); // ±1
        TensorPrimitives.Abs(v, v);
        TensorPrimitives.FusedMultiplyAdd(v, P, OnesOf(v.Length), t);
        TensorPrimitives.Reciprocal(t, t);                       // t = 1/(1+p|x|)
        TensorPrimitives.Multiply(v, v, v);
        TensorPrimitives.Negate(v, v);
        TensorPrimitives.Exp(v, v);                              // v = exp(−x²)
        // q = ((((A5 t + A4) t + A3) t + A2) t + A1) t
        Span<float> q = stackalloc float[t.Length];
        TensorPrimitives.Multiply(t, A5, q);
        TensorPrimitives.Add(q, A4, q);
        TensorPrimitives.FusedMultiplyAdd(q, t, A3, q);
        TensorPrimitives.FusedMultiplyAdd(q, t, A2, q);
        TensorPrimitives.FusedMultiplyAdd(q, t, A1, q);
        TensorPrimitives.Multiply(q, t, q);
        TensorPrimitives.Multiply(q, v, v);                      // poly·exp(−x²)
        TensorPrimitives.Subtract(1f, v, v);                     // erf(|x|)
        TensorPrimitives.Multiply(v, sign, v);
    }

    private static ReadOnlySpan<float> OnesOf(int length) => Ones.AsSpan(0, length);
    private static readonly float[] Ones = Enumerable.Repeat(1f, Chunk).ToArray();
    private static ReadOnlySpan<float> Halves => HalvesArray;
    private static readonly float[] HalvesArray = Enumerable.Repeat(0.5f, Chunk).ToArray();

    /// <summary>tanh for the pooler.</summary>
    public static void Tanh(ReadOnlySpan<float> x, Span<float> y) => TensorPrimitives.Tanh(x, y);

    /// <summary>dx += dy·(1 − y²) where y = tanh(x).</summary>
    public static void TanhBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        for (int i = 0; i < y.Length; i++) dx[i] += dy[i] * (1f - y[i] * y[i]);
    }
}
