using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace SpeedLimit.Kernels;

/// <summary>One GEMM call's operands as raw pointers (pinned by the caller for the whole call).</summary>
internal readonly unsafe struct GemmArgs(GemmPath path, bool transA, bool transB, int m, int n, int k,
    float* a, int lda, float* b, int ldb, float* c, int ldc, bool accumulate)
{
    public readonly GemmPath Path = path;
    public readonly bool TransA = transA, TransB = transB, Accumulate = accumulate;
    public readonly int M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc;
    public readonly float* A = a, B = b, C = c;

    public GemmArgs Offset(long da, long db, long dc) =>
        new(Path, TransA, TransB, M, N, K, A + da, Lda, B + db, Ldb, C + dc, Ldc, Accumulate);
}

/// <summary>
/// The blocked GEMM driver: splits C between threads, then per thread loops
/// NC columns → KC depth (pack B) → MC rows (pack A) → MR×NR register tiles.
/// </summary>
internal static unsafe class GemmDriver
{
    // Cache blocking (floats). The micro-kernel streams an MR×KC A micro-panel and a KC×NR B
    // micro-panel; the packed A block (MC×KC, ~150 KB) stays in the 1 MiB L2 of Zen 4 across the NC
    // columns, the packed B block (KC×NC) is reused by every MC row block. Chosen by measurement
    // (bench section gemm-tune); settable for tuning.
    internal static int KC = 384;
    internal static int MC = 96;
    internal static int NC = 1024;

    /// <summary>Below this many multiply-adds per thread, extra threads cost more than they save.</summary>
    internal static long MinWorkPerThread = 1L << 20;

    /// <summary>Narrowest slice of the split dimension one parallel chunk gets (keeps repacking of the other operand small).</summary>
    internal static int MinChunk = 384;

    internal static int TileRows(GemmPath path) => path == GemmPath.Vector512 ? GemmKernels.Mr512 : GemmKernels.Mr256;
    internal static int TileCols(GemmPath path) => path == GemmPath.Vector512 ? GemmKernels.Nr512 : GemmKernels.Nr256;

    public static void Run(in GemmArgs g, int threads)
    {
        if (g.K == 0)
        {
            ZeroOrKeep(in g);
            return;
        }
        int mr = TileRows(g.Path), nr = TileCols(g.Path);
        long work = (long)g.M * g.N * g.K;
        int parts = (int)Math.Clamp(work / MinWorkPerThread, 1, threads);
        if (parts > 1)
        {
            // Split the dimension whose split duplicates the smaller packing: splitting N makes
            // every thread pack all of A (M×K), splitting M makes every thread pack all of B (K×N).
            bool splitN = g.M <= g.N;
            int units = splitN ? (g.N + nr - 1) / nr : (g.M + mr - 1) / mr;
            parts = Math.Min(parts, units);
            if (parts > 1)
            {
                var job = RegionJob.Rent();
                job.Args = g;
                job.SplitN = splitN;
                job.Units = units;
                // More chunks than threads, handed out first come first served, so a thread that
                // loses its core for a while (a shared machine) does not hold the others up. Each
                // chunk repacks the other operand, so chunks stay at least MinChunk wide.
                int tile = splitN ? nr : mr;
                int chunks = Math.Clamp(units * tile / MinChunk, parts, 4 * parts);
                job.Chunks = Math.Min(chunks, units);
                job.Next = 0;
                if (GemmWorkers.TryRun(job, parts))
                {
                    RegionJob.Return(job);
                    return;
                }
                RegionJob.Return(job);
            }
        }
        RunRegion(in g, 0, g.M, 0, g.N);
    }

