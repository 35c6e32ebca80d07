using System.Numerics.Tensors;

namespace SpeedLimit.Model.Layers;

/// <summary>Row-wise LayerNorm: y = (x − mean)·rstd·γ + β, rstd = 1/sqrt(var + eps).</summary>
internal static class LayerNorm
{
    /// <summary>Normalizes each of <paramref name="rows"/> rows of width <paramref name="dim"/>; stores mean and rstd per row for backward.</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        Span<float> y, Span<float> mean, Span<float> rstd, int rows, int dim, float eps)
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * dim, dim);
            var yr = y.Slice(r * dim, dim);
            float m = TensorPrimitives.Sum(xr) / dim;
            TensorPrimitives.Subtract(xr, m, yr); // y = x − mean (scratch)
            float variance = TensorPrimitives.SumOfSquares(yr) / dim;
            float s = 1f / MathF.Sqrt(variance + eps);
            TensorPrimitives.Multiply(yr, s, yr);
            TensorPrimitives.FusedMultiplyAdd(yr, gamma, beta, yr);
            mean[r] = m;
            rstd[r] = s;
        }
    }

    /// <summary>
    /// A residual block's end fused into one pass per row: r = x + mask ⊙ (y + b) (written over
    /// <paramref name="y"/>; no mask when <paramref name="mask"/> is null: no dropout), then out = LN(r) with mean
    /// and rstd stored for backward. The same operations, in the same order, as the bias pass, the dropout pass,
    /// the residual pass and <see cref="Forward"/>, so the same bits; rows split over threads when large.
    /// </summary>
    public static void BiasResidualForward(float[] y, ReadOnlyMemory<float> bias, float[]? mask, float[] x,
        ReadOnlyMemory<float> gamma, ReadOnlyMemory<float> beta, float[] output, float[] mean, float[] rstd, int rows, int dim, float eps, int threads)
    {
        if (bias.Length != dim || gamma.Length != dim || beta.Length != dim) throw new ArgumentException($"bias, gamma and beta must hold {dim} values");
        Gelu.SplitRows(rows, dim, threads, (r0, r1) =>
        {
            var b = bias.Span;
            for (int r = r0; r < r1; r++)
            {
                var yr = y.AsSpan(r * dim, dim); // (dim) in L1 from here to the normalized row
                TensorPrimitives.Add(yr, b, yr);
                if (mask is not null) TensorPrimitives.Multiply(yr, mask.AsSpan(r * dim, dim), yr);
                TensorPrimitives.Add(yr, x.AsSpan(r * dim, dim), yr);
                Forward(yr, gamma.Span, beta.Span, output.AsSpan(r * dim, dim), mean.AsSpan(r, 1), rstd.AsSpan(r, 1), 1, dim, eps);
            }
        });
    }

    /// <summary>
    /// Accumulates dx, dγ, dβ from dy. With x̂ = (x − mean)·rstd:
    /// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dGamma, Span<float> dBeta, int rows, int dim, Span<float> scratch)
    {
        var xhat = scratch.Slice(0, dim);
        var g = scratch.Slice(dim, dim);
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * dim, dim);
            var dyr = dy.Slice(r * dim, dim);
            TensorPrimitives.Subtract(xr, mean[r], xhat);
            TensorPrimitives.Multiply(xhat, rstd[r], xhat);
            // parameter gradients
            TensorPrimitives.FusedMultiplyAdd(dyr, xhat, dGamma, dGamma);
            TensorPrimitives.Add(dBeta, dyr, dBeta);
            // input gradient
            TensorPrimitives.Multiply(dyr, gamma, g);
            float meanG = TensorPrimitives.Sum(g) / dim;
            float meanGx = TensorPrimitives.Dot(g, xhat) / dim;
            var dxr = dx.Slice(r * dim, dim);
            // dx += rstd·(g − meanG − x̂·meanGx)
            TensorPrimitives.Multiply(xhat, -meanGx, xhat);
            TensorPrimitives.Add(xhat, g, xhat);
            TensorPrimitives.Add(xhat, -meanG, xhat);
            TensorPrimitives.FusedMultiplyAdd(xhat, rstd[r], dxr, dxr);
        }
    }
}
