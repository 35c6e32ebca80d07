using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace SpeedLimit.Kernels;

/// <summary>One GEMM call's operands as raw pointers (pinned by the caller for the whole call).</summary>
/// <remarks><paramref name="kc"/>: the depth block, when a part of a longer product must keep that product's blocking (0: <see cref="GemmDriver.DepthBlock"/> of K).</remarks>
internal readonly unsafe struct GemmArgs(GemmPath path, bool transA, bool transB, int m, int n, int k,
    float* a, int lda, float* b, int ldb, float* c, int ldc, bool accumulate, int kc = 0)
{
    public readonly GemmPath Path = path;
    public readonly bool TransA = transA, TransB = transB, Accumulate = accumulate;
    public readonly int M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc;
    public readonly int Kc = kc > 0 ? kc : GemmDriver.DepthBlock(Math.Max(1, k));
    public readonly float* A = a, B = b, C = c;

    public GemmArgs Offset(long da, long db, long dc) =>
        new(Path, TransA, TransB, M, N, K, A + da, Lda, B + db, Ldb, C + dc, Ldc, Accumulate, Kc);

    /// <summary>Depth [p0, p0 + k) of this product into <paramref name="c"/> (row stride <paramref name="ldc"/>), with this product's depth block.</summary>
    public GemmArgs Depth(int p0, int k, float* c, int ldc, bool accumulate) =>
        new(Path, TransA, TransB, M, N, k, A + (TransA ? (long)p0 * Lda : p0), Lda, B + (TransB ? p0 : (long)p0 * Ldb), Ldb,
            c, ldc, accumulate, Kc);
}

/// <summary>
/// op(B) packed for the micro-kernels, covering columns [J0, J0 + N) of the whole depth K: per depth
/// block (starting at pc, kc = min(Kc, K − pc) deep) Npad/NR micro-panels of kc×NR floats, the panel
/// of column j (J0 plus a multiple of NR) at <c>Data + pc·Npad + (j − J0)·kc</c>. Columns past N are zero.
/// <paramref name="prepacked"/>: packed before the call (<see cref="PackedMatrix"/>), so likely out of cache, rather than
/// by this call just now.
/// </summary>
internal readonly unsafe struct PackedPanels(float* data, int k, int n, int npad, int kc, int j0, bool prepacked = false)
{
    public readonly float* Data = data;
    public readonly int K = k, N = n, Npad = npad, Kc = kc, J0 = j0;
    public readonly bool Prepacked = prepacked;

    public static long Floats(int k, int n, int nr) => (long)k * GemmDriver.RoundUp(n, nr);

    public float* Panel(int pc, int kc, int j) => Data + (long)pc * Npad + (long)(j - J0) * kc;
}

/// <summary>How one call is split: <see cref="Parts"/> threads over a Gm×Gn grid of C (row groups × column
/// groups), each cell once per depth block when <see cref="KSplit"/> is set.</summary>
internal readonly record struct GemmPlan(int Parts, int Gm, int Gn, bool KSplit)
{
    public static readonly GemmPlan Single = new(1, 1, 1, false);
    public int Chunks(int kBlocks) => Gm * Gn * (KSplit ? kBlocks : 1);
}

/// <summary>
/// The blocked GEMM driver. One thread: NC columns → KC depth (pack B) → MC rows (pack A) → MR×NR
/// register tiles (<see cref="RunRegion"/>). Several threads on a few rows (M ≤ 2·MC, one sequence): runs of
/// columns per chunk, each packing its own part of B (<see cref="RunColumnChunks"/>). Several threads on
/// more rows: B is packed once, shared, by all threads together (no thread repacks what another packed),
/// then C is split over a grid of row and column groups — and over depth blocks when C has fewer tiles than threads — handed out first come first served
/// (<see cref="RunShared"/>). A caller that packed B itself (<see cref="PackedMatrix"/>) skips the packing.
/// Every element of C is computed by the same operations in the same order whatever the thread count,
/// the split or whether B came pre-packed, so results are bit-identical across all of them.
/// </summary>
internal static unsafe class GemmDriver
{
    // Cache blocking (floats). The micro-kernel streams an MR×KC A micro-panel and a KC×NR B
    // micro-panel; the packed A block (MC×KC) stays in L2 across the NC columns, the packed B block
    // (KC×NC) is reused by every MC row block. Chosen by measurement; settable for tuning.
    // KC: each depth block reads and writes every element of C once more, so deep blocks save passes over C
    // (from L3 or memory on a large product) at the price of a B micro-panel (KC×NR, 128 KiB at 1024) that
    // streams from L2 instead of sitting in L1. On the Zen 5 VM, in interleaved runs against 384, 1024 was
    // 2–9 % faster on one thread and 3–10 % on two for products with K > 384 (128 and 4096 rows, NN, NT, TN),
    // and 2048 no better; the Vector256 kernel was indifferent (docs/benchmarks.md).
    internal static int KC = 1024;
    internal static int MC = 96;
    internal static int NC = 1024;

    /// <summary>Below this many multiply-adds per thread, extra threads cost more than they save.</summary>
    internal static long MinWorkPerThread = 1L << 20;

    /// <summary>Chunks of C per thread in a split over rows and columns (<see cref="Plan"/>); a switch for the tuning bench.</summary>
    internal static int ChunksPerThread = 1;

    /// <summary>Largest shared packed B (floats, 16 MiB); wider products are packed and computed in column slabs of this size.</summary>
    internal static long MaxSharedPackFloats = 4L << 20;

    internal static int TileRows(GemmPath path) => path == GemmPath.Vector512 ? GemmKernels.Mr512 : GemmKernels.Mr256;
    internal static int TileCols(GemmPath path) => path == GemmPath.Vector512 ? GemmKernels.Nr512 : GemmKernels.Nr256;

    /// <summary>
    /// The depth block of a K-deep product: equal blocks (multiples of 16, the transpose width) rather than KC plus a thin
    /// remainder, and an even number of them from two up, so the two depth groups of a long product (<see cref="DepthGroups"/>)
    /// are as deep as each other (11 blocks of K = 4096 gave the threads 5 and 6).
    /// </summary>
    internal static int DepthBlock(int k)
    {
        int limit = RoundUp(KC, 16);
        int blocks = (k + limit - 1) / limit;
        if (blocks < 2) return Block(blocks);
        blocks += blocks & 1;
        int kc = Block(blocks);
        // Rounding the block up to 16 can leave one block fewer, an odd count again: then two more blocks.
        while ((k + kc - 1) / kc % 2 == 1 && blocks < k / 16) kc = Block(blocks += 2);
        return kc;

        int Block(int count) => Math.Max(16, Math.Min(limit, RoundUp((k + count - 1) / count, 16)));
    }

