using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SpeedLimit.Kernels;

/// <summary>
/// Register-blocked micro-kernels: C(MR,NR) (+)= Apanel(MR,kc) · Bpanel(kc,NR) on packed panels.
/// A panel: kc steps of MR floats; B panel: kc steps of NR floats (64-byte aligned).
/// </summary>
internal static unsafe class GemmKernels
{
    // Vector512: 8 rows × 2 zmm = 16 accumulators, 2 B loads + 8 broadcasts per k step.
    public const int Mr512 = 8, Nr512 = 32;
    // Vector256: 6 rows × 2 ymm = 12 accumulators (fits the 16 ymm registers of AVX2).
    public const int Mr256 = 6, Nr256 = 16;
    public const int MaxTile = Mr512 * Nr512;

    public static bool CanTranspose16 => Avx512F.IsSupported;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Tile(GemmPath path, float* a, float* b, int kc, float* c, int ldc, bool accumulate)
    {
        if (path == GemmPath.Vector512) Kernel8x32(a, b, kc, c, ldc, accumulate);
        else Kernel6x16(a, b, kc, c, ldc, accumulate);
    }

    /// <summary>
    /// An edge tile whose valid columns fit in the first half of the B panel: on the Vector512 path only
    /// the first 16 of the 32 packed columns are computed (half the FMAs of a full tile), written to
    /// c with leading dimension ldc; other paths run the full tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void NarrowTile(GemmPath path, float* a, float* b, int kc, float* c, int ldc)
    {
        if (path == GemmPath.Vector512) Kernel8x16(a, b, kc, c, ldc);
        else Kernel6x16(a, b, kc, c, ldc, false);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel8x16(float* a, float* b, int kc, float* c, int ldc)
    {
        if (!Avx512F.IsSupported) throw new PlatformNotSupportedException("Vector512 GEMM kernel needs AVX-512F.");
        var c0 = Vector512<float>.Zero; var c1 = Vector512<float>.Zero;
        var c2 = Vector512<float>.Zero; var c3 = Vector512<float>.Zero;
        var c4 = Vector512<float>.Zero; var c5 = Vector512<float>.Zero;
        var c6 = Vector512<float>.Zero; var c7 = Vector512<float>.Zero;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx512F.LoadAlignedVector512(b);
            c0 = Avx512F.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c0);
            c1 = Avx512F.FusedMultiplyAdd(Vector512.Create(a[1]), b0, c1);
            c2 = Avx512F.FusedMultiplyAdd(Vector512.Create(a[2]), b0, c2);
            c3 = Avx512F.FusedMultiplyAdd(Vector512.Create(a[3]), b0, c3);
            c4 = Avx512F.FusedMultiplyAdd(Vector512.Create(a[4]), b0, c4);
            c5 = Avx512F.FusedMultiplyAdd(Vector512.Create(a[5]), b0, c5);
            c6 = Avx512F.FusedMultiplyAdd(Vector512.Create(a[6]), b0, c6);
            c7 = Avx512F.FusedMultiplyAdd(Vector512.Create(a[7]), b0, c7);
            a += Mr512;
            b += Nr512;
        }
        Avx512F.Store(c, c0); c += ldc;
        Avx512F.Store(c, c1); c += ldc;
        Avx512F.Store(c, c2); c += ldc;
        Avx512F.Store(c, c3); c += ldc;
        Avx512F.Store(c, c4); c += ldc;
        Avx512F.Store(c, c5); c += ldc;
        Avx512F.Store(c, c6); c += ldc;
        Avx512F.Store(c, c7);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel8x32(float* a, float* b, int kc, float* c, int ldc, bool accumulate)
    {
        if (!Avx512F.IsSupported) throw new PlatformNotSupportedException("Vector512 GEMM kernel needs AVX-512F.");
        // Fetch the C tile while the k loop runs: on large outputs it is in L3 or DRAM, and waiting
        // for it in the epilogue costs a sizeable fraction of the tile's compute time.
        for (int r = 0; r < Mr512; r++)
        {
            Sse.Prefetch0(c + (long)r * ldc);
            Sse.Prefetch0(c + (long)r * ldc + 16);
        }
        var c00 = Vector512<float>.Zero; var c01 = Vector512<float>.Zero;
        var c10 = Vector512<float>.Zero; var c11 = Vector512<float>.Zero;
        var c20 = Vector512<float>.Zero; var c21 = Vector512<float>.Zero;
        var c30 = Vector512<float>.Zero; var c31 = Vector512<float>.Zero;
        var c40 = Vector512<float>.Zero; var c41 = Vector512<float>.Zero;
        var c50 = Vector512<float>.Zero; var c51 = Vector512<float>.Zero;
        var c60 = Vector512<float>.Zero; var c61 = Vector512<float>.Zero;
        var c70 = Vector512<float>.Zero; var c71 = Vector512<float>.Zero;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx512F.LoadAlignedVector512(b);
            var b1 = Avx512F.LoadAlignedVector512(b + 16);
            var x = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(x, b0, c00); c01 = Avx512F.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(x, b0, c10); c11 = Avx512F.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(x, b0, c20); c21 = Avx512F.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(x, b0, c30); c31 = Avx512F.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[4]);
            c40 = Avx512F.FusedMultiplyAdd(x, b0, c40); c41 = Avx512F.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[5]);
            c50 = Avx512F.FusedMultiplyAdd(x, b0, c50); c51 = Avx512F.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a[6]);
            c60 = Avx512F.FusedMultiplyAdd(x, b0, c60); c61 = Avx512F.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a[7]);
            c70 = Avx512F.FusedMultiplyAdd(x, b0, c70); c71 = Avx512F.FusedMultiplyAdd(x, b1, c71);
            a += Mr512;
            b += Nr512;
        }
        Store512(c, c00, c01, accumulate); c += ldc;
        Store512(c, c10, c11, accumulate); c += ldc;
        Store512(c, c20, c21, accumulate); c += ldc;
        Store512(c, c30, c31, accumulate); c += ldc;
        Store512(c, c40, c41, accumulate); c += ldc;
        Store512(c, c50, c51, accumulate); c += ldc;
        Store512(c, c60, c61, accumulate); c += ldc;
        Store512(c, c70, c71, accumulate);
    }

    /// <summary>
    /// The 8×32 tile with A read in place: eight rows of row-major A (stride <paramref name="lda"/>), element p of
    /// each broadcast at step p, instead of a packed panel. The same multiply-adds in the same order as
    /// <see cref="Kernel8x32"/> on the packed panel of those rows, so the same bits. (One kernel with both strides
    /// as parameters served both and measured 2–5 % slower on packed panels, so the two stay separate.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Kernel8x32RowMajorA(float* a, int lda, float* b, int kc, float* c, int ldc, bool accumulate)
    {
        if (!Avx512F.IsSupported) throw new PlatformNotSupportedException("Vector512 GEMM kernel needs AVX-512F.");
        for (int r = 0; r < Mr512; r++)
        {
            Sse.Prefetch0(c + (long)r * ldc);
            Sse.Prefetch0(c + (long)r * ldc + 16);
        }
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda;
        float* a4 = a3 + lda, a5 = a4 + lda, a6 = a5 + lda, a7 = a6 + lda;
        var c00 = Vector512<float>.Zero; var c01 = Vector512<float>.Zero;
        var c10 = Vector512<float>.Zero; var c11 = Vector512<float>.Zero;
        var c20 = Vector512<float>.Zero; var c21 = Vector512<float>.Zero;
        var c30 = Vector512<float>.Zero; var c31 = Vector512<float>.Zero;
        var c40 = Vector512<float>.Zero; var c41 = Vector512<float>.Zero;
        var c50 = Vector512<float>.Zero; var c51 = Vector512<float>.Zero;
        var c60 = Vector512<float>.Zero; var c61 = Vector512<float>.Zero;
        var c70 = Vector512<float>.Zero; var c71 = Vector512<float>.Zero;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx512F.LoadAlignedVector512(b);
            var b1 = Avx512F.LoadAlignedVector512(b + 16);
            var x = Vector512.Create(a0[p]);
            c00 = Avx512F.FusedMultiplyAdd(x, b0, c00); c01 = Avx512F.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a1[p]);
            c10 = Avx512F.FusedMultiplyAdd(x, b0, c10); c11 = Avx512F.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a2[p]);
            c20 = Avx512F.FusedMultiplyAdd(x, b0, c20); c21 = Avx512F.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[p]);
            c30 = Avx512F.FusedMultiplyAdd(x, b0, c30); c31 = Avx512F.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a4[p]);
            c40 = Avx512F.FusedMultiplyAdd(x, b0, c40); c41 = Avx512F.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a5[p]);
            c50 = Avx512F.FusedMultiplyAdd(x, b0, c50); c51 = Avx512F.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a6[p]);
            c60 = Avx512F.FusedMultiplyAdd(x, b0, c60); c61 = Avx512F.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a7[p]);
            c70 = Avx512F.FusedMultiplyAdd(x, b0, c70); c71 = Avx512F.FusedMultiplyAdd(x, b1, c71);
            b += Nr512;
        }
        Store512(c, c00, c01, accumulate); c += ldc;
        Store512(c, c10, c11, accumulate); c += ldc;
        Store512(c, c20, c21, accumulate); c += ldc;
        Store512(c, c30, c31, accumulate); c += ldc;
        Store512(c, c40, c41, accumulate); c += ldc;
        Store512(c, c50, c51, accumulate); c += ldc;
        Store512(c, c60, c61, accumulate); c += ldc;
        Store512(c, c70, c71, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> v0, Vector512<float> v1, bool accumulate)
    {
        if (accumulate)
        {
            v0 = Avx512F.Add(v0, Avx512F.LoadVector512(c));
            v1 = Avx512F.Add(v1, Avx512F.LoadVector512(c + 16));
        }
        Avx512F.Store(c, v0);
        Avx512F.Store(c + 16, v1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16(float* a, float* b, int kc, float* c, int ldc, bool accumulate)
    {
        if (!Fma.IsSupported) throw new PlatformNotSupportedException("Vector256 GEMM kernel needs AVX2 and FMA.");
        for (int r = 0; r < Mr256; r++)
        {
            Sse.Prefetch0(c + (long)r * ldc);
            Sse.Prefetch0(c + (long)r * ldc + 15);
        }
        var c00 = Vector256<float>.Zero; var c01 = Vector256<float>.Zero;
        var c10 = Vector256<float>.Zero; var c11 = Vector256<float>.Zero;
        var c20 = Vector256<float>.Zero; var c21 = Vector256<float>.Zero;
        var c30 = Vector256<float>.Zero; var c31 = Vector256<float>.Zero;
        var c40 = Vector256<float>.Zero; var c41 = Vector256<float>.Zero;
        var c50 = Vector256<float>.Zero; var c51 = Vector256<float>.Zero;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx.LoadAlignedVector256(b);
            var b1 = Avx.LoadAlignedVector256(b + 8);
            var x = Vector256.Create(a[0]);
            c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]);
            c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]);
            c20 = Fma.MultiplyAdd(x, b0, c20); c21 = Fma.MultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]);
            c30 = Fma.MultiplyAdd(x, b0, c30); c31 = Fma.MultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[4]);
            c40 = Fma.MultiplyAdd(x, b0, c40); c41 = Fma.MultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[5]);
            c50 = Fma.MultiplyAdd(x, b0, c50); c51 = Fma.MultiplyAdd(x, b1, c51);
            a += Mr256;
            b += Nr256;
        }
        Store256(c, c00, c01, accumulate); c += ldc;
        Store256(c, c10, c11, accumulate); c += ldc;
        Store256(c, c20, c21, accumulate); c += ldc;
        Store256(c, c30, c31, accumulate); c += ldc;
        Store256(c, c40, c41, accumulate); c += ldc;
        Store256(c, c50, c51, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store256(float* c, Vector256<float> v0, Vector256<float> v1, bool accumulate)
    {
        if (accumulate)
        {
            v0 = Avx.Add(v0, Avx.LoadVector256(c));
            v1 = Avx.Add(v1, Avx.LoadVector256(c + 8));
        }
        Avx.Store(c, v0);
        Avx.Store(c + 8, v1);
    }

    /// <summary>Copies n floats (n a multiple of 8 when a vector path is available).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void CopyRow(float* src, float* dst, int n, GemmPath path)
    {
        int j = 0;
        if (path == GemmPath.Vector512 && Avx512F.IsSupported)
            for (; j + 16 <= n; j += 16) Avx512F.Store(dst + j, Avx512F.LoadVector512(src + j));
        else if (Avx.IsSupported)
            for (; j + 8 <= n; j += 8) Avx.Store(dst + j, Avx.LoadVector256(src + j));
        for (; j < n; j++) dst[j] = src[j];
    }

    /// <summary>
    /// dst[q·ldd + i] = src[i·lds + q] for an 8×8 block (AVX): unpack 32-bit pairs, shuffle 64-bit
    /// pairs, then swap 128-bit halves. The Vector256 path's packing of transposed operands.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose8(float* src, int lds, float* dst, int ldd)
    {
        if (!Avx.IsSupported) throw new PlatformNotSupportedException("Transpose8 needs AVX.");
        var r0 = Avx.LoadVector256(src); src += lds;
        var r1 = Avx.LoadVector256(src); src += lds;
        var r2 = Avx.LoadVector256(src); src += lds;
        var r3 = Avx.LoadVector256(src); src += lds;
        var r4 = Avx.LoadVector256(src); src += lds;
        var r5 = Avx.LoadVector256(src); src += lds;
        var r6 = Avx.LoadVector256(src); src += lds;
        var r7 = Avx.LoadVector256(src);
        Transpose8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
        Avx.Store(dst, r0); dst += ldd;
        Avx.Store(dst, r1); dst += ldd;
        Avx.Store(dst, r2); dst += ldd;
        Avx.Store(dst, r3); dst += ldd;
        Avx.Store(dst, r4); dst += ldd;
        Avx.Store(dst, r5); dst += ldd;
        Avx.Store(dst, r6); dst += ldd;
        Avx.Store(dst, r7);
    }

    /// <summary>
    /// Packs 6 rows × 8 columns of a row-major block (src[i·lds + q], i &lt; 6) as 8 steps of 6 floats
    /// (dst[q·6 + i]): the Vector256 A panel of 8 k steps, two rows of zeros padding the transpose.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose6x8(float* src, int lds, float* dst)
    {
        if (!Avx.IsSupported) throw new PlatformNotSupportedException("Transpose6x8 needs AVX.");
        var r0 = Avx.LoadVector256(src); src += lds;
        var r1 = Avx.LoadVector256(src); src += lds;
        var r2 = Avx.LoadVector256(src); src += lds;
        var r3 = Avx.LoadVector256(src); src += lds;
        var r4 = Avx.LoadVector256(src); src += lds;
        var r5 = Avx.LoadVector256(src);
        var r6 = Vector256<float>.Zero;
        var r7 = Vector256<float>.Zero;
        Transpose8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
        Store6(dst, r0); Store6(dst + 6, r1); Store6(dst + 12, r2); Store6(dst + 18, r3);
        Store6(dst + 24, r4); Store6(dst + 30, r5); Store6(dst + 36, r6); Store6(dst + 42, r7);
    }

    /// <summary>The first 6 floats of <paramref name="v"/>: 4 as one 128-bit store, 2 as one 64-bit store.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store6(float* dst, Vector256<float> v)
    {
        Sse.Store(dst, v.GetLower());
        Sse2.StoreScalar((double*)(dst + 4), v.GetUpper().AsDouble());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3,
        ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6, ref Vector256<float> r7)
    {
        // Per 128-bit lane L: t(2i) = [r2i[4L], r2i+1[4L], r2i[4L+1], r2i+1[4L+1]], t(2i+1) the +2/+3 columns.
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        // s(q) lane L = rows 0-3 (s0-s3) or 4-7 (s4-s7) at column 4L+q.
        var s0 = Avx.Shuffle(t0, t2, 0x44); var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44); var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44); var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44); var s7 = Avx.Shuffle(t5, t7, 0xEE);
        r0 = Avx.Permute2x128(s0, s4, 0x20); r1 = Avx.Permute2x128(s1, s5, 0x20);
        r2 = Avx.Permute2x128(s2, s6, 0x20); r3 = Avx.Permute2x128(s3, s7, 0x20);
        r4 = Avx.Permute2x128(s0, s4, 0x31); r5 = Avx.Permute2x128(s1, s5, 0x31);
        r6 = Avx.Permute2x128(s2, s6, 0x31); r7 = Avx.Permute2x128(s3, s7, 0x31);
    }

    /// <summary>dst[q·ldd + i] = src[i·lds + q] for a 16×16 block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose16(float* src, int lds, float* dst, int ldd) => Transpose16(src, lds, dst, ldd, null);

    /// <summary>
    /// Transposes a 16×16 block; with <paramref name="dstHigh"/> set, source rows 0-7 of column q go to
    /// dst[q·ldd..+8] and rows 8-15 to dstHigh[q·ldd..+8] (two 8-row A panels packed at once).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose16(float* src, int lds, float* dst, int ldd, float* dstHigh)
    {
        if (!Avx512F.IsSupported) throw new PlatformNotSupportedException("Transpose16 needs AVX-512F.");
        var r0 = Avx512F.LoadVector512(src); src += lds;
        var r1 = Avx512F.LoadVector512(src); src += lds;
        var r2 = Avx512F.LoadVector512(src); src += lds;
        var r3 = Avx512F.LoadVector512(src); src += lds;
        var r4 = Avx512F.LoadVector512(src); src += lds;
        var r5 = Avx512F.LoadVector512(src); src += lds;
        var r6 = Avx512F.LoadVector512(src); src += lds;
        var r7 = Avx512F.LoadVector512(src); src += lds;
        var r8 = Avx512F.LoadVector512(src); src += lds;
        var r9 = Avx512F.LoadVector512(src); src += lds;
        var r10 = Avx512F.LoadVector512(src); src += lds;
        var r11 = Avx512F.LoadVector512(src); src += lds;
        var r12 = Avx512F.LoadVector512(src); src += lds;
        var r13 = Avx512F.LoadVector512(src); src += lds;
        var r14 = Avx512F.LoadVector512(src); src += lds;
        var r15 = Avx512F.LoadVector512(src);

        // Stage 1: per 128-bit lane L, a(2i) = [r2i[4L], r2i+1[4L], r2i[4L+1], r2i+1[4L+1]], a(2i+1) the +2/+3 columns.
        var a0 = Avx512F.UnpackLow(r0, r1); var a1 = Avx512F.UnpackHigh(r0, r1);
        var a2 = Avx512F.UnpackLow(r2, r3); var a3 = Avx512F.UnpackHigh(r2, r3);
        var a4 = Avx512F.UnpackLow(r4, r5); var a5 = Avx512F.UnpackHigh(r4, r5);
        var a6 = Avx512F.UnpackLow(r6, r7); var a7 = Avx512F.UnpackHigh(r6, r7);
        var a8 = Avx512F.UnpackLow(r8, r9); var a9 = Avx512F.UnpackHigh(r8, r9);
        var a10 = Avx512F.UnpackLow(r10, r11); var a11 = Avx512F.UnpackHigh(r10, r11);
        var a12 = Avx512F.UnpackLow(r12, r13); var a13 = Avx512F.UnpackHigh(r12, r13);
        var a14 = Avx512F.UnpackLow(r14, r15); var a15 = Avx512F.UnpackHigh(r14, r15);

        // Stage 2: b(4g+q) lane L = rows 4g..4g+3 at column 4L+q.
        Unpack64(a0, a2, out var b0, out var b1); Unpack64(a1, a3, out var b2, out var b3);
        Unpack64(a4, a6, out var b4, out var b5); Unpack64(a5, a7, out var b6, out var b7);
        Unpack64(a8, a10, out var b8, out var b9); Unpack64(a9, a11, out var b10, out var b11);
        Unpack64(a12, a14, out var b12, out var b13); Unpack64(a13, a15, out var b14, out var b15);

        // Stages 3-4 per q: lanes (0,2) / (1,3) of rows 0-7 then merge with rows 8-15.
        Finish(b0, b4, b8, b12, dst, ldd, dstHigh, 0);
        Finish(b1, b5, b9, b13, dst, ldd, dstHigh, 1);
        Finish(b2, b6, b10, b14, dst, ldd, dstHigh, 2);
        Finish(b3, b7, b11, b15, dst, ldd, dstHigh, 3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack64(Vector512<float> x, Vector512<float> y, out Vector512<float> lo, out Vector512<float> hi)
    {
        lo = Avx512F.UnpackLow(x.AsDouble(), y.AsDouble()).AsSingle();
        hi = Avx512F.UnpackHigh(x.AsDouble(), y.AsDouble()).AsSingle();
    }

    /// <summary>Given column-q groups of rows 0-3, 4-7, 8-11, 12-15, writes transposed rows q, 4+q, 8+q, 12+q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish(Vector512<float> g0, Vector512<float> g1, Vector512<float> g2, Vector512<float> g3, float* dst, int ldd, float* dstHigh, int q)
    {
        var lo01 = Avx512F.Shuffle4x128(g0, g1, 0x88); // cols q, 8+q of rows 0-7
        var hi01 = Avx512F.Shuffle4x128(g0, g1, 0xDD); // cols 4+q, 12+q of rows 0-7
        var lo23 = Avx512F.Shuffle4x128(g2, g3, 0x88);
        var hi23 = Avx512F.Shuffle4x128(g2, g3, 0xDD);
        Put(Avx512F.Shuffle4x128(lo01, lo23, 0x88), dst, dstHigh, (long)q * ldd);
        Put(Avx512F.Shuffle4x128(lo01, lo23, 0xDD), dst, dstHigh, (long)(8 + q) * ldd);
        Put(Avx512F.Shuffle4x128(hi01, hi23, 0x88), dst, dstHigh, (long)(4 + q) * ldd);
        Put(Avx512F.Shuffle4x128(hi01, hi23, 0xDD), dst, dstHigh, (long)(12 + q) * ldd);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(Vector512<float> row, float* dst, float* dstHigh, long offset)
    {
        if (dstHigh == null)
        {
            Avx512F.Store(dst + offset, row);
        }
        else
        {
            Avx.Store(dst + offset, row.GetLower());
            Avx.Store(dstHigh + offset, row.GetUpper());
        }
    }
}
