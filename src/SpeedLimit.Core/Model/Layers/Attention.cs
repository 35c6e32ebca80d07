using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SpeedLimit.Kernels;

namespace SpeedLimit.Model.Layers;

/// <summary>
/// Scaled dot-product attention over already-projected Q, K, V of shape (B·T, H), split into
/// heads of size H/heads: head j owns features j·hs … (j+1)·hs. Padded keys get −10000 added
/// to their scores (as Hugging Face BERT does), so they vanish after softmax.
/// </summary>
internal static class Attention
{
    public const float MaskedScore = -10000f;

    /// <summary>
    /// Heads whose T × head-size is at most this take the per-head products as direct loops (<see cref="SmallProduct"/>)
    /// instead of GEMM calls. A fine-tuning batch of short sentences has sequences of about 14 tokens, whose 14×14×48
    /// products cost less than a GEMM call's setup; from about 24 × 64 up, GEMM's wider kernels win (bench
    /// <c>attention</c>). Both paths give the same bits.
    /// </summary>
    internal const int DirectMaxWork = 1280;

    private static bool IsSmall(int T, int hs) => T * hs <= DirectMaxWork;

    /// <summary>
    /// ctx(B·T,H) = softmax(Q·Kᵀ/√hs + mask)·V per (batch, head); stores probabilities
    /// (B, heads, T, T) for backward. <paramref name="direct"/> picks the per-head product path (null: by length).
    /// </summary>
    public static void Forward(float[] q, float[] k, float[] v, int[] attentionMask, float[] probs, float[] ctx,
        int batch, int seqLen, int hidden, int heads, int threads, bool? direct = null)
    {
        int hs = hidden / heads, T = seqLen;
        float scale = 1f / MathF.Sqrt(hs);
        bool small = direct ?? IsSmall(T, hs);
        // The mask as an additive row per sequence (0 or −10000), so scaling and masking are one fused pass.
        var additive = AdditiveMask(attentionMask, batch * T);
        ParallelOver(batch, heads, threads, bh =>
        {
            int b = bh / heads, j = bh % heads;
            int rowBase = b * T * hidden + j * hs; // (b, 0, head j)
            var p = probs.AsSpan(bh * T * T, T * T); // (T,T)
            if (small) TransposedProduct(q, k, rowBase, T, hs, hidden, p);
            else Gemm.Multiply(false, true, T, T, hs, q.AsSpan(rowBase), hidden, k.AsSpan(rowBase), hidden, p, T, false, 1);
            var mask = additive.AsSpan(b * T, T);
            for (int t = 0; t < T; t++)
            {
                var row = p.Slice(t * T, T);
                MaskedSoftmax(row, scale, mask);
            }
            if (small) SmallProduct.Multiply(false, T, hs, T, p, T, v.AsSpan(rowBase), hidden, ctx.AsSpan(rowBase), hidden, false);
            else Gemm.Multiply(false, false, T, hs, T, p, T, v.AsSpan(rowBase), hidden, ctx.AsSpan(rowBase), hidden, false, 1);
        });
    }

    /// <summary>
    /// out (T,T) = X·Yᵀ for one head's (T, hs) blocks of two (B·T, H) tensors, by the direct product: Y transposed into
    /// this thread's scratch with its rows padded to whole vectors (zeros), the product into padded scratch rows, then
    /// the T valid columns copied out. Padding keeps the product off its slow scalar column tail.
    /// </summary>
    private static void TransposedProduct(float[] x, float[] y, int rowBase, int T, int hs, int hidden, Span<float> output)
    {
        int tp = SmallProduct.PaddedWidth(T);
        int need = hs * tp + T * tp;
        var scratch = t_scratch is { } cached && cached.Length >= need ? cached : t_scratch = new float[Math.Max(need, 8192)];
        var yt = scratch.AsSpan(0, hs * tp);
        var padded = scratch.AsSpan(hs * tp, T * tp);
        for (int d = 0; d < hs; d++) yt.Slice(d * tp + T, tp - T).Clear();
        for (int t = 0; t < T; t++)
        {
            var row = y.AsSpan(rowBase + t * hidden, hs);
            for (int d = 0; d < hs; d++) yt[d * tp + t] = row[d];
        }
        SmallProduct.Multiply(false, T, tp, hs, x.AsSpan(rowBase), hidden, yt, tp, padded, tp, false);
        for (int t = 0; t < T; t++) padded.Slice(t * tp, T).CopyTo(output.Slice(t * T, T));
    }

