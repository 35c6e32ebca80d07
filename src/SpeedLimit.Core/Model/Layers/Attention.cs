using System.Numerics.Tensors;
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
    /// ctx(B·T,H) = softmax(Q·Kᵀ/√hs + mask)·V per (batch, head); stores probabilities
    /// (B, heads, T, T) for backward.
    /// </summary>
    public static void Forward(float[] q, float[] k, float[] v, int[] attentionMask, float[] probs, float[] ctx,
        int batch, int seqLen, int hidden, int heads, int threads)
    {
        int hs = hidden / heads, T = seqLen;
        float scale = 1f / MathF.Sqrt(hs);
        // The mask as an additive row per sequence (0 or −10000), so scaling and masking are one fused pass.
        var additive = AdditiveMask(attentionMask, batch * T);
        ParallelOver(batch * heads, threads, bh =>
        {
            int b = bh / heads, j = bh % heads;
            int rowBase = b * T * hidden + j * hs; // (b, 0, head j)
            var p = probs.AsSpan(bh * T * T, T * T); // (T,T)
            Gemm.Multiply(false, true, T, T, hs, q.AsSpan(rowBase), hidden, k.AsSpan(rowBase), hidden, p, T, false, 1);
            var mask = additive.AsSpan(b * T, T);
            for (int t = 0; t < T; t++)
            {
                var row = p.Slice(t * T, T);
                MaskedSoftmax(row, scale, mask);
            }
            Gemm.Multiply(false, false, T, hs, T, p, T, v.AsSpan(rowBase), hidden, ctx.AsSpan(rowBase), hidden, false, 1);
        });
    }

    /// <summary>
    /// From dctx accumulates dQ, dK, dV (each (B·T,H); heads write disjoint column blocks), or writes them when
    /// <paramref name="accumulate"/> is false (every element is written once, so they need no clearing).
    /// <paramref name="scratch"/> needs (B·heads·T·T) floats.
    /// </summary>
    public static void Backward(float[] q, float[] k, float[] v, float[] probs, float[] dCtx,
        float[] dq, float[] dk, float[] dv, float[] scratch, int batch, int seqLen, int hidden, int heads, int threads, bool accumulate = true)
    {
        int hs = hidden / heads, T = seqLen;
        float scale = 1f / MathF.Sqrt(hs);
        ParallelOver(batch * heads, threads, bh =>
        {
            int b = bh / heads, j = bh % heads;
            int rowBase = b * T * hidden + j * hs;
            var p = probs.AsSpan(bh * T * T, T * T);
            var dp = scratch.AsSpan(bh * T * T, T * T);
            var dc = dCtx.AsSpan(rowBase);
            // dP = dC·Vᵀ (T,T); dV += Pᵀ·dC (T,hs)
            Gemm.Multiply(false, true, T, T, hs, dc, hidden, v.AsSpan(rowBase), hidden, dp, T, false, 1);
            Gemm.Multiply(true, false, T, hs, T, p, T, dc, hidden, dv.AsSpan(rowBase), hidden, accumulate, 1);
            // softmax backward: dS = P ⊙ (dP − Σ_s dP·P), then the 1/√hs scale
            for (int t = 0; t < T; t++)
            {
                var pr = p.Slice(t * T, T);
                var dr = dp.Slice(t * T, T);
                float dot = TensorPrimitives.Dot(pr, dr);
                TensorPrimitives.Subtract(dr, dot, dr);
                TensorPrimitives.Multiply(dr, pr, dr);
                TensorPrimitives.Multiply(dr, scale, dr);
            }
            // dQ += dS·K ; dK += dSᵀ·Q
            Gemm.Multiply(false, false, T, hs, T, dp, T, k.AsSpan(rowBase), hidden, dq.AsSpan(rowBase), hidden, accumulate, 1);
            Gemm.Multiply(true, false, T, hs, T, dp, T, q.AsSpan(rowBase), hidden, dk.AsSpan(rowBase), hidden, accumulate, 1);
        });
    }

    /// <summary>
    /// row ← softmax(row·scale + mask) for one score row: one fused scale-and-mask pass (an unmasked score is
    /// rounded as by the multiply alone; a masked one lands near −10000 and its probability is 0 either way), the
    /// max shift (exp of large scores would overflow to inf/inf = NaN), then the exponentials and their sum.
    /// </summary>
    public static void MaskedSoftmax(Span<float> row, float scale, ReadOnlySpan<float> additiveMask)
    {
        TensorPrimitives.FusedMultiplyAdd(row, scale, additiveMask, row);
        TensorPrimitives.Subtract(row, TensorPrimitives.Max(row), row);
        // exp once, then divide by the sum (TensorPrimitives.SoftMax evaluates the exponentials twice).
        TensorPrimitives.Exp(row, row);
        TensorPrimitives.Divide(row, TensorPrimitives.Sum(row), row);
    }

    /// <summary>0 for attended positions, <see cref="MaskedScore"/> for padding, for the first <paramref name="count"/> mask entries.</summary>
    internal static float[] AdditiveMask(int[] attentionMask, int count)
    {
        var additive = t_additive is { } cached && cached.Length >= count ? cached : t_additive = new float[count];
        for (int i = 0; i < count; i++) additive[i] = attentionMask[i] == 0 ? MaskedScore : 0f;
        return additive;
    }

    [ThreadStatic] private static float[]? t_additive;

    /// <summary>Runs body(i) for i in [0, count) on up to <paramref name="threads"/> threads.</summary>
    internal static void ParallelOver(int count, int threads, Action<int> body)
    {
        if (threads <= 1 || count == 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        EngineParallel.For(count, threads, body);
    }
}
