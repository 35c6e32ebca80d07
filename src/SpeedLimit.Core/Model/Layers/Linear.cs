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
    /// <param name="packedWeight">The weight packed as op(B) = W (out,in) for the input gradient, or null to pack it in the call.</param>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> dy,
        Span<float> dx, Span<float> dWeight, Span<float> dBias, int rows, int inDim, int outDim, int threads, PackedMatrix? packedWeight = null)
    {
        if (!dx.IsEmpty && packedWeight is not null)
            Gemm.Multiply(false, rows, dy, outDim, packedWeight, dx, inDim, accumulate: true, threads); // (N,in)
        else if (!dx.IsEmpty)
            Gemm.Multiply(false, false, rows, inDim, outDim, dy, outDim, weight, inDim, dx, inDim, accumulate: true, threads); // (N,in)
        Gemm.Multiply(true, false, outDim, inDim, rows, dy, outDim, x, inDim, dWeight, inDim, accumulate: true, threads); // (out,in)
        for (int r = 0; r < rows; r++)
            TensorPrimitives.Add(dBias, dy.Slice(r * outDim, outDim), dBias);
    }
}
