using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SpeedLimit.Kernels;

/// <summary>Which integer micro-kernel <see cref="Int8Gemm"/> runs.</summary>
public enum Int8GemmPath
{
    /// <summary>The fastest path this CPU supports: AvxVnni, else Avx512BW, else Avx2, else Scalar.</summary>
    Auto,
    /// <summary>AVX-VNNI <c>vpdpbusd</c> (uint8 × int8, four products into each int32 lane), 256-bit, 6×16 tile.</summary>
    AvxVnni,
    /// <summary>AVX-512BW <c>vpmaddwd</c> on int16-widened operands (two products into each int32 lane), 512-bit, 8×32 tile.</summary>
    Avx512BW,
    /// <summary>AVX2 <c>vpmaddwd</c> on int16-widened operands, 256-bit, 4×16 tile.</summary>
    Avx2,
    /// <summary>The plain scalar twin <see cref="ScalarInt8Gemm"/> (any CPU).</summary>
    Scalar,
}

/// <summary>
/// Integer matrix product of dynamic int8 quantization: acc(M,N) = Σ_k (x_q[m,k] − zp)·w_q[n,k] in exact
/// int32, x_q uint8 activations with one zero point (<c>DynamicQuantizeLinear</c>), w_q int8 weights stored
/// (N,K) as a linear layer's (out,in), packed once (<see cref="PackedInt8Matrix"/>).
/// </summary>
/// <remarks>
/// Every path is exact (no saturating instruction is used): AVX-VNNI multiplies the raw uint8 activations by
/// the int8 weights and subtracts zp·Σ_k w[n,k] afterwards; the AVX-512BW and AVX2 paths widen (x_q − zp) and
/// w_q to int16 and sum pairs into int32 (|2·255·127| fits), which avoids <c>vpmaddubsw</c>'s int16
/// saturation. .NET 10 exposes no 512-bit VNNI (no <c>Avx512Vnni</c>; <c>Avx10v1</c> has no dot-product
/// instructions), so on Zen 4 (AVX512-VNNI in hardware, <c>AvxVnni.IsSupported</c> false) the AVX-512BW path runs.
/// </remarks>
public static class Int8Gemm
{
    /// <summary>The path <see cref="Int8GemmPath.Auto"/> resolves to on this CPU.</summary>
    public static Int8GemmPath AutoPath { get; } =
        AvxVnni.IsSupported ? Int8GemmPath.AvxVnni :
        Avx512BW.IsSupported ? Int8GemmPath.Avx512BW :
        Avx2.IsSupported ? Int8GemmPath.Avx2 : Int8GemmPath.Scalar;

    public static bool IsSupported(Int8GemmPath path) => path switch
    {
        Int8GemmPath.Auto or Int8GemmPath.Scalar => true,
        Int8GemmPath.AvxVnni => AvxVnni.IsSupported,
        Int8GemmPath.Avx512BW => Avx512BW.IsSupported,
        Int8GemmPath.Avx2 => Avx2.IsSupported,
        _ => false,
    };

    /// <summary>The concrete paths this CPU can run, fastest first.</summary>
    public static IReadOnlyList<Int8GemmPath> SupportedPaths { get; } =
        new[] { Int8GemmPath.AvxVnni, Int8GemmPath.Avx512BW, Int8GemmPath.Avx2, Int8GemmPath.Scalar }.Where(IsSupported).ToArray();

    internal static Int8GemmPath Resolve(Int8GemmPath path)
    {
        if (path == Int8GemmPath.Auto) return AutoPath;
        if (!Enum.IsDefined(path))
            throw new ArgumentException($"Unknown int8 GEMM path {(int)path}; use one of {string.Join(", ", Enum.GetNames<Int8GemmPath>())}.", nameof(path));
        if (!IsSupported(path))
            throw new ArgumentException($"int8 GEMM path {path} is not supported on this CPU; use Auto or one of {string.Join(", ", SupportedPaths)}.", nameof(path));
        return path;
    }

