using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpeedLimit.Kernels;

/// <summary>
/// C (m × n) = op(A)·B, or C += op(A)·B, by direct register-blocked loops on one thread, for products too small for
/// <see cref="Gemm"/>'s call, packing and blocking to pay: attention's per-head products on short sequences
/// (14 × 14 × 48 in a fine-tuning batch of short sentences). Each element is a chain of fused multiply-adds over k in
/// order, starting from zero and added to C at the end when accumulating. That is how Gemm's kernels round for k
/// within one depth block, so both give the same bits. Columns past the last whole vector take a scalar chain, which
/// is slow (latency-bound): callers pad n to whole vectors where they can (<see cref="PaddedWidth"/>).
/// </summary>
internal static class SmallProduct
{
    /// <summary>Columns per vector block.</summary>
    public static int VectorWidth => Vector.IsHardwareAccelerated ? Vector<float>.Count : 1;

    /// <summary><paramref name="n"/> rounded up to whole vectors.</summary>
    public static int PaddedWidth(int n) => (n + VectorWidth - 1) / VectorWidth * VectorWidth;

    /// <param name="transA">A is stored (k, m) with row stride lda; otherwise (m, k).</param>
    /// <param name="b">B, stored (k, n) with row stride ldb.</param>
    /// <param name="c">C, stored (m, n) with row stride ldc.</param>
    public static void Multiply(bool transA, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate)
    {
        if (m <= 0 || n <= 0) return;
        if (k < 0 || lda < (transA ? m : k) || ldb < n || ldc < n)
            throw new ArgumentException($"small product {m}×{n}×{k}: strides lda {lda}, ldb {ldb}, ldc {ldc} are too short");
        long aNeeded = k == 0 ? 0 : transA ? (long)(k - 1) * lda + m : (long)(m - 1) * lda + k;
        if (a.Length < aNeeded || b.Length < (k == 0 ? 0 : (long)(k - 1) * ldb + n) || c.Length < (long)(m - 1) * ldc + n)
            throw new ArgumentException($"small product {m}×{n}×{k}: an operand is shorter than its shape and stride need");
        ref float ra = ref MemoryMarshal.GetReference(a);
        ref float rb = ref MemoryMarshal.GetReference(b);
        ref float rc = ref MemoryMarshal.GetReference(c);
        // a(i, s) lies at i·rowStep + s·depthStep
        nint rowStep = transA ? 1 : lda, depthStep = transA ? lda : 1;
        int w = VectorWidth > 1 ? VectorWidth : n + 1; // no vector blocks without vector hardware
        int i = 0;
        for (; i + 4 <= m; i += 4)
        {
            ref float a0 = ref Unsafe.Add(ref ra, i * rowStep);
            ref float c0 = ref Unsafe.Add(ref rc, i * ldc);
            int j = 0;
            for (; j + 2 * w <= n; j += 2 * w) Rows4x2(ref a0, rowStep, depthStep, ref Unsafe.Add(ref rb, j), ldb, k, ref Unsafe.Add(ref c0, j), ldc, accumulate);
            for (; j + w <= n; j += w) Rows4x1(ref a0, rowStep, depthStep, ref Unsafe.Add(ref rb, j), ldb, k, ref Unsafe.Add(ref c0, j), ldc, accumulate);
            for (; j < n; j++)
                for (int r = 0; r < 4; r++) Element(ref Unsafe.Add(ref a0, r * rowStep), depthStep, ref Unsafe.Add(ref rb, j), ldb, k, ref Unsafe.Add(ref c0, r * ldc + j), accumulate);
        }
        for (; i < m; i++)
        {
            ref float ai = ref Unsafe.Add(ref ra, i * rowStep);
            ref float ci = ref Unsafe.Add(ref rc, i * ldc);
            int j = 0;
            for (; j + w <= n; j += w) Row1(ref ai, depthStep, ref Unsafe.Add(ref rb, j), ldb, k, ref Unsafe.Add(ref ci, j), accumulate);
            for (; j < n; j++) Element(ref ai, depthStep, ref Unsafe.Add(ref rb, j), ldb, k, ref Unsafe.Add(ref ci, j), accumulate);
        }
    }