    public static void Run(in GemmArgs g, int threads)
    {
        if (g.K == 0)
        {
            ZeroOrKeep(in g);
            return;
        }
        int groups = DepthGroups(g.M, g.N, g.K, g.Kc);
        if (groups > 1) RunDepthGroups(in g, null, groups, threads);
        else RunWhole(in g, threads);
    }

    /// <summary>
    /// In how many groups of depth blocks a product is summed: two when the depth is long for the size of C (a weight
    /// gradient, K = the batch's tokens), else one. Each group is a product of its own into its own target (the first
    /// into C), the others added to C in group order at the end; threads then take whole groups, each packing its own
    /// A and B once, where a split of so few tiles of C packed the same A in every column group and left every chunk
    /// a thin slice. The groups depend on the shape alone, so results stay the same on any number of threads.
    /// </summary>
    /// <remarks>
    /// Long: at least twice the larger side of C, or at least that side when op(B) is too large to pack once and share
    /// (<see cref="MaxSharedPackFloats"/>: the shared path then packs it in column slabs and packs A again for each;
    /// 768×3072×4096 on two threads went from 350–360 to 380–390 GFLOP/s, while 3072×768×4096, whose B is shared whole,
    /// was 3 % slower in groups). C at most <see cref="MaxGroupScratchFloats"/>, the size of the second group's scratch.
    /// </remarks>
    internal static int DepthGroups(int m, int n, int k, int kc)
    {
        if (!SplitLongDepth || m <= 2 * MC || k <= kc || (long)m * n > MaxGroupScratchFloats) return 1;
        int side = Math.Max(m, n);
        bool longDepth = k >= 2L * side || (k >= side && (long)k * n > MaxSharedPackFloats);
        return longDepth ? 2 : 1;
    }

    /// <summary>Largest C (floats, 16 MiB) summed in depth groups: the second group's scratch is as large as C.</summary>
    internal static long MaxGroupScratchFloats = 4L << 20;

    /// <summary>Whether long products are summed in depth groups (<see cref="DepthGroups"/>); a switch for the tuning bench.</summary>
    internal static bool SplitLongDepth = true;

    /// <summary>
    /// Computes a product in <paramref name="groups"/> groups of whole depth blocks: group q into C (q = 0) or into its
    /// scratch, whole groups to threads (or one after another, each on all threads), then C += scratch in group order.
    /// <paramref name="panels"/>: op(B) packed beforehand (all of K), or null to pack per group.
    /// </summary>
    private static void RunDepthGroups(in GemmArgs g, PackedPanels? panels, int groups, int threads)
    {
        float* scratch = SharedBuffers.ForCaller().GroupScratch((groups - 1) * (long)g.M * g.N);
        var job = DepthGroupJob.Rent();
        job.Args = g;
        job.Groups = groups;
        job.Panels = panels;
        job.Scratch = scratch;
        job.Next = 0;
        int parts = Math.Min(threads, groups);
        if (parts > 1 && !GemmWorkers.Busy) RunJob(job, parts);
        else
            for (int q = 0; q < groups; q++) job.RunGroup(q, threads);
        DepthGroupJob.Return(job);
        AddInOrder(g.C, g.Ldc, scratch, groups - 1, g.M, g.N, threads);
    }

    /// <summary>
    /// C (rows × cols, row stride <paramref name="ldc"/>) += the <paramref name="count"/> row-major rows × cols items at
    /// <paramref name="scratch"/>, item after item, rows split over threads: every element gets its additions in item
    /// order, as one thread adds them, so a sum split over depth has the bits of the sum formed block after block.
    /// </summary>
    private static void AddInOrder(float* c, int ldc, float* scratch, int count, int rows, int cols, int threads)
    {
        if (count <= 0) return;
        nint cAt = (nint)c, scratchAt = (nint)scratch; // pointers for the parallel body
        long item = (long)rows * cols;
        EngineParallel.SplitRows(rows, cols, threads, (r0, r1) =>
        {
            for (int q = 0; q < count; q++)
                for (int i = r0; i < r1; i++)
                {
                    var dst = new Span<float>((float*)cAt + (long)i * ldc, cols);
                    TensorPrimitives.Add(dst, new ReadOnlySpan<float>((float*)scratchAt + q * item + (long)i * cols, cols), dst);
                }
        });
    }

    /// <summary>A product as one sum over all its depth (no depth groups), on up to <paramref name="threads"/> threads.</summary>
    private static void RunWhole(in GemmArgs g, int threads)
    {
        var plan = Plan(g.M, g.N, g.K, g.Path, threads);
        if (plan.Parts == 1 || GemmWorkers.Busy)
        {
            RunRegion(in g, 0, g.M, 0, g.N);
            return;
        }
        if (!plan.KSplit && (g.M <= 2 * MC || g.M <= ColumnChunkMaxRows && ReadsAInPlace(in g)))
        {
            // A few rows (one sequence), or up to a thousand whose A the kernel reads in place (a fine-tuning batch
            // of short sentences): every thread takes all of them and a run of columns, packing that part of B
            // itself — each element of B is still packed once, A is not packed at all, and the call has one
            // synchronisation point instead of two (measured faster at M = 128 when the two threads share a core,
            // and 7–20 % faster at M = 446 on two cores; even at 2048 rows, slower at 4096).
            RunColumnChunks(in g, plan.Parts);
            return;
        }
        int nr = TileCols(g.Path), kc = g.Kc;
        // Column slabs bound the shared buffer (the MLM decoder's B is vocabulary-wide).
        int slab = (int)Math.Max(NC, MaxSharedPackFloats / g.K / nr * nr);
        var buffers = SharedBuffers.ForCaller();
        for (int j0 = 0; j0 < g.N; j0 += slab)
        {
            int n = Math.Min(slab, g.N - j0);
            float* data = buffers.Panels(PackedPanels.Floats(g.K, n, nr));
            var panels = new PackedPanels(data, g.K, n, RoundUp(n, nr), kc, j0);
            PackShared(g.B, g.Ldb, g.TransB, g.Path, in panels, plan.Parts);
            var slabPlan = j0 == 0 && n == g.N ? plan : Plan(g.M, n, g.K, g.Path, threads);
            RunShared(in g, in panels, slabPlan, buffers);
        }
    }