    /// <summary>
    /// acc(M,N) = Σ_k (x[m,k] − zeroPoint)·w[n,k] for x (M,K) uint8 with leading dimension ldx, on the packed
    /// weight's path; acc has leading dimension ldacc.
    /// </summary>
    public static unsafe void Multiply(int m, ReadOnlySpan<byte> x, int ldx, byte zeroPoint, PackedInt8Matrix w,
        Span<int> acc, int ldacc, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(w);
        int n = w.N, k = w.K;
        if (m < 0) throw new ArgumentException($"int8 GEMM rows must be >= 0, got {m}.", nameof(m));
        GemmChecks.ValidateOperand("x", m, k, x.Length, ldx, "ldx");
        GemmChecks.ValidateOperand("acc", m, n, acc.Length, ldacc, "ldacc");
        threads = GemmChecks.Threads(threads);
        if (m == 0 || n == 0) return;
        if (w.Path == Int8GemmPath.Scalar)
        {
            ScalarInt8Gemm.Multiply(m, n, k, x, ldx, zeroPoint, w.Values, acc, ldacc);
            return;
        }
        fixed (byte* px = x)
        fixed (int* pc = acc)
            Int8Driver.Run(new Int8Args(w, m, px, ldx, zeroPoint, pc, ldacc, null, null, 0, null, 0), threads);
        GC.KeepAlive(w); // the kernels read w's pinned storage through pointers (see Gemm.Multiply with a PackedMatrix)
    }

    /// <summary>
    /// The dequantizing form: y(M,N) = float(acc)·multiplier + bias, rounded as two separate steps (multiply, then
    /// add: no fused multiply-add), with acc as <see cref="Multiply"/> computes it; <paramref name="multipliers"/>
    /// holds one value (per tensor) or N (per output), <paramref name="bias"/> N values or none.
    /// </summary>
    public static unsafe void MultiplyDequantize(int m, ReadOnlySpan<byte> x, int ldx, byte zeroPoint, PackedInt8Matrix w,
        ReadOnlySpan<float> multipliers, ReadOnlySpan<float> bias, Span<float> y, int ldy, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(w);
        int n = w.N, k = w.K;
        if (m < 0) throw new ArgumentException($"int8 GEMM rows must be >= 0, got {m}.", nameof(m));
        GemmChecks.ValidateOperand("x", m, k, x.Length, ldx, "ldx");
        GemmChecks.ValidateOperand("y", m, n, y.Length, ldy, "ldy");
        if (multipliers.Length != 1 && multipliers.Length != n)
            throw new ArgumentException($"int8 GEMM needs 1 multiplier (per tensor) or {n} (per output), got {multipliers.Length}.", nameof(multipliers));
        if (!bias.IsEmpty && bias.Length != n) throw new ArgumentException($"int8 GEMM bias has {bias.Length} values, expected {n}.", nameof(bias));
        threads = GemmChecks.Threads(threads);
        if (m == 0 || n == 0) return;
        if (w.Path == Int8GemmPath.Scalar)
        {
            var acc = new int[n];
            for (int i = 0; i < m; i++)
            {
                ScalarInt8Gemm.Multiply(1, n, k, x[(i * ldx)..], ldx, zeroPoint, w.Values, acc, n);
                for (int j = 0; j < n; j++)
                {
                    float v = acc[j] * multipliers[multipliers.Length == 1 ? 0 : j];
                    y[i * ldy + j] = bias.IsEmpty ? v : v + bias[j];
                }
            }
            return;
        }
        fixed (byte* px = x)
        fixed (float* py = y)
        fixed (float* pm = multipliers)
        fixed (float* pb = bias)
            Int8Driver.Run(new Int8Args(w, m, px, ldx, zeroPoint, null, 0, py, pm, multipliers.Length, bias.IsEmpty ? null : pb, ldy), threads);
        GC.KeepAlive(w);
    }
}

/// <summary>The scalar twin of <see cref="Int8Gemm"/>: the integer reference the SIMD kernels are tested against.</summary>
public static class ScalarInt8Gemm
{
    /// <summary>acc(M,N) = Σ_k (x[m,k] − zp)·w[n,k], w stored (N,K) row-major.</summary>
    public static void Multiply(int m, int n, int k, ReadOnlySpan<byte> x, int ldx, byte zeroPoint, ReadOnlySpan<sbyte> w,
        Span<int> acc, int ldacc)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                int sum = 0;
                for (int p = 0; p < k; p++) sum += (x[i * ldx + p] - zeroPoint) * w[j * k + p];
                acc[i * ldacc + j] = sum;
            }
    }
}

