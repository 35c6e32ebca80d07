using System.Runtime.Intrinsics.X86;

namespace SpeedLimit.Kernels;

/// <summary>Which micro-kernel family <see cref="Gemm"/> runs.</summary>
public enum GemmPath
{
    /// <summary>The widest path this CPU supports (Vector512, else Vector256, else Scalar).</summary>
    Auto,
    /// <summary>Packed panels, 8×32 register tile of <c>Vector512</c> FMAs (needs AVX-512F).</summary>
    Vector512,
    /// <summary>Packed panels, 6×16 register tile of <c>Vector256</c> FMAs (needs AVX2 + FMA).</summary>
    Vector256,
    /// <summary>The plain scalar twin <see cref="ScalarGemm"/> (any CPU).</summary>
    Scalar,
}

/// <summary>
/// Single-precision matrix multiply on row-major matrices with leading dimensions:
/// C(M,N) = op(A)(M,K) · op(B)(K,N), or C += … when <c>accumulate</c> is set.
/// op(X) is X, or Xᵀ when the matching transpose flag is set (then X is stored (K,M) / (N,K)).
/// </summary>
/// <remarks>
/// Goto/BLIS-style: B is packed into K×NR micro-panels and A into MR×K micro-panels (cache-blocked
/// over K, M and N), and a register-blocked FMA micro-kernel computes each MR×NR tile of C.
/// Large calls split C between threads; small ones (e.g. one attention head) run on the calling
/// thread. Pack buffers are per thread and reused, so steady-state calls do not allocate.
/// </remarks>
internal static class Gemm
{
    private static GemmPath _path = GemmPath.Auto;

    /// <summary>Threads used when a call passes 0 (defaults to the processor count).</summary>
    public static int DefaultThreads { get; set; } = Environment.ProcessorCount;

    /// <summary>
    /// Forces a kernel path for every call in the process (benchmarks, debugging); <see cref="GemmPath.Auto"/>
    /// (the default) picks the widest supported one. Setting a path this CPU cannot run throws.
    /// </summary>
    public static GemmPath Path
    {
        get => _path;
        set
        {
            Resolve(value); // validates
            _path = value;
        }
    }

    /// <summary>The path <see cref="GemmPath.Auto"/> resolves to on this CPU.</summary>
    public static GemmPath AutoPath { get; } =
        Avx512F.IsSupported ? GemmPath.Vector512 :
        Avx2.IsSupported && Fma.IsSupported ? GemmPath.Vector256 : GemmPath.Scalar;

    /// <summary>Whether this CPU can run <paramref name="path"/>.</summary>
    public static bool IsSupported(GemmPath path) => path switch
    {
        GemmPath.Auto or GemmPath.Scalar => true,
        GemmPath.Vector512 => Avx512F.IsSupported,
        GemmPath.Vector256 => Avx2.IsSupported && Fma.IsSupported,
        _ => false,
    };

    /// <summary>The concrete paths this CPU can run, widest first.</summary>
    public static IReadOnlyList<GemmPath> SupportedPaths { get; } =
        new[] { GemmPath.Vector512, GemmPath.Vector256, GemmPath.Scalar }.Where(IsSupported).ToArray();

    internal static GemmPath Resolve(GemmPath path)
    {
        if (path == GemmPath.Auto) return AutoPath;
        if (!Enum.IsDefined(path))
            throw new ArgumentException($"Unknown GEMM path {(int)path}; use one of {string.Join(", ", Enum.GetNames<GemmPath>())}.", nameof(path));
        if (!IsSupported(path))
            throw new ArgumentException($"GEMM path {path} is not supported on this CPU; use Auto or one of {string.Join(", ", SupportedPaths)}.", nameof(path));
        return path;
    }

    /// <param name="transA">A is stored (K,M) with leading dimension lda.</param>
    /// <param name="transB">B is stored (N,K) with leading dimension ldb (the PyTorch linear-weight case).</param>
    public static void Multiply(bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate = false, int threads = 0)
        => Multiply(_path, transA, transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate, threads);