    [ThreadStatic] private static float[]? t_scratch;

    /// <summary>
    /// From dctx accumulates dQ, dK, dV (each (B·T,H); heads write disjoint column blocks), or writes them when
    /// <paramref name="accumulate"/> is false (every element is written once, so they need no clearing).
    /// <paramref name="scratch"/> needs (B·heads·T·T) floats. <paramref name="direct"/> as in <see cref="Forward"/>.
    /// </summary>
    public static void Backward(float[] q, float[] k, float[] v, float[] probs, float[] dCtx,
        float[] dq, float[] dk, float[] dv, float[] scratch, int batch, int seqLen, int hidden, int heads, int threads, bool accumulate = true,
        bool? direct = null)
    {
        int hs = hidden / heads, T = seqLen;
        float scale = 1f / MathF.Sqrt(hs);
        bool small = direct ?? IsSmall(T, hs);
        ParallelOver(batch, heads, threads, bh =>
        {
            int b = bh / heads, j = bh % heads;
            int rowBase = b * T * hidden + j * hs;
            var p = probs.AsSpan(bh * T * T, T * T);
            var dp = scratch.AsSpan(bh * T * T, T * T);
            var dc = dCtx.AsSpan(rowBase);
            // dP = dC·Vᵀ (T,T); dV += Pᵀ·dC (T,hs)
            if (small)
            {
                TransposedProduct(dCtx, v, rowBase, T, hs, hidden, dp);
                SmallProduct.Multiply(true, T, hs, T, p, T, dc, hidden, dv.AsSpan(rowBase), hidden, accumulate);
            }
            else
            {
                Gemm.Multiply(false, true, T, T, hs, dc, hidden, v.AsSpan(rowBase), hidden, dp, T, false, 1);
                Gemm.Multiply(true, false, T, hs, T, p, T, dc, hidden, dv.AsSpan(rowBase), hidden, accumulate, 1);
            }
            // softmax backward: dS = P ⊙ (dP − Σ_s dP·P), then the 1/√hs scale
            for (int t = 0; t < T; t++)
            {
                var pr = p.Slice(t * T, T);
                var dr = dp.Slice(t * T, T);
                SoftmaxBackwardRow(pr, dr, TensorPrimitives.Dot(pr, dr), scale);
            }
            // dQ += dS·K ; dK += dSᵀ·Q
            if (small)
            {
                SmallProduct.Multiply(false, T, hs, T, dp, T, k.AsSpan(rowBase), hidden, dq.AsSpan(rowBase), hidden, accumulate);
                SmallProduct.Multiply(true, T, hs, T, dp, T, q.AsSpan(rowBase), hidden, dk.AsSpan(rowBase), hidden, accumulate);
            }
            else
            {
                Gemm.Multiply(false, false, T, hs, T, dp, T, k.AsSpan(rowBase), hidden, dq.AsSpan(rowBase), hidden, accumulate, 1);
                Gemm.Multiply(true, false, T, hs, T, dp, T, q.AsSpan(rowBase), hidden, dk.AsSpan(rowBase), hidden, accumulate, 1);
            }
        });
    }