    /// <summary>Four rows of C by two vectors of columns: eight independent chains, enough to keep the FMA units busy.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rows4x2(ref float a, nint rowStep, nint depthStep, ref float b, int ldb, int k, ref float c, int ldc, bool accumulate)
    {
        int w = Vector<float>.Count;
        Vector<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        for (int s = 0; s < k; s++)
        {
            ref float bs = ref Unsafe.Add(ref b, (nint)s * ldb);
            var b0 = Vector.LoadUnsafe(ref bs);
            var b1 = Vector.LoadUnsafe(ref bs, (nuint)w);
            ref float a_s = ref Unsafe.Add(ref a, s * depthStep);
            var x = new Vector<float>(a_s);
            c00 = Vector.FusedMultiplyAdd(x, b0, c00); c01 = Vector.FusedMultiplyAdd(x, b1, c01);
            x = new Vector<float>(Unsafe.Add(ref a_s, rowStep));
            c10 = Vector.FusedMultiplyAdd(x, b0, c10); c11 = Vector.FusedMultiplyAdd(x, b1, c11);
            x = new Vector<float>(Unsafe.Add(ref a_s, 2 * rowStep));
            c20 = Vector.FusedMultiplyAdd(x, b0, c20); c21 = Vector.FusedMultiplyAdd(x, b1, c21);
            x = new Vector<float>(Unsafe.Add(ref a_s, 3 * rowStep));
            c30 = Vector.FusedMultiplyAdd(x, b0, c30); c31 = Vector.FusedMultiplyAdd(x, b1, c31);
        }
        Store(ref c, c00, accumulate); Store(ref Unsafe.Add(ref c, w), c01, accumulate);
        Store(ref Unsafe.Add(ref c, ldc), c10, accumulate); Store(ref Unsafe.Add(ref c, ldc + w), c11, accumulate);
        Store(ref Unsafe.Add(ref c, 2 * ldc), c20, accumulate); Store(ref Unsafe.Add(ref c, 2 * ldc + w), c21, accumulate);
        Store(ref Unsafe.Add(ref c, 3 * ldc), c30, accumulate); Store(ref Unsafe.Add(ref c, 3 * ldc + w), c31, accumulate);
    }

    /// <summary>Four rows of C by one vector of columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rows4x1(ref float a, nint rowStep, nint depthStep, ref float b, int ldb, int k, ref float c, int ldc, bool accumulate)
    {
        Vector<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int s = 0; s < k; s++)
        {
            var bs = Vector.LoadUnsafe(ref Unsafe.Add(ref b, (nint)s * ldb));
            ref float a_s = ref Unsafe.Add(ref a, s * depthStep);
            c0 = Vector.FusedMultiplyAdd(new Vector<float>(a_s), bs, c0);
            c1 = Vector.FusedMultiplyAdd(new Vector<float>(Unsafe.Add(ref a_s, rowStep)), bs, c1);
            c2 = Vector.FusedMultiplyAdd(new Vector<float>(Unsafe.Add(ref a_s, 2 * rowStep)), bs, c2);
            c3 = Vector.FusedMultiplyAdd(new Vector<float>(Unsafe.Add(ref a_s, 3 * rowStep)), bs, c3);
        }
        Store(ref c, c0, accumulate);
        Store(ref Unsafe.Add(ref c, ldc), c1, accumulate);
        Store(ref Unsafe.Add(ref c, 2 * ldc), c2, accumulate);
        Store(ref Unsafe.Add(ref c, 3 * ldc), c3, accumulate);
    }

    /// <summary>One row of C by one vector of columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row1(ref float a, nint depthStep, ref float b, int ldb, int k, ref float c, bool accumulate)
    {
        Vector<float> acc = default;
        for (int s = 0; s < k; s++)
            acc = Vector.FusedMultiplyAdd(new Vector<float>(Unsafe.Add(ref a, s * depthStep)), Vector.LoadUnsafe(ref Unsafe.Add(ref b, (nint)s * ldb)), acc);
        Store(ref c, acc, accumulate);
    }

    /// <summary>One element of C: the columns past the last whole vector.</summary>
    private static void Element(ref float a, nint depthStep, ref float b, int ldb, int k, ref float c, bool accumulate)
    {
        float acc = 0f;
        for (int s = 0; s < k; s++) acc = MathF.FusedMultiplyAdd(Unsafe.Add(ref a, s * depthStep), Unsafe.Add(ref b, (nint)s * ldb), acc);
        c = accumulate ? c + acc : acc;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(ref float c, Vector<float> v, bool accumulate)
    {
        if (accumulate) v += Vector.LoadUnsafe(ref c);
        v.StoreUnsafe(ref c);
    }
}