/// <summary>
/// An int8 weight (N,K) — a linear layer's (out,in) — packed once for one <see cref="Int8GemmPath"/>: per
/// NR outputs a panel of K/KU steps, each NR int32 slots holding KU consecutive weights of one output (int16
/// pairs, or int8 quads on AVX-VNNI, zero-padded), plus the per-output sums Σ_k w[n,k] the VNNI zero-point
/// correction needs. Bit-exact products whatever the path.
/// </summary>
public sealed unsafe class PackedInt8Matrix
{
    private readonly int[] _storage; // pinned
    private readonly int _offset;

    private PackedInt8Matrix(Int8GemmPath path, sbyte[] values, int n, int k, bool emulated)
    {
        Path = path;
        Emulated = emulated;
        N = n;
        K = k;
        Values = values;
        var (_, nr, ku) = Int8Kernels.Tile(path);
        KSteps = path == Int8GemmPath.Scalar ? 0 : (k + ku - 1) / ku;
        Npad = path == Int8GemmPath.Scalar ? 0 : GemmDriver.RoundUp(n, nr);
        long slots = (long)KSteps * Npad;
        if (slots > Array.MaxLength - 16) throw new ArgumentException($"packed int8 matrix ({n},{k}) is too large for one buffer");
        _storage = GC.AllocateArray<int>((int)slots + 16, pinned: true);
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_storage));
        _offset = (int)(((64 - (address & 63)) & 63) / sizeof(int));
        ColumnSums = GC.AllocateArray<int>(n, pinned: true);
        for (int j = 0; j < n; j++)
        {
            int s = 0;
            for (int p = 0; p < k; p++) s += values[j * k + p];
            ColumnSums[j] = s;
        }
        if (path != Int8GemmPath.Scalar) Pack();
    }

    /// <summary>Packs <paramref name="values"/> (N,K) row-major, in [-128, 127], for <paramref name="path"/> (Auto: this CPU's fastest).</summary>
    public static PackedInt8Matrix Pack(ReadOnlySpan<sbyte> values, int n, int k, Int8GemmPath path = Int8GemmPath.Auto)
    {
        var p = Int8Gemm.Resolve(path);
        return Create(p, values, n, k, emulated: false);
    }

    /// <summary>
    /// A matrix packed for <paramref name="path"/> whose products run a scalar emulation of that path's kernel on the
    /// same packed layout (tests of the VNNI layout and zero-point correction on CPUs without AVX-VNNI).
    /// </summary>
    internal static PackedInt8Matrix PackEmulated(ReadOnlySpan<sbyte> values, int n, int k, Int8GemmPath path)
    {
        if (path is Int8GemmPath.Auto or Int8GemmPath.Scalar || !Enum.IsDefined(path)) throw new ArgumentException($"no kernel to emulate for {path}", nameof(path));
        return Create(path, values, n, k, emulated: true);
    }

    private static PackedInt8Matrix Create(Int8GemmPath path, ReadOnlySpan<sbyte> values, int n, int k, bool emulated)
    {
        if (n < 0 || k < 0) throw new ArgumentException($"int8 matrix dimensions must be >= 0, got n={n}, k={k}.");
        if (values.Length != (long)n * k) throw new ArgumentException($"int8 matrix holds {values.Length} values, ({n},{k}) needs {(long)n * k}.", nameof(values));
        return new PackedInt8Matrix(path, values.ToArray(), n, k, emulated);
    }

    public Int8GemmPath Path { get; }
    /// <summary>Products run <see cref="Int8Kernels.EmulatedTile"/> instead of the path's intrinsics.</summary>
    internal bool Emulated { get; }
    /// <summary>Outputs (rows of the stored weight).</summary>
    public int N { get; }
    /// <summary>Depth (columns of the stored weight).</summary>
    public int K { get; }
    /// <summary>The weight as given, (N,K) row-major.</summary>
    internal sbyte[] Values { get; }
    /// <summary>Σ_k w[n,k] per output (a pinned array: the kernels read it through a pointer).</summary>
    internal int[] ColumnSums { get; }
    internal int KSteps { get; }
    internal int Npad { get; }
    internal int* Data => (int*)Unsafe.AsPointer(ref _storage[_offset]);

    private void Pack()
    {
        var (_, nr, ku) = Int8Kernels.Tile(Path);
        int* d = Data;
        for (int j0 = 0; j0 < Npad; j0 += nr)
            for (int s = 0; s < KSteps; s++)
                for (int j = 0; j < nr; j++)
                {
                    int col = j0 + j, slot = 0;
                    for (int u = 0; u < ku; u++)
                    {
                        int p = s * ku + u;
                        int v = col < N && p < K ? Values[col * K + p] : 0;
                        slot |= ku == 4 ? (v & 0xFF) << (8 * u) : (v & 0xFFFF) << (16 * u);
                    }
                    d[(long)j0 * KSteps + (long)s * nr + j] = slot;
                }
    }
}