    /// <summary>
    /// row ← softmax(row·scale + mask) for one score row: one fused scale-and-mask pass (an unmasked score is
    /// rounded as by the multiply alone; a masked one lands near −10000 and its probability is 0 either way), the
    /// max shift (exp of large scores would overflow to inf/inf = NaN), then the exponentials and their sum.
    /// Sixteen scores at a time with a single-precision exp where Vector512 is accelerated (<see cref="MaskedSoftmaxFused"/>),
    /// else as TensorPrimitives passes (<see cref="MaskedSoftmaxComposed"/>); the two agree within a few ulps.
    /// </summary>
    public static void MaskedSoftmax(Span<float> row, float scale, ReadOnlySpan<float> additiveMask)
    {
        if (FusedSoftmax) MaskedSoftmaxFused(row, scale, additiveMask);
        else MaskedSoftmaxComposed(row, scale, additiveMask);
    }

    /// <summary>Whether <see cref="MaskedSoftmax"/> runs the fused single-precision kernel (Vector512 accelerated).</summary>
    internal static bool FusedSoftmax { get; } = Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    /// <summary><see cref="MaskedSoftmax"/> as TensorPrimitives passes, whose exp computes in double.</summary>
    internal static void MaskedSoftmaxComposed(Span<float> row, float scale, ReadOnlySpan<float> additiveMask)
    {
        TensorPrimitives.FusedMultiplyAdd(row, scale, additiveMask, row);
        TensorPrimitives.Subtract(row, TensorPrimitives.Max(row), row);
        // exp once, then divide by the sum (TensorPrimitives.SoftMax evaluates the exponentials twice).
        TensorPrimitives.Exp(row, row);
        TensorPrimitives.Divide(row, TensorPrimitives.Sum(row), row);
    }

    /// <summary>
    /// <see cref="MaskedSoftmax"/> sixteen scores at a time: scale-and-mask with the running max in one pass, then
    /// e^(s − max) by <see cref="SingleExp.OfNonPositive"/> with the running sum, then the division. A shifted score below
    /// <see cref="SingleExp.Floor"/> (every masked one) gets exactly 0, as the double exp's underflow gives. A last partial
    /// vector is read through lane masks, its missing lanes scored −∞ (they add nothing to the max or the sum), and written
    /// through scratch. A NaN score makes the row NaN, as in the composed form.
    /// </summary>
    internal static unsafe void MaskedSoftmaxFused(Span<float> row, float scale, ReadOnlySpan<float> additiveMask)
    {
        int n = row.Length, full = n & ~15, rest = n - full;
        if (additiveMask.Length < n) throw new ArgumentException($"softmax mask holds {additiveMask.Length} values, the row {n}");
        var vScale = Vector512.Create(scale);
        var vMax = Vector512.Create(float.NegativeInfinity);
        var vNaN = Vector512<float>.Zero; // lanes that saw a NaN score (all bits set)
        var tail = Vector512<float>.Zero;
        fixed (float* r = row)
        fixed (float* m = additiveMask)
        {
            for (int i = 0; i < full; i += 16)
            {
                var s = Vector512.FusedMultiplyAdd(Vector512.Load(r + i), vScale, Vector512.Load(m + i));
                s.Store(r + i);
                vMax = Vector512.Max(vMax, s);
                vNaN |= ~Vector512.Equals(s, s);
            }
            if (rest > 0)
            {
                // The last partial vector by masked loads: its missing lanes score −∞ (0·scale + −∞).
                var tailLanes = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(rest)).AsSingle();
                tail = Vector512.FusedMultiplyAdd(Avx512F.MaskLoad(r + full, tailLanes, Vector512<float>.Zero), vScale,
                    Avx512F.MaskLoad(m + full, tailLanes, Vector512.Create(float.NegativeInfinity)));
                vMax = Vector512.Max(vMax, tail);
                vNaN |= ~Vector512.Equals(tail, tail);
            }
            if (vNaN != Vector512<float>.Zero)
            {
                row.Fill(float.NaN); // as the composed form: NaN max, NaN everywhere
                return;
            }
            var vShift = Vector512.Create(HorizontalMax(vMax));
            var vSum = Vector512<float>.Zero;
            for (int i = 0; i < full; i += 16)
            {
                var e = Exp(Vector512.Load(r + i) - vShift);
                e.Store(r + i);
                vSum += e;
            }
            if (rest > 0)
            {
                tail = Exp(tail - vShift);
                vSum += tail;
            }
            var vSumAll = Vector512.Create(Vector512.Sum(vSum));
            for (int i = 0; i < full; i += 16) (Vector512.Load(r + i) / vSumAll).Store(r + i);
            if (rest > 0)
            {
                // A masked store spans the next row's bytes too, and the next row's loads then wait for it: store whole, copy.
                float* last = stackalloc float[16];
                (tail / vSumAll).Store(last);
                for (int j = 0; j < rest; j++) r[full + j] = last[j];
            }
        }

