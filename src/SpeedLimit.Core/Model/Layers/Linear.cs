using System.Numerics.Tensors;
using SpeedLimit.Kernels;

namespace SpeedLimit.Model.Layers;

/// <summary>Fully connected layer y = x·Wᵀ + b with PyTorch's (out, in) weight layout.</summary>
internal static class Linear
{
    /// <summary>y(N,out) = x(N,in) · W(out,in)ᵀ + b(out).</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias,
        Span<float> y, int rows, int inDim, int outDim, int threads)
    {
        Gemm.Multiply(false, true, rows, outDim, inDim, x, inDim, weight, inDim, y, outDim, accumulate: false, threads);
        for (int r = 0; r < rows; r++)
        {
            var row = y.Slice(r * outDim, outDim);
            TensorPrimitives.Add(row, bias, row);
        }
    }

    /// <summary>
    /// Accumulates dx += dy·W, dW += dyᵀ·x, db += Σ_rows dy. dx may be empty when the input
    /// needs no gradient (the first layer's input ids).
    /// </summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> dy,
        Span<float> dx, Span<float> dWeight, Span<float> dBias, int rows, int inDim, int outDim, int threads)
    {
        if (!dx.IsEmpty)
            Gemm.Multiply(false, false, rows, inDim, outDim, dy, outDim, weight, inDim, dx, inDim, accumulate: true, threads); // (N,in)
        Gemm.Multiply(true, false, outDim, inDim, rows, dy, outDim, x, inDim, dWeight, inDim, accumulate: true, threads); // (out,in)
        for (int r = 0; r < rows; r++)
            TensorPrimitives.Add(dBias, dy.Slice(r * outDim, outDim), dBias);
    }
}