    /// <summary>All rows × runs of whole NR tiles of columns, one run (at least MinChunkColumns wide) per chunk, up to four chunks a thread.</summary>
    private static void RunColumnChunks(in GemmArgs g, int parts)
    {
        int nr = TileCols(g.Path);
        int units = (g.N + nr - 1) / nr;
        // A whole number of chunks per thread: five runs on two threads left one thread a fifth of the call alone.
        int chunks = Math.Clamp(g.N / MinChunkColumns, parts, 4 * parts) / parts * parts;
        chunks = Math.Min(units, chunks);
        if (chunks < 2)
        {
            RunRegion(in g, 0, g.M, 0, g.N);
            return;
        }
        var job = ColumnJob.Rent();
        job.Args = g;
        job.Units = units;
        job.Chunks = chunks;
        job.Next = 0;
        RunJob(job, Math.Min(parts, chunks));
        ColumnJob.Return(job);
    }

    /// <summary>Most rows that <see cref="RunColumnChunks"/> takes when A is read in place (<see cref="ReadsAInPlace"/>).</summary>
    internal static int ColumnChunkMaxRows = 1024;

    /// <summary>Whether the micro-kernel reads A where it lies (row-major, Vector512 path) instead of packing it.</summary>
    private static bool ReadsAInPlace(in GemmArgs g) => ReadRowMajorA && !g.TransA && g.Path == GemmPath.Vector512;

    /// <summary>Narrowest run of columns a chunk of <see cref="RunColumnChunks"/> gets (each chunk packs all rows of A again).</summary>
    internal static int MinChunkColumns = 384;

    /// <summary>C = op(A)·B (+C) with B already packed (the whole of it) by <see cref="PackedMatrix"/>.</summary>
    public static void RunPacked(in GemmArgs g, in PackedPanels panels, int threads)
    {
        if (g.K == 0)
        {
            ZeroOrKeep(in g);
            return;
        }
        int groups = DepthGroups(g.M, g.N, g.K, g.Kc);
        if (groups > 1) RunDepthGroups(in g, panels, groups, threads);
        else RunPackedWhole(in g, in panels, threads);
    }

    private static void RunPackedWhole(in GemmArgs g, in PackedPanels panels, int threads)
    {
        var plan = Plan(g.M, g.N, g.K, g.Path, threads);
        if (plan.Parts > 1 && GemmWorkers.Busy) plan = GemmPlan.Single;
        RunShared(in g, in panels, plan, plan.Parts > 1 || plan.KSplit ? SharedBuffers.ForCaller() : null);
    }

    /// <summary>
    /// Splits a call: how many threads, and the grid of chunks. Splitting the columns of C into more groups
    /// makes each group pack the same rows of A again (M·K floats a group); splitting the rows makes each
    /// group stream all of the packed B again (K·N floats, which costs a fraction of packing), so the grid
    /// with the least of that work wins. With fewer MR×NR tiles than threads, the depth blocks are split too.
    /// </summary>
    internal static GemmPlan Plan(int m, int n, int k, GemmPath path, int threads)
    {
        long work = (long)m * n * k;
        int parts = (int)Math.Clamp(work / MinWorkPerThread, 1, Math.Max(1, threads));
        if (parts == 1) return GemmPlan.Single;
        int mr = TileRows(path), nr = TileCols(path);
        int mTiles = (m + mr - 1) / mr, nTiles = (n + nr - 1) / nr;
        int kc = DepthBlock(k), kBlocks = (k + kc - 1) / kc;
        if ((long)mTiles * nTiles < parts)
        {
            if (kBlocks > 1) return new GemmPlan(Math.Min(parts, mTiles * nTiles * kBlocks), mTiles, nTiles, true);
            parts = mTiles * nTiles;
            return parts == 1 ? GemmPlan.Single : new GemmPlan(parts, mTiles, nTiles, false);
        }
        // One chunk per thread. Up to four per thread (to balance a shared machine) was 1–6 % slower on two threads in
        // interleaved runs (4096-row products, weight gradients): each more chunk packs its A again and streams all of B
        // again. A thread that starts late still loses nothing to the other: chunks go first come first served.
        int target = ChunksPerThread * parts;
        const double StreamB = 0.25; // streaming packed B ÷ packing A, per float
        (int Gm, int Gn) best = (0, 0);
        double bestCost = double.MaxValue;
        bool bestEven = false;
        for (int gm = 1; gm <= Math.Min(mTiles, target); gm++)
        {
            int gn = (int)Math.Min(nTiles, (target + gm - 1) / gm);
            if ((long)gm * gn < parts) continue;
            double cost = (double)gn * m * k + StreamB * gm * (double)k * n;
            bool even = gm * gn % parts == 0; // a grid that gives every thread as many cells
            if ((even && !bestEven) || (even == bestEven && cost < bestCost)) { bestCost = cost; best = (gm, gn); bestEven = even; }
        }
        return new GemmPlan(parts, best.Gm, best.Gn, false);
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

    /// <summary>Runs <paramref name="job"/> on the pool, or every part of it on the calling thread when the pool is taken.</summary>
    private static void RunJob(IGemmWork job, int parts)
    {
        if (!GemmWorkers.TryRun(job, parts)) job.Execute(0); // parts take chunks first come first served: one part takes them all
    }

    /// <summary>Packs op(B)[:, J0 : J0+N] into <paramref name="panels"/> on up to <paramref name="parts"/> threads.</summary>
    internal static void PackShared(float* b, int ldb, bool transB, GemmPath path, in PackedPanels panels, int parts)
    {
        int nr = TileCols(path);
        int kBlocks = (panels.K + panels.Kc - 1) / panels.Kc, nTiles = panels.Npad / nr;
        // A few tasks per thread, each a run of whole panels in one depth block.
        int groups = Math.Clamp(4 * parts / kBlocks, 1, nTiles);
        var job = PackJob.Rent();
        job.B = b; job.Ldb = ldb; job.TransB = transB; job.Path = path; job.Panels = panels;
        job.KBlocks = kBlocks; job.Groups = groups; job.NTiles = nTiles; job.Next = 0;
        if (parts > 1) RunJob(job, Math.Min(parts, kBlocks * groups));
        else job.Execute(0);
        PackJob.Return(job);
    }

    /// <summary>Computes all of C (columns J0..J0+N of it) from shared packed B, split as <paramref name="plan"/> says.</summary>
    private static void RunShared(in GemmArgs g, in PackedPanels panels, GemmPlan plan, SharedBuffers? buffers)
    {
        int kBlocks = (g.K + panels.Kc - 1) / panels.Kc;
        int j0 = panels.J0, j1 = panels.J0 + panels.N;
        if (plan.Parts == 1 && !plan.KSplit)
        {
            RegionPacked(in g, in panels, 0, g.M, j0, j1, 0, kBlocks, g.C + j0, g.Ldc, g.Accumulate);
            return;
        }
        var job = ComputeJob.Rent();
        job.Args = g;
        job.Panels = panels;
        job.Plan = plan;
        job.KBlocks = kBlocks;
        job.Chunks = plan.Chunks(kBlocks);
        job.Next = 0;
        int n = panels.N;
        // Depth block kb > 0 of a depth split goes to its own scratch C; adding the scratches in block order
        // afterwards is exactly the sum one thread forms block after block.
        if (plan.KSplit) job.Scratch = buffers!.Scratch((long)(kBlocks - 1) * g.M * n);
        RunJob(job, Math.Min(plan.Parts, job.Chunks));
        if (plan.KSplit) AddInOrder(g.C + j0, g.Ldc, job.Scratch, kBlocks - 1, g.M, n, plan.Parts);
        ComputeJob.Return(job);
    }

    /// <summary>
    /// C[i0:i1, j0:j1] over depth blocks [kb0, kb1) from shared packed B, on the calling thread, into
    /// <paramref name="c"/>: the target's element (row 0, column j0), in C or in a scratch. Loops NC columns → depth
    /// block → row block (pack A) → MR×NR tiles, as <see cref="RunRegion"/> does with B packed already.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RegionPacked(in GemmArgs g, in PackedPanels panels, int i0, int i1, int j0, int j1, int kb0, int kb1,
        float* c, int ldc, bool accumulate)
    {
        var path = g.Path;
        int mr = TileRows(path), nr = TileCols(path);
        int kcMax = panels.Kc;
        // Up to two MC blocks of rows as one A block: a small M (one sequence) is then packed once per depth block.
        int rows = i1 - i0;
        int mcStep = rows <= 2 * MC ? RoundUp(rows, mr) : MC;
        var buffers = PackBuffers.Get(RoundUp(2 * MC, mr) * RoundUp(KC, 16), 0);
        float* ap = buffers.A;
        float* tile = stackalloc float[GemmKernels.MaxTile];
        bool prefetchNext = panels.Prepacked && PrefetchNextPanel;
        // One sequence streams pre-packed or shared B once, in NC-wide blocks; more rows reuse each block, kept in L2.
        int ncMax = rows <= 2 * MC ? NC : ColumnBlock(in g, rows, kcMax);
        bool rowTilesOuter = RowTilesOuter(in g, rows);
        for (int jc = j0; jc < j1; jc += ncMax)
        {
            int nc = Math.Min(ncMax, j1 - jc);
            for (int kb = kb0; kb < kb1; kb++)
            {
                int pc = kb * kcMax, kc = Math.Min(kcMax, g.K - pc);
                bool acc = accumulate || kb > kb0;
                float* bp = panels.Panel(pc, kc, jc);
                for (int ic = i0; ic < i1; ic += mcStep)
                {
                    int mc = Math.Min(mcStep, i1 - ic);
                    // Only the first row block finds the weights out of cache; the later ones find them where it left them.
                    RowBlock(in g, ic, mc, pc, kc, ap, bp, nc, c + (long)ic * ldc + (jc - j0), ldc, acc, tile, prefetchNext && ic == i0, rowTilesOuter);
                }
            }
        }
    }

