namespace SpeedLimit.Kernels;

/// <summary>
/// Single-precision matrix multiply on row-major matrices with leading dimensions:
/// C(M,N) = op(A)(M,K) · op(B)(K,N), or C += … when <c>accumulate</c> is set.
/// op(X) is X, or Xᵀ when the matching transpose flag is set (then X is stored (K,M) / (N,K)).
/// </summary>
public static class Gemm
{
    /// <summary>Threads used when a call does not say (defaults to the processor count).</summary>
    public static int DefaultThreads { get; set; } = Environment.ProcessorCount;

    /// <param name="transA">A is stored (K,M) with leading dimension lda.</param>
    /// <param name="transB">B is stored (N,K) with leading dimension ldb (the PyTorch linear-weight case).</param>
    public static void Multiply(bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate = false, int threads = 0)
    {
        // Placeholder until the packed SIMD kernels land: the scalar twin.
        ScalarGemm.Multiply(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
    }
}

/// <summary>The plain scalar twin of <see cref="Gemm"/>: the reference the SIMD kernels are tested against.</summary>
public static class ScalarGemm
{
    public static void Multiply(bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate = false)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float sum = 0;
                for (int p = 0; p < k; p++)
                {
                    float av = transA ? a[p * lda + i] : a[i * lda + p];
                    float bv = transB ? b[j * ldb + p] : b[p * ldb + j];
                    sum += av * bv;
                }
                c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
            }
    }
}