        // e^x, exactly 0 below the floor (and for the padding's −∞ − max).
        static Vector512<float> Exp(Vector512<float> x) =>
            Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(SingleExp.Floor)), Vector512<float>.Zero, SingleExp.OfNonPositive(x));

        static float HorizontalMax(Vector512<float> v)
        {
            var v256 = Vector256.Max(v.GetLower(), v.GetUpper());
            var v128 = Vector128.Max(v256.GetLower(), v256.GetUpper());
            return Math.Max(Math.Max(v128[0], v128[1]), Math.Max(v128[2], v128[3]));
        }
    }

    /// <summary>
    /// dr ← ((dr − dot) ⊙ p) · scale for one row, in one pass: the three roundings of the subtract, multiply and multiply passes
    /// it replaces, in their order (no fused multiply-add), so the same bits.
    /// </summary>
    internal static unsafe void SoftmaxBackwardRow(ReadOnlySpan<float> p, Span<float> dr, float dot, float scale)
    {
        int n = dr.Length, i = 0;
        if (p.Length < n) throw new ArgumentException($"softmax backward: {p.Length} probabilities for {n} gradients");
        fixed (float* pp = p)
        fixed (float* pd = dr)
        {
            if (Vector512.IsHardwareAccelerated)
            {
                var vDot = Vector512.Create(dot);
                var vScale = Vector512.Create(scale);
                for (; i + 16 <= n; i += 16) ((Vector512.Load(pd + i) - vDot) * Vector512.Load(pp + i) * vScale).Store(pd + i);
            }
            if (Vector256.IsHardwareAccelerated) // all of a row on AVX2, the rest of eight or more on AVX-512
            {
                var vDot = Vector256.Create(dot);
                var vScale = Vector256.Create(scale);
                for (; i + 8 <= n; i += 8) ((Vector256.Load(pd + i) - vDot) * Vector256.Load(pp + i) * vScale).Store(pd + i);
            }
            for (; i < n; i++) pd[i] = (pd[i] - dot) * pp[i] * scale;
        }
    }

    /// <summary>0 for attended positions, <see cref="MaskedScore"/> for padding, for the first <paramref name="count"/> mask entries.</summary>
    internal static float[] AdditiveMask(int[] attentionMask, int count)
    {
        var additive = t_additive is { } cached && cached.Length >= count ? cached : t_additive = new float[count];
        for (int i = 0; i < count; i++) additive[i] = attentionMask[i] == 0 ? MaskedScore : 0f;
        return additive;
    }

    [ThreadStatic] private static float[]? t_additive;

    /// <summary>
    /// Runs body(b·heads + j) for every (sequence b, head j) on up to <paramref name="threads"/> threads, as a few runs
    /// of consecutive items per thread rather than one item at a time: the heads of one sequence write neighbouring
    /// columns of the same rows, and two threads writing one cache line pass it back and forth.
    /// </summary>
    internal static void ParallelOver(int batch, int heads, int threads, Action<int> body)
    {
        int count = batch * heads, parts = Math.Min(count, 4 * threads);
        if (threads <= 1 || parts <= 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        EngineParallel.For(parts, threads, part =>
        {
            int i0 = (int)((long)count * part / parts), i1 = (int)((long)count * (part + 1) / parts);
            for (int i = i0; i < i1; i++) body(i);
        });
    }
}