    public static void RunBatched(in GemmArgs g, int count, int strideA, int strideB, int strideC, int threads)
    {
        long work = (long)g.M * g.N * Math.Max(g.K, 1);
        int parts = (int)Math.Clamp(work * count / MinWorkPerThread, 1, Math.Min(threads, count));
        // Items go to threads whole when they are small (one head's attention product) or plentiful;
        // a few large items load-balance better split inside each one.
        bool itemsSmall = work < 2 * MinWorkPerThread;
        if (parts > 1 && (itemsSmall || count >= 4 * threads))
        {
            var job = BatchJob.Rent();
            job.Args = g;
            job.Count = count;
            job.Next = 0;
            job.StrideA = strideA;
            job.StrideB = strideB;
            job.StrideC = strideC;
            bool ran = GemmWorkers.TryRun(job, parts);
            BatchJob.Return(job);
            if (ran) return;
            threads = 1;
        }
        // Few large items: parallelize inside each one instead.
        for (int i = 0; i < count; i++)
            Run(g.Offset((long)i * strideA, (long)i * strideB, (long)i * strideC), threads);
    }

    private static void ZeroOrKeep(in GemmArgs g)
    {
        if (g.Accumulate) return;
        for (int i = 0; i < g.M; i++) new Span<float>(g.C + (long)i * g.Ldc, g.N).Clear();
    }