/// <summary>One int8 product's operands: int32 output C, or (when Y is set) float output Y = float(acc)·multiplier + bias.</summary>
internal readonly unsafe struct Int8Args(PackedInt8Matrix w, int m, byte* x, int ldx, byte zeroPoint, int* c, int ldc,
    float* y, float* multipliers, int multiplierCount, float* bias, int ldy)
{
    public readonly PackedInt8Matrix W = w;
    public readonly int M = m, Ldx = ldx, Ldc = ldc, Ldy = ldy, MultiplierCount = multiplierCount;
    public readonly byte* X = x;
    public readonly byte ZeroPoint = zeroPoint;
    public readonly int* C = c;
    public readonly float* Y = y, Multipliers = multipliers, Bias = bias;
}

/// <summary>Splits an int8 product over rows (and over outputs when the rows are few) and runs the tiles.</summary>
internal static unsafe class Int8Driver
{
    internal static int MC = 96;

    /// <summary>Smallest share of a call one chunk of C gets (multiply-adds); more chunks than threads balance a shared machine.</summary>
    internal static long MinWorkPerChunk = 4L << 20;

    public static void Run(Int8Args g, int threads)
    {
        var (mr, nr, _) = Int8Kernels.Tile(g.W.Path);
        long work = (long)g.M * g.W.N * g.W.K;
        // Integer products are about twice as fast as fp32 ones: twice the work per thread before splitting.
        int parts = (int)Math.Clamp(work / (2 * GemmDriver.MinWorkPerThread), 1, threads);
        int mTiles = (g.M + mr - 1) / mr, nTiles = (g.W.N + nr - 1) / nr;
        if (parts == 1 || GemmWorkers.Busy || (long)mTiles * nTiles < 2)
        {
            Region(in g, 0, g.M, 0, g.W.N);
            return;
        }
        // Row groups (each packs its own rows; the packed weight is shared); column groups as well when the rows are few.
        int target = (int)Math.Clamp(work / MinWorkPerChunk, parts, 4L * parts);
        int gm = Math.Min(mTiles, target);
        int gn = Math.Min(nTiles, (target + gm - 1) / gm);
        var job = new RegionJob { Args = g, Gm = gm, Gn = gn, MTiles = mTiles, NTiles = nTiles };
        if (!GemmWorkers.TryRun(job, Math.Min(parts, gm * gn))) job.Execute(0);
    }

