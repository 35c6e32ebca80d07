using System.Numerics;
using System.Numerics.Tensors;
using SpeedLimit.Kernels;

namespace SpeedLimit.Model.Layers;

/// <summary>Fully connected layer y = x·Wᵀ + b with PyTorch's (out, in) weight layout.</summary>
internal static class Linear
{
    /// <summary>y(N,out) = x(N,in) · W(out,in)ᵀ + b(out); an empty bias adds nothing (a fused pass after it adds the bias).</summary>
    /// <param name="packedWeight">The weight packed as op(B) = Wᵀ (in,out) (<see cref="BertModel.FreezeWeights"/>), or null to pack it in the call.</param>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias,
        Span<float> y, int rows, int inDim, int outDim, int threads, PackedMatrix? packedWeight = null)
    {
        if (packedWeight is not null) Gemm.Multiply(false, rows, x, inDim, packedWeight, y, outDim, accumulate: false, threads);
        else Gemm.Multiply(false, true, rows, outDim, inDim, x, inDim, weight, inDim, y, outDim, accumulate: false, threads);
        if (bias.IsEmpty) return;
        AddBias(y, bias, rows, outDim, threads);
    }

    /// <summary>y[r] += b for every row, rows split over threads when the tensor is large.</summary>
    private static unsafe void AddBias(Span<float> y, ReadOnlySpan<float> bias, int rows, int outDim, int threads)
    {
        fixed (float* py = y, pb = bias)
        {
            nint yAt = (nint)py, bAt = (nint)pb; // pointers into pinned spans, for the parallel body
            EngineParallel.SplitRows(rows, outDim, threads, (r0, r1) =>
            {
                var b = new ReadOnlySpan<float>((float*)bAt, outDim);
                for (int r = r0; r < r1; r++)
                {
                    var row = new Span<float>((float*)yAt + (long)r * outDim, outDim);
                    TensorPrimitives.Add(row, b, row);
                }
            });
        }
    }

    /// <summary>
    /// dBias += Σ_rows dy, with the columns split over threads (in runs of 16): every column is still summed
    /// row after row, so the bits do not depend on the thread count.
    /// </summary>
    private static unsafe void BiasGradient(ReadOnlySpan<float> dy, Span<float> dBias, int rows, int outDim, int threads)
    {
        fixed (float* pdy = dy, pdb = dBias)
        {
            nint dyAt = (nint)pdy, dbAt = (nint)pdb;
            EngineParallel.SplitColumns(rows, outDim, threads, (c0, c1) => ColumnSums((float*)dyAt, rows, outDim, (float*)dbAt, c0, c1));
        }
    }

    /// <summary>
    /// sums[c] += Σ_r x[r·ld + c] for columns [c0, c1), strips of four vectors held in registers down all the rows: each
    /// column is still added row after row, the bits of adding the rows one by one (a call per row cost more than its adds).
    /// </summary>
    internal static unsafe void ColumnSums(float* x, int rows, int ld, float* sums, int c0, int c1)
    {
        int w = Vector<float>.Count, c = c0;
        for (; c + 4 * w <= c1; c += 4 * w)
        {
            var s0 = Vector.Load(sums + c); var s1 = Vector.Load(sums + c + w);
            var s2 = Vector.Load(sums + c + 2 * w); var s3 = Vector.Load(sums + c + 3 * w);
            float* p = x + c;
            for (int r = 0; r < rows; r++, p += ld)
            {
                s0 += Vector.Load(p); s1 += Vector.Load(p + w);
                s2 += Vector.Load(p + 2 * w); s3 += Vector.Load(p + 3 * w);
            }
            s0.Store(sums + c); s1.Store(sums + c + w); s2.Store(sums + c + 2 * w); s3.Store(sums + c + 3 * w);
        }
        for (; c + w <= c1; c += w)
        {
            var s0 = Vector.Load(sums + c);
            float* p = x + c;
            for (int r = 0; r < rows; r++, p += ld) s0 += Vector.Load(p);
            s0.Store(sums + c);
        }
        for (; c < c1; c++)
        {
            float s0 = sums[c];
            float* p = x + c;
            for (int r = 0; r < rows; r++, p += ld) s0 += *p;
            sums[c] = s0;
        }
    }

    /// <summary>
    /// Accumulates dx += dy·W (or writes dx = dy·W when <paramref name="accumulateDx"/> is false, which spares
    /// clearing it first), dW += dyᵀ·x, db += Σ_rows dy. dx may be empty when the input needs no gradient
    /// (the first layer's input ids).
    /// </summary>
    /// <param name="packedWeight">The weight packed as op(B) = W (out,in) for the input gradient, or null to pack it in the call.</param>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> dy,
        Span<float> dx, Span<float> dWeight, Span<float> dBias, int rows, int inDim, int outDim, int threads, PackedMatrix? packedWeight = null,
        bool accumulateDx = true)
    {
        if (!dx.IsEmpty && packedWeight is not null)
            Gemm.Multiply(false, rows, dy, outDim, packedWeight, dx, inDim, accumulateDx, threads); // (N,in)
        else if (!dx.IsEmpty)
            Gemm.Multiply(false, false, rows, inDim, outDim, dy, outDim, weight, inDim, dx, inDim, accumulateDx, threads); // (N,in)
        Gemm.Multiply(true, false, outDim, inDim, rows, dy, outDim, x, inDim, dWeight, inDim, accumulate: true, threads); // (out,in)
        BiasGradient(dy, dBias, rows, outDim, threads);
    }
}