    /// <summary>As the public overload, on an explicit path (tests use this to cover every path without global state).</summary>
    internal static unsafe void Multiply(GemmPath path, bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate, int threads)
    {
        var p = Resolve(path);
        GemmChecks.Validate(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc, 1, 0, 0, 0);
        threads = GemmChecks.Threads(threads);
        if (m == 0 || n == 0) return;
        if (p == GemmPath.Scalar)
        {
            ScalarGemm.Multiply(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
            return;
        }
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
        {
            var args = new GemmArgs(p, transA, transB, m, n, k, pa, lda, pb, ldb, pc, ldc, accumulate);
            GemmDriver.Run(in args, threads);
        }
    }

    /// <summary>
    /// C(M,N) = op(A)(M,K) · B (or C += …) with B packed beforehand (<see cref="PackedMatrix.Pack"/>), on the
    /// packed matrix's path. Bit-identical to the unpacked overload on the same values.
    /// </summary>
    public static unsafe void Multiply(bool transA, int m, ReadOnlySpan<float> a, int lda, PackedMatrix b,
        Span<float> c, int ldc, bool accumulate = false, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(b);
        int n = b.N, k = b.K;
        GemmChecks.Validate(transA, false, m, n, k, a.Length, lda, int.MaxValue, Math.Max(1, n), c.Length, ldc, 1, 0, 0, 0);
        threads = GemmChecks.Threads(threads);
        if (m == 0 || n == 0) return;
        if (b.Path == GemmPath.Scalar)
        {
            ScalarGemm.Multiply(transA, false, m, n, k, a, lda, b.Plain, n, c, ldc, accumulate);
            return;
        }
        fixed (float* pa = a)
        fixed (float* pc = c)
        {
            var args = new GemmArgs(b.Path, transA, false, m, n, k, pa, lda, null, 0, pc, ldc, accumulate);
            var panels = b.Panels;
            GemmDriver.RunPacked(in args, in panels, threads);
        }
        // The kernels read b's pinned storage through a pointer: without this, a matrix the caller no longer holds (a
        // temporary argument) can be collected mid-call, and its memory reused or returned (an access violation in a test).
        GC.KeepAlive(b);
    }

    /// <summary>
    /// <paramref name="count"/> independent GEMMs of the same shape, item i reading A at
    /// <c>i·strideA</c>, B at <c>i·strideB</c> and writing C at <c>i·strideC</c> (e.g. attention
    /// scores/context per (batch, head) with a (B,heads,T,headSize) layout). Threads split the
    /// items rather than each small GEMM.
    /// </summary>
    public static void MultiplyBatched(int count, bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int strideA, int lda, ReadOnlySpan<float> b, int strideB, int ldb,
        Span<float> c, int strideC, int ldc, bool accumulate = false, int threads = 0)
        => MultiplyBatched(_path, count, transA, transB, m, n, k, a, strideA, lda, b, strideB, ldb, c, strideC, ldc, accumulate, threads);

    internal static unsafe void MultiplyBatched(GemmPath path, int count, bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int strideA, int lda, ReadOnlySpan<float> b, int strideB, int ldb,
        Span<float> c, int strideC, int ldc, bool accumulate, int threads)
    {
        var p = Resolve(path);
        if (count < 0) throw new ArgumentException($"GEMM batch count must be >= 0 (got {count}).", nameof(count));
        GemmChecks.Validate(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc, count, strideA, strideB, strideC);
        threads = GemmChecks.Threads(threads);
        if (count == 0 || m == 0 || n == 0) return;
        if (p == GemmPath.Scalar)
        {
            for (int i = 0; i < count; i++)
                ScalarGemm.Multiply(transA, transB, m, n, k, a[(i * strideA)..], lda, b[(i * strideB)..], ldb,
                    c[(i * strideC)..], ldc, accumulate);
            return;
        }
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
        {
            var args = new GemmArgs(p, transA, transB, m, n, k, pa, lda, pb, ldb, pc, ldc, accumulate);
            GemmDriver.RunBatched(in args, count, strideA, strideB, strideC, threads);
        }
    }
}

/// <summary>The plain scalar twin of <see cref="Gemm"/>: the reference the SIMD kernels are tested against.</summary>
internal static class ScalarGemm
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

/// <summary>Argument checks shared by the GEMM entry points: one clear message per mistake.</summary>
internal static class GemmChecks
{
    public static int Threads(int threads)
    {
        if (threads < 0) throw new ArgumentException($"GEMM threads must be >= 0 (0 = Gemm.DefaultThreads), got {threads}.", nameof(threads));
        return threads == 0 ? Math.Max(1, Gemm.DefaultThreads) : threads;
    }

    public static void Validate(bool transA, bool transB, int m, int n, int k,
        int aLength, int lda, int bLength, int ldb, int cLength, int ldc,
        int count, long strideA, long strideB, long strideC)
    {
        if (m < 0 || n < 0 || k < 0)
            throw new ArgumentException($"GEMM dimensions must be >= 0, got m={m}, n={n}, k={k}.");
        if (count == 0 || m == 0 || n == 0) return;
        // Stored shapes: A is (M,K), or (K,M) when transposed; B is (K,N), or (N,K).
        Check("A", transA ? k : m, transA ? m : k, aLength, lda, count, strideA, "lda");
        Check("B", transB ? n : k, transB ? k : n, bLength, ldb, count, strideB, "ldb");
        Check("C", m, n, cLength, ldc, count, strideC, "ldc");
        if (count > 1 && strideC < (long)(m - 1) * ldc + n)
            throw new ArgumentException($"GEMM batch items of C overlap: strideC={strideC} is smaller than one {m}×{n} item with ldc={ldc}; pass strideC >= {(long)(m - 1) * ldc + n}.", nameof(strideC));
    }

    /// <summary>One stored operand of rows×cols with leading dimension ld in a span of length floats.</summary>
    public static void ValidateOperand(string name, int rows, int cols, int length, int ld, string ldName) =>
        Check(name, rows, cols, length, ld, 1, 0, ldName);

    private static void Check(string name, int rows, int cols, int length, int ld, int count, long stride, string ldName)
    {
        if (rows == 0 || cols == 0) return;
        if (ld < cols)
            throw new ArgumentException($"GEMM {ldName}={ld} is smaller than the row width {cols} of {name} ({rows}×{cols} as stored); pass {ldName} >= {cols}.", ldName);
        if (stride < 0)
            throw new ArgumentException($"GEMM batch stride of {name} must be >= 0, got {stride}.");
        long need = (count - 1) * stride + (long)(rows - 1) * ld + cols;
        if (need > length)
            throw new ArgumentException($"GEMM {name} needs {need} floats ({count} item(s) of {rows}×{cols}, {ldName}={ld}) but its span holds {length}; pass a larger buffer or fix the dimensions.", name.ToLowerInvariant());
    }
}
