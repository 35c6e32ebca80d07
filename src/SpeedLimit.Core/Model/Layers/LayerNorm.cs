using System.Numerics;
using System.Numerics.Tensors;
using SpeedLimit.Kernels;

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
        EngineParallel.SplitRows(rows, dim, threads, (r0, r1) =>
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
    /// Accumulates dx, dγ, dβ from dy (dx written instead of added to when <paramref name="accumulateDx"/> is false,
    /// which spares clearing it first). With x̂ = (x − mean)·rstd:
    /// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ.
    /// On several threads the rows' dx are split by rows and dγ, dβ by columns (runs of 16), every column
    /// summed row after row as one thread sums it, so the bits do not depend on the thread count.
    /// </summary>
    public static unsafe void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dGamma, Span<float> dBeta, int rows, int dim, Span<float> scratch,
        int threads = 1, bool accumulateDx = true)
    {
        int parts = EngineParallel.Parts(rows, dim, threads);
        if (parts == 1 || dim > MaxStackDim)
        {
            BackwardRows(x, gamma, mean, rstd, dy, dx, dGamma, dBeta, 0, rows, dim, scratch, parameters: true, accumulateDx);
            return;
        }
        fixed (float* px = x, pg = gamma, pm = mean, pr = rstd, pdy = dy, pdx = dx, pdg = dGamma, pdb = dBeta)
        {
            // pointers into pinned spans, for the parallel body
            nint xAt = (nint)px, gAt = (nint)pg, mAt = (nint)pm, rAt = (nint)pr, dyAt = (nint)pdy, dxAt = (nint)pdx, dgAt = (nint)pdg, dbAt = (nint)pdb;
            long n = (long)rows * dim;
            // items 0..parts−1: row ranges (dx); parts..2·parts−1: column ranges (dγ, dβ); one synchronisation for both
            EngineParallel.For(2 * parts, parts, item =>
            {
                int part = item % parts;
                if (item < parts)
                {
                    int r0 = (int)((long)rows * part / parts), r1 = (int)((long)rows * (part + 1) / parts);
                    Span<float> rowScratch = stackalloc float[2 * dim];
                    BackwardRows(new ReadOnlySpan<float>((float*)xAt, (int)n), new ReadOnlySpan<float>((float*)gAt, dim),
                        new ReadOnlySpan<float>((float*)mAt, rows), new ReadOnlySpan<float>((float*)rAt, rows), new ReadOnlySpan<float>((float*)dyAt, (int)n),
                        new Span<float>((float*)dxAt, (int)n), default, default, r0, r1, dim, rowScratch, parameters: false, accumulateDx);
                }
                else
                {
                    var (c0, c1) = EngineParallel.ColumnRange(dim, part, parts);
                    if (c0 < c1) ParameterGradients((float*)xAt, (float*)dyAt, (float*)mAt, (float*)rAt, rows, dim, (float*)dgAt, (float*)dbAt, c0, c1);
                }
            });
        }
    }

    private const int MaxStackDim = 4096; // widest row whose scratch goes on a parallel part's stack

    /// <summary>
    /// dγ[c] += Σ_r dy·x̂ and dβ[c] += Σ_r dy for columns [c0, c1), x̂ = (x − mean)·rstd: a vector strip of each held in
    /// registers down all the rows, every column summed row after row with the operations of <see cref="BackwardRows"/>
    /// (subtract, multiply, fused multiply-add; add), so the same bits.
    /// </summary>
    private static unsafe void ParameterGradients(float* x, float* dy, float* mean, float* rstd, int rows, int dim, float* dGamma, float* dBeta, int c0, int c1)
    {
        int w = Vector<float>.Count, c = c0;
        for (; c + w <= c1; c += w)
        {
            var g = Vector.Load(dGamma + c);
            var b = Vector.Load(dBeta + c);
            for (int r = 0; r < rows; r++)
            {
                long at = (long)r * dim + c;
                var d = Vector.Load(dy + at);
                var xhat = (Vector.Load(x + at) - new Vector<float>(mean[r])) * new Vector<float>(rstd[r]);
                g = Vector.FusedMultiplyAdd(d, xhat, g);
                b += d;
            }
            g.Store(dGamma + c);
            b.Store(dBeta + c);
        }
        for (; c < c1; c++)
        {
            float g = dGamma[c], b = dBeta[c];
            for (int r = 0; r < rows; r++)
            {
                long at = (long)r * dim + c;
                g = MathF.FusedMultiplyAdd(dy[at], (x[at] - mean[r]) * rstd[r], g);
                b += dy[at];
            }
            dGamma[c] = g;
            dBeta[c] = b;
        }
    }

    /// <summary>Rows [r0, r1) of <see cref="Backward"/>: dx always, dγ and dβ too when <paramref name="parameters"/> is set.</summary>
    private static void BackwardRows(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dGamma, Span<float> dBeta, int r0, int r1, int dim, Span<float> scratch,
        bool parameters, bool accumulateDx)
    {
        var xhat = scratch.Slice(0, dim);
        var g = scratch.Slice(dim, dim);
        for (int r = r0; r < r1; r++)
        {
            var xr = x.Slice(r * dim, dim);
            var dyr = dy.Slice(r * dim, dim);
            TensorPrimitives.Subtract(xr, mean[r], xhat);
            TensorPrimitives.Multiply(xhat, rstd[r], xhat);
            if (parameters)
            {
                TensorPrimitives.FusedMultiplyAdd(dyr, xhat, dGamma, dGamma);
                TensorPrimitives.Add(dBeta, dyr, dBeta);
            }
            // input gradient
            TensorPrimitives.Multiply(dyr, gamma, g);
            float meanG = TensorPrimitives.Sum(g) / dim;
            float meanGx = TensorPrimitives.Dot(g, xhat) / dim;
            var dxr = dx.Slice(r * dim, dim);
            // dx += rstd·(g − meanG − x̂·meanGx)
            TensorPrimitives.Multiply(xhat, -meanGx, xhat);
            TensorPrimitives.Add(xhat, g, xhat);
            TensorPrimitives.Add(xhat, -meanG, xhat);
            if (accumulateDx) TensorPrimitives.FusedMultiplyAdd(xhat, rstd[r], dxr, dxr);
            else TensorPrimitives.Multiply(xhat, rstd[r], dxr); // = the multiply-add onto zeros
        }
    }
}