    /// <summary>Computes C[i0:i1, j0:j1] on the calling thread.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops; skip tier-0/OSR code on the first calls
    public static void RunRegion(in GemmArgs g, int i0, int i1, int j0, int j1)
    {
        if (g.K == 0)
        {
            if (!g.Accumulate)
                for (int i = i0; i < i1; i++) new Span<float>(g.C + (long)i * g.Ldc + j0, j1 - j0).Clear();
            return;
        }
        var path = g.Path;
        int mr = TileRows(path), nr = TileCols(path);
        int kcLimit = RoundUp(KC, 16), mcMax = MC, ncMax = NC;
        var buffers = PackBuffers.Get(RoundUp(mcMax, mr) * kcLimit, RoundUp(ncMax, nr) * kcLimit);
        // Equal depth blocks (multiples of 16, the transpose width) rather than KC plus a thin remainder.
        int kBlocks = (g.K + kcLimit - 1) / kcLimit;
        int kcMax = Math.Min(kcLimit, RoundUp((g.K + kBlocks - 1) / kBlocks, 16));
        float* ap = buffers.A, bp = buffers.B;
        float* tile = stackalloc float[GemmKernels.MaxTile];
        int ldc = g.Ldc;

        for (int jc = j0; jc < j1; jc += ncMax)
        {
            int nc = Math.Min(ncMax, j1 - jc);
            for (int pc = 0; pc < g.K; pc += kcMax)
            {
                int kc = Math.Min(kcMax, g.K - pc);
                bool acc = g.Accumulate || pc > 0;
                GemmPack.PackB(g.B, g.Ldb, g.TransB, pc, kc, jc, nc, nr, bp, path);
                for (int ic = i0; ic < i1; ic += mcMax)
                {
                    int mc = Math.Min(mcMax, i1 - ic);
                    GemmPack.PackA(g.A, g.Lda, g.TransA, ic, mc, pc, kc, mr, ap, path);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        int cols = Math.Min(nr, nc - jr);
                        float* bPanel = bp + (long)jr * kc;
                        for (int ir = 0; ir < mc; ir += mr)
                        {
                            int rows = Math.Min(mr, mc - ir);
                            float* aPanel = ap + (long)ir * kc;
                            float* cTile = g.C + (long)(ic + ir) * ldc + jc + jr;
                            if (rows == mr && cols == nr)
                            {
                                GemmKernels.Tile(path, aPanel, bPanel, kc, cTile, ldc, acc);
                            }
                            else
                            {
                                // Edge tile: into scratch, then copy the valid part.
                                if (cols <= 16) GemmKernels.NarrowTile(path, aPanel, bPanel, kc, tile, nr);
                                else GemmKernels.Tile(path, aPanel, bPanel, kc, tile, nr, false);
                                for (int r = 0; r < rows; r++)
                                {
                                    float* src = tile + r * nr;
                                    float* dst = cTile + (long)r * ldc;
                                    if (acc)
                                        for (int j = 0; j < cols; j++) dst[j] += src[j];
                                    else
                                        for (int j = 0; j < cols; j++) dst[j] = src[j];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    internal static int RoundUp(int x, int multiple) => (x + multiple - 1) / multiple * multiple;

    /// <summary>Per-thread, 64-byte-aligned pack buffers, grown on demand and kept for the thread's life.</summary>
    private sealed class PackBuffers
    {
        [ThreadStatic] private static PackBuffers? t_current;
        public float* A, B;
        private nuint _aFloats, _bFloats;

        public static PackBuffers Get(int aFloats, int bFloats)
        {
            var buf = t_current ??= new PackBuffers();
            if (buf._aFloats < (nuint)aFloats) buf.A = Grow(buf.A, ref buf._aFloats, aFloats);
            if (buf._bFloats < (nuint)bFloats) buf.B = Grow(buf.B, ref buf._bFloats, bFloats);
            return buf;
        }

        private static float* Grow(float* old, ref nuint size, int floats)
        {
            if (old != null) NativeMemory.AlignedFree(old);
            size = (nuint)floats;
            return (float*)NativeMemory.AlignedAlloc(size * sizeof(float), 64);
        }

        ~PackBuffers()
        {
            if (A != null) NativeMemory.AlignedFree(A);
            if (B != null) NativeMemory.AlignedFree(B);
        }
    }

    /// <summary>Slices of C (contiguous ranges of MR-row or NR-column tiles) handed out to the parts as chunks.</summary>
    private sealed class RegionJob : IGemmWork
    {
        private static RegionJob? s_spare;
        public GemmArgs Args;
        public bool SplitN;
        public int Units, Chunks, Next;

        public static RegionJob Rent() => Interlocked.Exchange(ref s_spare, null) ?? new RegionJob();
        public static void Return(RegionJob job) => s_spare = job;

        public void Execute(int part)
        {
            ref readonly var g = ref Args;
            int chunk;
            while ((chunk = Interlocked.Increment(ref Next) - 1) < Chunks)
            {
                int u0 = (int)((long)Units * chunk / Chunks), u1 = (int)((long)Units * (chunk + 1) / Chunks);
                if (SplitN)
                {
                    int nr = TileCols(g.Path);
                    RunRegion(in g, 0, g.M, u0 * nr, Math.Min(g.N, u1 * nr));
                }
                else
                {
                    int mr = TileRows(g.Path);
                    RunRegion(in g, u0 * mr, Math.Min(g.M, u1 * mr), 0, g.N);
                }
            }
        }
    }

    /// <summary>Batch items handed out one at a time, each a whole single-threaded GEMM.</summary>
    private sealed class BatchJob : IGemmWork
    {
        private static BatchJob? s_spare;
        public GemmArgs Args;
        public int Count, Next, StrideA, StrideB, StrideC;

        public static BatchJob Rent() => Interlocked.Exchange(ref s_spare, null) ?? new BatchJob();
        public static void Return(BatchJob job) => s_spare = job;

        public void Execute(int part)
        {
            // Items first come first served (an item is one small GEMM; the counter costs far less).
            int i;
            while ((i = Interlocked.Increment(ref Next) - 1) < Count)
            {
                var item = Args.Offset((long)i * StrideA, (long)i * StrideB, (long)i * StrideC);
                RunRegion(in item, 0, item.M, 0, item.N);
            }
        }
    }
}

/// <summary>
/// Packing of A and B into the micro-panel layouts the micro-kernels stream. Vector512 instructions
/// are used only on the Vector512 path, so a forced Vector256 path runs what an AVX2-only CPU runs.
/// </summary>
internal static unsafe class GemmPack
{
    /// <summary>
    /// Packs op(A)[i0:i0+mc, p0:p0+kc] into ⌈mc/mr⌉ panels, each kc steps of mr floats (row r of the
    /// panel at offset p·mr + r); rows past mc are zero so edge tiles compute harmless zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA(float* a, int lda, bool transA, int i0, int mc, int p0, int kc, int mr, float* dst, GemmPath path)
    {
        int ir = 0;
        if (!transA && mr == 8 && path == GemmPath.Vector512 && GemmKernels.CanTranspose16)
        {
            // Two full 8-row panels at a time through a 16×16 register transpose; the k tail below.
            int kFull = kc / 16 * 16;
            for (; ir + 16 <= mc; ir += 16)
            {
                float* src = a + (long)(i0 + ir) * lda + p0;
                float* d0 = dst + (long)ir * kc, d1 = d0 + 8L * kc;
                for (int p = 0; p < kFull; p += 16)
                    GemmKernels.Transpose16(src + p, lda, d0 + p * 8, 8, d1 + p * 8);
                for (int r = 0; r < 16; r++)
                {
                    float* s = src + (long)r * lda;
                    float* d = (r < 8 ? d0 + r : d1 + r - 8);
                    for (int p = kFull; p < kc; p++) d[p * 8] = s[p];
                }
            }
        }
        for (; ir < mc; ir += mr)
        {
            int rows = Math.Min(mr, mc - ir);
            float* d = dst + (long)ir * kc;
            if (transA)
            {
                // Stored (K,M): each k step is already mr contiguous floats.
                float* src = a + (long)p0 * lda + i0 + ir;
                if (rows == 8 && mr == 8 && Avx.IsSupported) // only the Vector512 path has mr == 8
                {
                    for (int p = 0; p < kc; p++, src += lda, d += 8) Avx.Store(d, Avx.LoadVector256(src));
                    continue;
                }
                for (int p = 0; p < kc; p++, src += lda, d += mr)
                {
                    int r = 0;
                    for (; r < rows; r++) d[r] = src[r];
                    for (; r < mr; r++) d[r] = 0;
                }
            }
            else
            {
                // Stored (M,K): transpose mr rows into k-major order.
                for (int r = 0; r < rows; r++)
                {
                    float* src = a + (long)(i0 + ir + r) * lda + p0;
                    float* dr = d + r;
                    for (int p = 0; p < kc; p++) dr[p * mr] = src[p];
                }
                for (int r = rows; r < mr; r++)
                    for (int p = 0; p < kc; p++) d[p * mr + r] = 0;
            }
        }
    }

    /// <summary>
    /// Packs op(B)[p0:p0+kc, j0:j0+nc] into ⌈nc/nr⌉ panels, each kc steps of nr floats; columns past
    /// nc are zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(float* b, int ldb, bool transB, int p0, int kc, int j0, int nc, int nr, float* dst, GemmPath path)
    {
        if (!transB)
        {
            // Stored (K,N): walk each row of B once, left to right (one sequential stream the hardware
            // prefetcher follows), dealing nr-wide pieces out to the panels.
            int full = nc / nr * nr;
            for (int p = 0; p < kc; p++)
            {
                float* src = b + (long)(p0 + p) * ldb + j0;
                float* d = dst + (long)p * nr;
                for (int jr = 0; jr < full; jr += nr)
                    GemmKernels.CopyRow(src + jr, d + (long)jr * kc, nr, path);
                if (full < nc)
                {
                    float* e = d + (long)full * kc;
                    int j = 0;
                    for (; j < nc - full; j++) e[j] = src[full + j];
                    for (; j < nr; j++) e[j] = 0;
                }
            }
            return;
        }
        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            float* d = dst + (long)jr * kc;
            // Stored (N,K): transpose; 16×16 blocks go through registers on the Vector512 path.
            float* src = b + (long)(j0 + jr) * ldb + p0;
            int p = 0;
            if (cols == nr && nr % 16 == 0 && path == GemmPath.Vector512 && GemmKernels.CanTranspose16)
            {
                int kFull = kc / 16 * 16;
                // 16 source rows at a time (16 read streams), prefetching 4 lines ahead in each.
                for (int j = 0; j < nr; j += 16)
                {
                    float* rows = src + (long)j * ldb;
                    for (int q = 0; q < kFull; q += 16)
                    {
                        if (q + 64 < kc)
                            for (int r = 0; r < 16; r++) Sse.Prefetch0(rows + (long)r * ldb + q + 64);
                        GemmKernels.Transpose16(rows + q, ldb, d + (long)q * nr + j, nr);
                    }
                }
                p = kFull;
            }
            for (int j = 0; j < cols; j++)
            {
                float* s = src + (long)j * ldb;
                for (int q = p; q < kc; q++) d[q * nr + j] = s[q];
            }
            for (int j = cols; j < nr; j++)
                for (int q = p; q < kc; q++) d[q * nr + j] = 0;
        }
    }
}