    /// <summary>acc[i0:i1, j0:j1] on the calling thread.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Region(in Int8Args g, int i0, int i1, int j0, int j1)
    {
        var w = g.W;
        var path = w.Path;
        var (mr, nr, ku) = Int8Kernels.Tile(path);
        int steps = w.KSteps;
        int mcMax = GemmDriver.RoundUp(MC, mr);
        var buffers = Buffers.Get((long)mcMax * steps);
        int* ap = buffers.A;
        int* tile = stackalloc int[Int8Kernels.MaxTile];
        bool vnni = path == Int8GemmPath.AvxVnni;
        for (int ic = i0; ic < i1; ic += mcMax)
        {
            int mc = Math.Min(mcMax, i1 - ic);
            Int8Kernels.PackA(g.X, g.Ldx, ic, mc, w.K, steps, mr, ku, g.ZeroPoint, ap);
            for (int jr = j0; jr < j1; jr += nr)
            {
                int cols = Math.Min(nr, j1 - jr);
                int* bPanel = w.Data + (long)jr * steps;
                for (int ir = 0; ir < mc; ir += mr)
                {
                    int rows = Math.Min(mr, mc - ir);
                    int* aPanel = ap + (long)ir * steps;
                    int* cTile = g.C + (long)(ic + ir) * g.Ldc + jr; // unused (null) when dequantizing
                    if (g.Y != null)
                    {
                        // Dequantizing: the int tile into scratch, then the epilogue into y.
                        if (w.Emulated) Int8Kernels.EmulatedTile(path, aPanel, bPanel, steps, tile, nr);
                        else Int8Kernels.Tile(path, aPanel, bPanel, steps, tile, nr);
                        Int8Kernels.Dequantize(in g, tile, nr, ic + ir, rows, jr, cols, vnni);
                        continue;
                    }
                    bool full = rows == mr && cols == nr;
                    int* dst = full ? cTile : tile;
                    int ldd = full ? g.Ldc : nr;
                    if (w.Emulated) Int8Kernels.EmulatedTile(path, aPanel, bPanel, steps, dst, ldd);
                    else Int8Kernels.Tile(path, aPanel, bPanel, steps, dst, ldd);
                    if (vnni || !full)
                        for (int r = 0; r < rows; r++)
                        {
                            int* src = dst + (long)r * ldd;
                            int* d = cTile + (long)r * g.Ldc;
                            for (int j = 0; j < cols; j++)
                                d[j] = vnni ? src[j] - g.ZeroPoint * w.ColumnSums[jr + j] : src[j];
                        }
                }
            }
        }
    }

    private sealed class RegionJob : IGemmWork
    {
        public Int8Args Args;
        public int Gm, Gn, MTiles, NTiles, Next;

        public void Execute(int part)
        {
            var (mr, nr, _) = Int8Kernels.Tile(Args.W.Path);
            int chunk;
            while ((chunk = Interlocked.Increment(ref Next) - 1) < Gm * Gn)
            {
                int gi = chunk / Gn, gj = chunk % Gn;
                int i0 = (int)((long)MTiles * gi / Gm) * mr, i1 = Math.Min(Args.M, (int)((long)MTiles * (gi + 1) / Gm) * mr);
                int j0 = (int)((long)NTiles * gj / Gn) * nr, j1 = Math.Min(Args.W.N, (int)((long)NTiles * (gj + 1) / Gn) * nr);
                if (i0 < i1 && j0 < j1) Region(in Args, i0, i1, j0, j1);
            }
        }
    }

    private sealed class Buffers
    {
        [ThreadStatic] private static Buffers? t_current;
        public int* A;
        private nuint _ints;

        public static Buffers Get(long ints)
        {
            var b = t_current ??= new Buffers();
            if (b._ints < (nuint)ints)
            {
                if (b.A != null) NativeMemory.AlignedFree(b.A);
                b._ints = (nuint)ints;
                b.A = (int*)NativeMemory.AlignedAlloc(b._ints * sizeof(int), 64);
            }
            return b;
        }

        ~Buffers()
        {
            if (A != null) NativeMemory.AlignedFree(A);
        }
    }
}

/// <summary>The integer micro-kernels and the activation packing they read.</summary>
internal static unsafe class Int8Kernels
{
    public const int MaxTile = 8 * 32;

    /// <summary>(MR rows, NR outputs, KU depth per int32 slot) of a path's register tile.</summary>
    public static (int Mr, int Nr, int Ku) Tile(Int8GemmPath path) => path switch
    {
        Int8GemmPath.AvxVnni => (6, 16, 4),
        Int8GemmPath.Avx512BW => (8, 32, 2),
        Int8GemmPath.Avx2 => (4, 16, 2),
        _ => (1, 1, 1),
    };