    /// <summary>Computes C[i0:i1, j0:j1] on the calling thread, packing B into this thread's buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops; skip tier-0/OSR code on the first calls
    public static void RunRegion(in GemmArgs g, int i0, int i1, int j0, int j1)
    {
        if (g.K == 0)
        {
            if (!g.Accumulate)
                for (int i = i0; i < i1; i++) new Span<float>(g.C + (long)i * g.Ldc + j0, j1 - j0).Clear();
            return;
        }
        if (PacksAWhole(in g, i1 - i0))
        {
            RegionAWhole(in g, i0, i1, j0, j1);
            return;
        }
        var path = g.Path;
        int mr = TileRows(path), nr = TileCols(path);
        int kcLimit = RoundUp(KC, 16), mcMax = MC;
        int kcMax = g.Kc, ncMax = ColumnBlock(in g, i1 - i0, kcMax);
        bool rowTilesOuter = RowTilesOuter(in g, i1 - i0);
        var buffers = PackBuffers.Get(RoundUp(2 * mcMax, mr) * kcLimit, RoundUp(NC, nr) * kcLimit);
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
                    RowBlock(in g, ic, mc, pc, kc, ap, bp, nc, g.C + (long)ic * ldc + jc, ldc, acc, tile, prefetchNext: false, rowTilesOuter);
                }
            }
        }
    }

    /// <summary>
    /// Columns of B packed (or streamed) at once for <paramref name="rows"/> rows at depth block <paramref name="kc"/> when A is
    /// read in place: a block that stays in L2 (<see cref="FewRowsBlockFloats"/> or <see cref="ManyRowsBlockFloats"/> floats)
    /// rather than NC columns (768 × 1024 floats is 3 MiB, more than the Xeon's 2 MiB L2). A is not packed, so a column block
    /// costs only a pass over A. Where A is packed, NC: each column block would pack all of A again. Column blocking changes
    /// no sum, so the bits are the same whatever the block.
    /// </summary>
    internal static int ColumnBlock(in GemmArgs g, int rows, int kc) =>
        ReadsAInPlace(in g) ? ColumnsIn(rows <= 2 * MC ? FewRowsBlockFloats : ManyRowsBlockFloats, kc, g.Path) : NC;

    /// <summary>Whole NR-wide panels of B that <paramref name="floats"/> hold at depth <paramref name="kc"/>, from one panel up to NC columns (0 floats: NC).</summary>
    private static int ColumnsIn(long floats, int kc, GemmPath path)
    {
        if (floats <= 0) return NC;
        int nr = TileCols(path);
        return (int)Math.Clamp(floats / Math.Max(1, kc) / nr * nr, nr, Math.Max(nr, NC));
    }

    /// <summary>
    /// B packed at once for one sequence (up to 2·MC rows; <see cref="ColumnBlock"/>; 0: NC columns), in floats: 96 Ki (384 KiB,
    /// 128 columns at K = 768; a third of the 1 MiB L2 of a Zen 4 or 5). Its own packing wrote an NC-wide block out to L3 before
    /// the row tiles read it back: on the Xeon VM, twelve 128-row products packing B per call ran 1.03–1.18× faster than with
    /// 1,024 columns, on one and on two threads, and better than with 256 or 768 KiB (docs/benchmarks.md).
    /// </summary>
    internal static long FewRowsBlockFloats = 96 * 1024;

    /// <summary>
    /// The block of B for more rows (<see cref="ColumnBlock"/>; 0: NC columns), in floats: 192 Ki (768 KiB, 256 columns at
    /// K = 768), which every row tile of a row block meets from L2 (<see cref="RowTilesOuter"/>).
    /// </summary>
    internal static long ManyRowsBlockFloats = 192 * 1024;

    /// <summary>
    /// Whether the full row blocks of more than 2·MC rows read in place run their row tiles outer: an 8-row A micro-panel (8 × KC
    /// floats, 24 KiB at 768) then stays in L1 across the block's B micro-panels, which come from L2 (<see cref="ManyRowsBlockFloats"/>);
    /// B micro-panels outer stream both the A block and B from L2. Each tile is the same multiply-adds, so the same bits.
    /// </summary>
    private static bool RowTilesOuter(in GemmArgs g, int rows) => RowTilesOuterOn && rows > 2 * MC && ReadsAInPlace(in g);

    /// <summary>A switch for the bench (<see cref="RowTilesOuter"/>, <see cref="PacksAWhole"/>).</summary>
    internal static bool RowTilesOuterOn = true;

    /// <summary>
    /// Whether <see cref="RunRegion"/> packs all its rows of A per depth block and runs row tiles outer (<see cref="RegionAWhole"/>):
    /// A packed (stored (K, M), a weight gradient's activations), more than 2·MC rows, Vector512, and the packed A at most
    /// <see cref="MaxWholeAFloats"/>.
    /// </summary>
    private static bool PacksAWhole(in GemmArgs g, int rows) =>
        RowTilesOuterOn && g.Path == GemmPath.Vector512 && !ReadsAInPlace(in g) && rows > 2 * MC
        && (long)RoundUp(rows, GemmKernels.Mr512) * g.Kc <= MaxWholeAFloats;

    /// <summary>
    /// Largest A packed whole per depth block by <see cref="RegionAWhole"/> (floats, 8 MiB: 2,048 rows at K = 1024). Its micro-panels
    /// are read from L3 once per column block; at 3,072 rows that no longer paid on the Xeon VM (0.99–1.16 on one thread,
    /// 0.96–0.995 on two, where 256–2,048 rows read 1.04–1.16 and 0.95–1.17; docs/benchmarks.md). A thread's pack buffer for A
    /// grows to this size once and is kept, as the other pack buffers are.
    /// </summary>
    internal static long MaxWholeAFloats = 2L << 20;

    /// <summary>
    /// C[i0:i1, j0:j1] on the calling thread with A packed: per depth block, all the rows of A packed once (where row blocks packed
    /// them again for every NC columns), then B in column blocks that stay in L2 (<see cref="ManyRowsBlockFloats"/>), each met by
    /// every 8-row tile in turn, the tile's A micro-panel (8 × KC floats) in L1 across the block. The same tiles and the same
    /// depth order per element as <see cref="RunRegion"/>'s blocks, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RegionAWhole(in GemmArgs g, int i0, int i1, int j0, int j1)
    {
        const GemmPath path = GemmPath.Vector512;
        const int mr = GemmKernels.Mr512, nr = GemmKernels.Nr512;
        int rows = i1 - i0, kcMax = g.Kc, ldc = g.Ldc;
        int ncMax = ColumnsIn(ManyRowsBlockFloats, kcMax, path);
        var buffers = PackBuffers.Get((int)((long)RoundUp(rows, mr) * kcMax), RoundUp(NC, nr) * RoundUp(KC, 16));
        float* ap = buffers.A, bp = buffers.B;
        float* tile = stackalloc float[GemmKernels.MaxTile];
        int fullRows = rows / mr * mr;
        for (int pc = 0; pc < g.K; pc += kcMax)
        {
            int kc = Math.Min(kcMax, g.K - pc);
            bool acc = g.Accumulate || pc > 0;
            GemmPack.PackA(g.A, g.Lda, g.TransA, i0, rows, pc, kc, mr, ap, path);
            for (int jc = j0; jc < j1; jc += ncMax)
            {
                int nc = Math.Min(ncMax, j1 - jc), fullCols = nc / nr * nr;
                GemmPack.PackB(g.B, g.Ldb, g.TransB, pc, kc, jc, nc, nr, bp, path);
                float* c = g.C + (long)i0 * ldc + jc;
                for (int ir = 0; ir < fullRows; ir += mr)
                    for (int jr = 0; jr < fullCols; jr += nr)
                        GemmKernels.Tile(path, ap + (long)ir * kc, bp + (long)jr * kc, kc, c + (long)ir * ldc + jr, ldc, acc);
                // The edges as Macro computes them: the last partial column panel for every row, then the last partial row panel.
                if (fullCols < nc) Macro(path, ap, bp + (long)fullCols * kc, rows, nc - fullCols, kc, mr, nr, c + fullCols, ldc, acc, tile);
                if (fullRows < rows) Macro(path, ap + (long)fullRows * kc, bp, rows - fullRows, fullCols, kc, mr, nr, c + (long)fullRows * ldc, ldc, acc, tile);
            }
        }
    }

    /// <summary>Reads row-major A in place instead of packing it (<see cref="RowBlock"/>); a switch for the bench and tests.</summary>
    internal static bool ReadRowMajorA = true;

    /// <summary>
    /// Pre-packed B only (<see cref="PackedPanels.Prepacked"/>, A read in place): while the tiles of one B micro-panel run,
    /// fetch the next micro-panel into L2, a share of its lines before each tile. Frozen weights in a forward pass are used
    /// once per call and come from L3 or memory, and the first tile of every panel waited for them: the (5, 528, 1016)
    /// forward of one sequence on the Xeon VM took 4–5 % less time on one thread, 3–4 % on two. B packed by the call itself
    /// is in cache already, and there the same prefetches cost 3–8 %; pre-packed B still in cache, 2–3 % on 128-row
    /// products (docs/benchmarks.md). A switch for the bench.
    /// </summary>
    internal static bool PrefetchNextPanel = true;

    /// <summary>
    /// Rows [ic, ic+mc) × depth [pc, pc+kc) of A against the packed B block: packed into <paramref name="ap"/> first, or — A
    /// stored row-major on the Vector512 path — read in place by the micro-kernel, eight rows at a time, with only a
    /// last partial tile packed. Packing transposes A (each element once per call and column block) for a reuse of
    /// nc/32 tiles: at a 256-wide layer that was about as much time as a tenth of the multiply-adds.
    /// Either way every element of C is the same multiply-adds in the same order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowBlock(in GemmArgs g, int ic, int mc, int pc, int kc, float* ap, float* bp, int nc, float* c, int ldc, bool acc, float* tile,
        bool prefetchNext, bool rowTilesOuter)
    {
        var path = g.Path;
        int mr = TileRows(path), nr = TileCols(path);
        if (!ReadRowMajorA || g.TransA || path != GemmPath.Vector512)
        {
            GemmPack.PackA(g.A, g.Lda, g.TransA, ic, mc, pc, kc, mr, ap, path);
            Macro(path, ap, bp, mc, nc, kc, mr, nr, c, ldc, acc, tile);
            return;
        }
        int full = mc / mr * mr;
        if (full < mc) GemmPack.PackA(g.A, g.Lda, false, ic + full, mc - full, pc, kc, mr, ap, path);
        float* a = g.A + (long)ic * g.Lda + pc;
        if (rowTilesOuter && !prefetchNext && full == mc && nc % nr == 0) MacroRowTilesOuter(a, g.Lda, bp, mc, nc, kc, c, ldc, acc);
        else MacroRowMajorA(a, g.Lda, full, ap, bp, mc, nc, kc, c, ldc, acc, tile, prefetchNext);
    }

    /// <summary>
    /// As <see cref="Macro"/>, with the first <paramref name="full"/> rows of A read in place (row stride lda) and the
    /// rest (fewer than MR) from the packed panel <paramref name="ap"/>. Vector512 path only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MacroRowMajorA(float* a, int lda, int full, float* ap, float* bp, int mc, int nc, int kc, float* c, int ldc, bool acc, float* tile,
        bool prefetchNext)
    {
        const int mr = GemmKernels.Mr512, nr = GemmKernels.Nr512;
        int tiles = (mc + mr - 1) / mr;
        int panelLines = kc * nr / 16, linesPerTile = (panelLines + tiles - 1) / tiles;
        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            float* bPanel = bp + (long)jr * kc;
            float* next = prefetchNext && jr + nr < nc ? bPanel + (long)nr * kc : null;
            for (int ir = 0; ir < mc; ir += mr)
            {
                int rows = Math.Min(mr, mc - ir);
                float* cTile = c + (long)ir * ldc + jr;
                bool inPlace = ir < full;
                if (next != null)
                {
                    int first = ir / mr * linesPerTile, last = Math.Min(panelLines, first + linesPerTile);
                    for (int line = first; line < last; line++) Sse.Prefetch1(next + line * 16);
                }
                if (rows == mr && cols == nr)
                {
                    GemmKernels.Kernel8x32RowMajorA(a + (long)ir * lda, lda, bPanel, kc, cTile, ldc, acc);
                    continue;
                }
                // Edge tile: into scratch, then copy the valid part.
                if (inPlace) GemmKernels.Kernel8x32RowMajorA(a + (long)ir * lda, lda, bPanel, kc, tile, nr, false);
                else GemmKernels.Tile(GemmPath.Vector512, ap, bPanel, kc, tile, nr, false);
                CopyEdgeTile(tile, nr, cTile, ldc, rows, cols, acc);
            }
        }
    }

    /// <summary>Full 8×32 tiles only, A read in place, row tiles outer (<see cref="RowTilesOuter"/>). Vector512 path only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MacroRowTilesOuter(float* a, int lda, float* bp, int mc, int nc, int kc, float* c, int ldc, bool acc)
    {
        const int mr = GemmKernels.Mr512, nr = GemmKernels.Nr512;
        for (int ir = 0; ir < mc; ir += mr)
            for (int jr = 0; jr < nc; jr += nr)
                GemmKernels.Kernel8x32RowMajorA(a + (long)ir * lda, lda, bp + (long)jr * kc, kc, c + (long)ir * ldc + jr, ldc, acc);
    }

    /// <summary>
    /// C(mc,nc) (+)= Apacked(mc,kc)·Bpacked(kc,nc): MR×NR tiles, NR-wide B micro-panels outer (each stays in
    /// L1 across the A micro-panels), edge tiles through <paramref name="tile"/> scratch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Macro(GemmPath path, float* ap, float* bp, int mc, int nc, int kc, int mr, int nr, float* c, int ldc, bool acc, float* tile)
    {
        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            float* bPanel = bp + (long)jr * kc;
            for (int ir = 0; ir < mc; ir += mr)
            {
                int rows = Math.Min(mr, mc - ir);
                float* aPanel = ap + (long)ir * kc;
                float* cTile = c + (long)ir * ldc + jr;
                if (rows == mr && cols == nr)
                {
                    GemmKernels.Tile(path, aPanel, bPanel, kc, cTile, ldc, acc);
                }
                else
                {
                    // Edge tile: into scratch, then copy the valid part.
                    if (cols <= 16) GemmKernels.NarrowTile(path, aPanel, bPanel, kc, tile, nr);
                    else GemmKernels.Tile(path, aPanel, bPanel, kc, tile, nr, false);
                    CopyEdgeTile(tile, nr, cTile, ldc, rows, cols, acc);
                }
            }
        }
    }

    /// <summary>The valid rows × cols of an edge tile computed into scratch (row stride nr), written or added to C.</summary>
    private static void CopyEdgeTile(float* tile, int nr, float* cTile, int ldc, int rows, int cols, bool acc)
    {
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
            if (buf._aFloats < (nuint)aFloats) buf.A = NativeBuffer.Grow(buf.A, ref buf._aFloats, aFloats);
            if (buf._bFloats < (nuint)bFloats) buf.B = NativeBuffer.Grow(buf.B, ref buf._bFloats, bFloats);
            return buf;
        }

        ~PackBuffers()
        {
            NativeBuffer.Free(A);
            NativeBuffer.Free(B);
        }
    }

    /// <summary>The calling thread's buffers for a multi-threaded call: the shared packed B, and the depth-split scratches.</summary>
    private sealed class SharedBuffers
    {
        [ThreadStatic] private static SharedBuffers? t_current;
        private float* _panels, _scratch, _group;
        private nuint _panelFloats, _scratchFloats, _groupFloats;

        public static SharedBuffers ForCaller() => t_current ??= new SharedBuffers();

        public float* Panels(long floats) => _panelFloats >= (nuint)floats ? _panels : _panels = NativeBuffer.Grow(_panels, ref _panelFloats, floats);
        public float* Scratch(long floats) => _scratchFloats >= (nuint)floats ? _scratch : _scratch = NativeBuffer.Grow(_scratch, ref _scratchFloats, floats);
        /// <summary>The depth groups' targets: apart from <see cref="Scratch"/>, which a group's own product may use.</summary>
        public float* GroupScratch(long floats) => _groupFloats >= (nuint)floats ? _group : _group = NativeBuffer.Grow(_group, ref _groupFloats, floats);

        ~SharedBuffers()
        {
            NativeBuffer.Free(_panels);
            NativeBuffer.Free(_scratch);
            NativeBuffer.Free(_group);
        }
    }

    /// <summary>Packs (depth block, run of panels) tasks of op(B) into shared panels.</summary>
    private sealed class PackJob : IGemmWork
    {
        private static PackJob? s_spare;
        public float* B;
        public int Ldb, KBlocks, Groups, NTiles, Next;
        public bool TransB;
        public GemmPath Path;
        public PackedPanels Panels;

        public static PackJob Rent() => Interlocked.Exchange(ref s_spare, null) ?? new PackJob();
        public static void Return(PackJob job) => s_spare = job;

        public void Execute(int part)
        {
            int nr = TileCols(Path), tasks = KBlocks * Groups, task;
            ref readonly var p = ref Panels;
            while ((task = Interlocked.Increment(ref Next) - 1) < tasks)
            {
                int kb = task / Groups, grp = task % Groups;
                int pc = kb * p.Kc, kc = Math.Min(p.Kc, p.K - pc);
                int t0 = (int)((long)NTiles * grp / Groups), t1 = (int)((long)NTiles * (grp + 1) / Groups);
                int jStart = p.J0 + t0 * nr, cols = Math.Min(p.J0 + p.N, p.J0 + t1 * nr) - jStart;
                if (cols > 0) GemmPack.PackB(B, Ldb, TransB, pc, kc, jStart, cols, nr, p.Panel(pc, kc, jStart), Path);
            }
        }
    }

    /// <summary>Chunks of C (a cell of the plan's grid, and one depth block of it under a depth split) handed out first come first served.</summary>
    private sealed class ComputeJob : IGemmWork
    {
        private static ComputeJob? s_spare;
        public GemmArgs Args;
        public PackedPanels Panels;
        public GemmPlan Plan;
        public int KBlocks, Chunks, Next;
        public float* Scratch;

        public static ComputeJob Rent() => Interlocked.Exchange(ref s_spare, null) ?? new ComputeJob();
        public static void Return(ComputeJob job) => s_spare = job;

        public void Execute(int part)
        {
            ref readonly var g = ref Args;
            ref readonly var p = ref Panels;
            int mr = TileRows(g.Path), nr = TileCols(g.Path);
            int mTiles = (g.M + mr - 1) / mr, nTiles = (p.N + nr - 1) / nr;
            int cells = Plan.Gm * Plan.Gn, chunk;
            while ((chunk = Interlocked.Increment(ref Next) - 1) < Chunks)
            {
                int cell = chunk % cells, kb = chunk / cells;
                int gi = cell / Plan.Gn, gj = cell % Plan.Gn;
                int i0 = (int)((long)mTiles * gi / Plan.Gm) * mr, i1 = Math.Min(g.M, (int)((long)mTiles * (gi + 1) / Plan.Gm) * mr);
                int j0 = p.J0 + (int)((long)nTiles * gj / Plan.Gn) * nr, j1 = Math.Min(p.J0 + p.N, p.J0 + (int)((long)nTiles * (gj + 1) / Plan.Gn) * nr);
                if (i0 >= i1 || j0 >= j1) continue;
                if (!Plan.KSplit)
                    RegionPacked(in g, in p, i0, i1, j0, j1, 0, KBlocks, g.C + j0, g.Ldc, g.Accumulate);
                else if (kb == 0)
                    RegionPacked(in g, in p, i0, i1, j0, j1, 0, 1, g.C + j0, g.Ldc, g.Accumulate);
                else // scratch kb: (M, N) with column J0 first
                    RegionPacked(in g, in p, i0, i1, j0, j1, kb, kb + 1, Scratch + (long)(kb - 1) * g.M * p.N + (j0 - p.J0), p.N, false);
            }
        }
    }

    /// <summary>Whole depth groups of a product (<see cref="RunDepthGroups"/>) handed out first come first served.</summary>
    private sealed class DepthGroupJob : IGemmWork
    {
        private static DepthGroupJob? s_spare;
        public GemmArgs Args;
        public PackedPanels? Panels; // op(B) packed beforehand, or null: each group packs its own
        public int Groups, Next;
        public float* Scratch;

        public static DepthGroupJob Rent() => Interlocked.Exchange(ref s_spare, null) ?? new DepthGroupJob();
        public static void Return(DepthGroupJob job) => s_spare = job;

        public void Execute(int part)
        {
            int q;
            while ((q = Interlocked.Increment(ref Next) - 1) < Groups) RunGroup(q, 1);
        }

        /// <summary>Group q: depth blocks [blocks·q/Groups, blocks·(q+1)/Groups) into C or scratch q − 1, on up to <paramref name="threads"/> threads.</summary>
        public void RunGroup(int q, int threads)
        {
            ref readonly var g = ref Args;
            int blocks = (g.K + g.Kc - 1) / g.Kc;
            int b0 = blocks * q / Groups, b1 = blocks * (q + 1) / Groups;
            int p0 = b0 * g.Kc, k = Math.Min(g.K, b1 * g.Kc) - p0;
            var part = q == 0
                ? g.Depth(p0, k, g.C, g.Ldc, g.Accumulate)
                : g.Depth(p0, k, Scratch + (q - 1) * (long)g.M * g.N, g.N, false);
            if (Panels is not { } all) RunWhole(in part, threads);
            else
            {
                var panels = new PackedPanels(all.Data + (long)p0 * all.Npad, k, all.N, all.Npad, all.Kc, all.J0, all.Prepacked);
                RunPackedWhole(in part, in panels, threads);
            }
        }
    }

    /// <summary>Runs of columns of C handed out first come first served, each computed (packing included) by <see cref="RunRegion"/>.</summary>
    private sealed class ColumnJob : IGemmWork
    {
        private static ColumnJob? s_spare;
        public GemmArgs Args;
        public int Units, Chunks, Next;

        public static ColumnJob Rent() => Interlocked.Exchange(ref s_spare, null) ?? new ColumnJob();
        public static void Return(ColumnJob job) => s_spare = job;

        public void Execute(int part)
        {
            ref readonly var g = ref Args;
            int nr = TileCols(g.Path), chunk;
            while ((chunk = Interlocked.Increment(ref Next) - 1) < Chunks)
            {
                int u0 = (int)((long)Units * chunk / Chunks), u1 = (int)((long)Units * (chunk + 1) / Chunks);
                RunRegion(in g, 0, g.M, u0 * nr, Math.Min(g.N, u1 * nr));
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

/// <summary>64-byte-aligned native float buffers.</summary>
internal static unsafe class NativeBuffer
{
    public static float* Grow(float* old, ref nuint size, long floats)
    {
        Free(old);
        size = (nuint)floats;
        return (float*)NativeMemory.AlignedAlloc(size * sizeof(float), 64);
    }

    public static void Free(float* p)
    {
        if (p != null) NativeMemory.AlignedFree(p);
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
        if (transA && mr == 8 && Avx.IsSupported) // only the Vector512 path has mr == 8
        {
            // Stored (K,M): each k step of a panel is 8 contiguous floats of row p0 + p. A band of PackRows rows at a
            // time, each read left to right across every full panel: panel by panel, each step read a new row (a new
            // page at a 1024-wide A) and the rows of a panel all fell in the same L1 sets.
            int panels = mc / 8 * 8;
            for (int pb = 0; pb < kc; pb += PackRows)
            {
                int pe = Math.Min(kc, pb + PackRows);
                if (PrefetchBands > 0)
                {
                    // Each row of a band lies in another page, and hardware prefetchers stop at page boundaries: ask for
                    // the rows of a band further on, a line at a time across the band's width.
                    int ahead = pb + PrefetchBands * PackRows;
                    for (int p = ahead; p < Math.Min(kc, ahead + PackRows); p++)
                    {
                        byte* row = (byte*)(a + (long)(p0 + p) * lda + i0);
                        for (int at = 0; at < panels * sizeof(float); at += 64) Sse.Prefetch0(row + at);
                    }
                }
                for (int r0 = 0; r0 < panels; r0 += 8)
                {
                    float* src = a + (long)(p0 + pb) * lda + i0 + r0;
                    float* d = dst + (long)r0 * kc + (long)pb * 8;
                    for (int p = pb; p < pe; p++, src += lda, d += 8) Avx.Store(d, Avx.LoadVector256(src));
                }
            }
            ir = panels;
        }
        else if (!transA && mr == 8 && path == GemmPath.Vector512 && GemmKernels.CanTranspose16)
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
                if (rows == 6 && mr == 6 && Sse2.IsSupported) // the Vector256 path: 4 + 2 floats per k step
                {
                    for (int p = 0; p < kc; p++, src += lda, d += 6)
                    {
                        Sse.Store(d, Sse.LoadVector128(src));
                        *(double*)(d + 4) = *(double*)(src + 4);
                    }
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
                // Stored (M,K): transpose mr rows into k-major order; on the Vector256 path 8 k steps
                // of a full 6-row panel at a time through registers, the k tail below.
                int p0Scalar = 0;
                if (rows == 6 && mr == 6 && path == GemmPath.Vector256)
                {
                    float* src = a + (long)(i0 + ir) * lda + p0;
                    int kFull = kc / 8 * 8;
                    for (int p = 0; p < kFull; p += 8) GemmKernels.Transpose6x8(src + p, lda, d + p * 6);
                    p0Scalar = kFull;
                }
                for (int r = 0; r < rows; r++)
                {
                    float* src = a + (long)(i0 + ir + r) * lda + p0;
                    float* dr = d + r;
                    for (int p = p0Scalar; p < kc; p++) dr[p * mr] = src[p];
                }
                for (int r = rows; r < mr; r++)
                    for (int p = 0; p < kc; p++) d[p * mr + r] = 0;
            }
        }
    }

    /// <summary>How many bands ahead the (K, M) A packing prefetches (0: none); settable for the tuning bench.</summary>
    internal static int PrefetchBands = 4;

    /// <summary>Rows of row-major B packed as one band (<see cref="PackB"/>); settable for the tuning bench.</summary>
    internal static int PackRows = 8;

    /// <summary>
    /// Packs op(B)[p0:p0+kc, j0:j0+nc] into ⌈nc/nr⌉ panels, each kc steps of nr floats; columns past
    /// nc are zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(float* b, int ldb, bool transB, int p0, int kc, int j0, int nc, int nr, float* dst, GemmPath path)
    {
        if (!transB)
        {
            // Stored (K,N): a band of PackRows (8) rows at a time, each walked left to right (8 sequential
            // streams the hardware prefetcher follows), dealing nr-wide pieces out to the panels — a contiguous
            // PackRows·nr run in each panel. One row at a time wrote one piece to every panel in turn, and the
            // panels lie kc·nr floats apart (48 KiB at kc = 384: a multiple of 4 KiB), so those writes all fell in
            // the same L1 sets and evicted each other.
            int full = nc / nr * nr;
            for (int pb = 0; pb < kc; pb += PackRows)
            {
                int pe = Math.Min(kc, pb + PackRows);
                for (int jr = 0; jr < full; jr += nr)
                {
                    float* d = dst + (long)jr * kc + (long)pb * nr;
                    for (int p = pb; p < pe; p++, d += nr)
                        GemmKernels.CopyRow(b + (long)(p0 + p) * ldb + j0 + jr, d, nr, path);
                }
                if (full < nc)
                    for (int p = pb; p < pe; p++)
                    {
                        float* src = b + (long)(p0 + p) * ldb + j0;
                        float* e = dst + (long)full * kc + (long)p * nr;
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
            else if (cols == nr && nr % 8 == 0 && path == GemmPath.Vector256)
            {
                // 8×8 blocks through AVX registers, 8 source rows (read streams) at a time.
                int kFull = kc / 8 * 8;
                for (int j = 0; j < nr; j += 8)
                {
                    float* rows = src + (long)j * ldb;
                    for (int q = 0; q < kFull; q += 8)
                    {
                        if ((q & 15) == 0 && q + 64 < kc)
                            for (int r = 0; r < 8; r++) Sse.Prefetch0(rows + (long)r * ldb + q + 64);
                        GemmKernels.Transpose8(rows + q, ldb, d + (long)q * nr + j, nr);
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