    /// <summary>
    /// Packs rows [i0, i0+mc) of x into ⌈mc/mr⌉ panels of <paramref name="steps"/> steps × mr int32 slots: KU
    /// consecutive depths per slot, as uint8 x (KU = 4, AVX-VNNI) or as int16 x − zp (KU = 2). Depths past K
    /// and rows past mc are zero (their products vanish or are discarded).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA(byte* x, int ldx, int i0, int mc, int k, int steps, int mr, int ku, byte zp, int* dst)
    {
        for (int ir = 0; ir < mc; ir += mr)
        {
            int rows = Math.Min(mr, mc - ir);
            int* d = dst + (long)ir * steps;
            for (int r = 0; r < mr; r++)
            {
                int* dr = d + r;
                if (r >= rows)
                {
                    for (int s = 0; s < steps; s++) dr[s * mr] = 0;
                    continue;
                }
                byte* src = x + (long)(i0 + ir + r) * ldx;
                if (ku == 4)
                {
                    int full = k / 4;
                    for (int s = 0; s < full; s++) dr[s * mr] = Unsafe.ReadUnaligned<int>(src + 4 * s);
                    if (full < steps)
                    {
                        int slot = 0;
                        for (int u = 0; 4 * full + u < k; u++) slot |= src[4 * full + u] << (8 * u);
                        dr[full * mr] = slot;
                    }
                }
                else
                {
                    int full = k / 2;
                    for (int s = 0; s < full; s++)
                        dr[s * mr] = ((src[2 * s] - zp) & 0xFFFF) | ((src[2 * s + 1] - zp) << 16);
                    if (full < steps) dr[full * mr] = (src[2 * full] - zp) & 0xFFFF;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Tile(Int8GemmPath path, int* a, int* b, int steps, int* c, int ldc)
    {
        switch (path)
        {
            case Int8GemmPath.AvxVnni: Vnni6x16(a, b, steps, c, ldc); break;
            case Int8GemmPath.Avx512BW: Bw8x32(a, b, steps, c, ldc); break;
            default: Avx2x4x16(a, b, steps, c, ldc); break;
        }
    }

    /// <summary>
    /// y[row0+r, col0+j] = float(tile[r,j] (− zp·Σw for VNNI))·multiplier + bias for the valid rows × cols of a tile:
    /// convert, multiply, add as three roundings, exactly as the scalar form <c>(float)acc * m + b</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(in Int8Args g, int* tile, int ldt, int row0, int rows, int col0, int cols, bool vnni)
    {
        int zp = g.ZeroPoint;
        int* sums = vnni ? (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(g.W.ColumnSums)) + col0 : null; // pinned: see ColumnSums
        bool perTensor = g.MultiplierCount == 1;
        float* mult = perTensor ? g.Multipliers : g.Multipliers + col0;
        float* bias = g.Bias == null ? null : g.Bias + col0;
        for (int r = 0; r < rows; r++)
        {
            int* t = tile + (long)r * ldt;
            float* y = g.Y + (long)(row0 + r) * g.Ldy + col0;
            int j = 0;
            for (; j + 8 <= cols; j += 8)
            {
                var acc = Vector256.Load(t + j);
                if (vnni) acc -= Vector256.Create(zp) * Vector256.Load(sums + j);
                var v = Vector256.ConvertToSingle(acc) * (perTensor ? Vector256.Create(mult[0]) : Vector256.Load(mult + j));
                if (bias != null) v += Vector256.Load(bias + j);
                v.Store(y + j);
            }
            for (; j < cols; j++)
            {
                int acc = vnni ? t[j] - zp * sums[j] : t[j];
                float v = acc * mult[perTensor ? 0 : j];
                y[j] = bias == null ? v : v + bias[j];
            }
        }
    }

    /// <summary>What <see cref="Tile"/> computes on the same packed panels, in scalar code: KU uint8 × int8 (VNNI) or int16 × int16 products per slot.</summary>
    public static void EmulatedTile(Int8GemmPath path, int* a, int* b, int steps, int* c, int ldc)
    {
        var (mr, nr, ku) = Tile(path);
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nr; j++)
            {
                int sum = 0;
                for (int s = 0; s < steps; s++)
                {
                    int x = a[s * mr + r], w = b[s * nr + j];
                    for (int u = 0; u < ku; u++)
                        sum += ku == 4 ? (byte)(x >> (8 * u)) * (sbyte)(w >> (8 * u)) : (short)(x >> (16 * u)) * (short)(w >> (16 * u));
                }
                c[(long)r * ldc + j] = sum;
            }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vnni6x16(int* a, int* b, int steps, int* c, int ldc)
    {
        if (!AvxVnni.IsSupported) throw new PlatformNotSupportedException("the AvxVnni int8 kernel needs AVX-VNNI.");
        var c00 = Vector256<int>.Zero; var c01 = Vector256<int>.Zero;
        var c10 = Vector256<int>.Zero; var c11 = Vector256<int>.Zero;
        var c20 = Vector256<int>.Zero; var c21 = Vector256<int>.Zero;
        var c30 = Vector256<int>.Zero; var c31 = Vector256<int>.Zero;
        var c40 = Vector256<int>.Zero; var c41 = Vector256<int>.Zero;
        var c50 = Vector256<int>.Zero; var c51 = Vector256<int>.Zero;
        for (int s = 0; s < steps; s++)
        {
            var b0 = Avx.LoadAlignedVector256(b).AsSByte();
            var b1 = Avx.LoadAlignedVector256(b + 8).AsSByte();
            var x = Vector256.Create(a[0]).AsByte();
            c00 = AvxVnni.MultiplyWideningAndAdd(c00, x, b0); c01 = AvxVnni.MultiplyWideningAndAdd(c01, x, b1);
            x = Vector256.Create(a[1]).AsByte();
            c10 = AvxVnni.MultiplyWideningAndAdd(c10, x, b0); c11 = AvxVnni.MultiplyWideningAndAdd(c11, x, b1);
            x = Vector256.Create(a[2]).AsByte();
            c20 = AvxVnni.MultiplyWideningAndAdd(c20, x, b0); c21 = AvxVnni.MultiplyWideningAndAdd(c21, x, b1);
            x = Vector256.Create(a[3]).AsByte();
            c30 = AvxVnni.MultiplyWideningAndAdd(c30, x, b0); c31 = AvxVnni.MultiplyWideningAndAdd(c31, x, b1);
            x = Vector256.Create(a[4]).AsByte();
            c40 = AvxVnni.MultiplyWideningAndAdd(c40, x, b0); c41 = AvxVnni.MultiplyWideningAndAdd(c41, x, b1);
            x = Vector256.Create(a[5]).AsByte();
            c50 = AvxVnni.MultiplyWideningAndAdd(c50, x, b0); c51 = AvxVnni.MultiplyWideningAndAdd(c51, x, b1);
            a += 6;
            b += 16;
        }
        Store(c, c00, c01); c += ldc;
        Store(c, c10, c11); c += ldc;
        Store(c, c20, c21); c += ldc;
        Store(c, c30, c31); c += ldc;
        Store(c, c40, c41); c += ldc;
        Store(c, c50, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Bw8x32(int* a, int* b, int steps, int* c, int ldc)
    {
        if (!Avx512BW.IsSupported) throw new PlatformNotSupportedException("the Avx512BW int8 kernel needs AVX-512BW.");
        var c00 = Vector512<int>.Zero; var c01 = Vector512<int>.Zero;
        var c10 = Vector512<int>.Zero; var c11 = Vector512<int>.Zero;
        var c20 = Vector512<int>.Zero; var c21 = Vector512<int>.Zero;
        var c30 = Vector512<int>.Zero; var c31 = Vector512<int>.Zero;
        var c40 = Vector512<int>.Zero; var c41 = Vector512<int>.Zero;
        var c50 = Vector512<int>.Zero; var c51 = Vector512<int>.Zero;
        var c60 = Vector512<int>.Zero; var c61 = Vector512<int>.Zero;
        var c70 = Vector512<int>.Zero; var c71 = Vector512<int>.Zero;
        for (int s = 0; s < steps; s++)
        {
            var b0 = Avx512F.LoadAlignedVector512(b).AsInt16();
            var b1 = Avx512F.LoadAlignedVector512(b + 16).AsInt16();
            var x = Vector512.Create(a[0]).AsInt16();
            c00 += Avx512BW.MultiplyAddAdjacent(x, b0); c01 += Avx512BW.MultiplyAddAdjacent(x, b1);
            x = Vector512.Create(a[1]).AsInt16();
            c10 += Avx512BW.MultiplyAddAdjacent(x, b0); c11 += Avx512BW.MultiplyAddAdjacent(x, b1);
            x = Vector512.Create(a[2]).AsInt16();
            c20 += Avx512BW.MultiplyAddAdjacent(x, b0); c21 += Avx512BW.MultiplyAddAdjacent(x, b1);
            x = Vector512.Create(a[3]).AsInt16();
            c30 += Avx512BW.MultiplyAddAdjacent(x, b0); c31 += Avx512BW.MultiplyAddAdjacent(x, b1);
            x = Vector512.Create(a[4]).AsInt16();
            c40 += Avx512BW.MultiplyAddAdjacent(x, b0); c41 += Avx512BW.MultiplyAddAdjacent(x, b1);
            x = Vector512.Create(a[5]).AsInt16();
            c50 += Avx512BW.MultiplyAddAdjacent(x, b0); c51 += Avx512BW.MultiplyAddAdjacent(x, b1);
            x = Vector512.Create(a[6]).AsInt16();
            c60 += Avx512BW.MultiplyAddAdjacent(x, b0); c61 += Avx512BW.MultiplyAddAdjacent(x, b1);
            x = Vector512.Create(a[7]).AsInt16();
            c70 += Avx512BW.MultiplyAddAdjacent(x, b0); c71 += Avx512BW.MultiplyAddAdjacent(x, b1);
            a += 8;
            b += 32;
        }
        Store(c, c00, c01); c += ldc;
        Store(c, c10, c11); c += ldc;
        Store(c, c20, c21); c += ldc;
        Store(c, c30, c31); c += ldc;
        Store(c, c40, c41); c += ldc;
        Store(c, c50, c51); c += ldc;
        Store(c, c60, c61); c += ldc;
        Store(c, c70, c71);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2x4x16(int* a, int* b, int steps, int* c, int ldc)
    {
        if (!Avx2.IsSupported) throw new PlatformNotSupportedException("the Avx2 int8 kernel needs AVX2.");
        var c00 = Vector256<int>.Zero; var c01 = Vector256<int>.Zero;
        var c10 = Vector256<int>.Zero; var c11 = Vector256<int>.Zero;
        var c20 = Vector256<int>.Zero; var c21 = Vector256<int>.Zero;
        var c30 = Vector256<int>.Zero; var c31 = Vector256<int>.Zero;
        for (int s = 0; s < steps; s++)
        {
            var b0 = Avx.LoadAlignedVector256(b).AsInt16();
            var b1 = Avx.LoadAlignedVector256(b + 8).AsInt16();
            var x = Vector256.Create(a[0]).AsInt16();
            c00 = Avx2.Add(c00, Avx2.MultiplyAddAdjacent(x, b0)); c01 = Avx2.Add(c01, Avx2.MultiplyAddAdjacent(x, b1));
            x = Vector256.Create(a[1]).AsInt16();
            c10 = Avx2.Add(c10, Avx2.MultiplyAddAdjacent(x, b0)); c11 = Avx2.Add(c11, Avx2.MultiplyAddAdjacent(x, b1));
            x = Vector256.Create(a[2]).AsInt16();
            c20 = Avx2.Add(c20, Avx2.MultiplyAddAdjacent(x, b0)); c21 = Avx2.Add(c21, Avx2.MultiplyAddAdjacent(x, b1));
            x = Vector256.Create(a[3]).AsInt16();
            c30 = Avx2.Add(c30, Avx2.MultiplyAddAdjacent(x, b0)); c31 = Avx2.Add(c31, Avx2.MultiplyAddAdjacent(x, b1));
            a += 4;
            b += 16;
        }
        Store(c, c00, c01); c += ldc;
        Store(c, c10, c11); c += ldc;
        Store(c, c20, c21); c += ldc;
        Store(c, c30, c31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(int* c, Vector256<int> v0, Vector256<int> v1)
    {
        v0.Store(c);
        v1.Store(c + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(int* c, Vector512<int> v0, Vector512<int> v1)
    {
        v0.Store(c);
        v1.Store(c + 16);
    }
}
