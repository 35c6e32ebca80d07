using SpeedLimit.Kernels;

namespace SpeedLimit.Tests.Kernels;

/// <summary>
/// Every SIMD path against the scalar twin. Tolerance per element:
/// |C − C_ref| ≤ 2·(K+2)·ε·(Σ_p |a_ip||b_pj| + |C0_ij|), ε = 2⁻²³ — twice the textbook worst-case
/// error bound of a K-term fp32 dot product (one for each side), so any indexing or edge bug
/// (an O(|a||b|) error) fails while legitimate reassociation passes.
/// </summary>
public class GemmTests
{
    private const float Eps = 1.0f / (1 << 23);

    // Dimensions hitting every edge: 1, primes, tile sizes ±1 (MR 6/8, NR 16/32), 256, and above the
    // cache blocks (MC 96, KC 384, NC 1024) in the dedicated large-shape test.
    private static readonly int[] EdgeDims = [1, 2, 3, 5, 6, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 97, 127, 128, 129, 255, 256];

    public static IEnumerable<object[]> SimdPaths() =>
        Gemm.SupportedPaths.Where(p => p != GemmPath.Scalar).Select(p => new object[] { p });

    [Fact]
    public void ThisMachineHasASimdPath()
    {
        // If this fails the SIMD theories below have no data and would silently test nothing.
        Assert.Contains(Gemm.AutoPath, new[] { GemmPath.Vector512, GemmPath.Vector256 });
        Assert.Contains(GemmPath.Vector256, Gemm.SupportedPaths);
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void SampledShapesMatchScalarTwin(GemmPath path)
    {
        var rng = new Random(1234 + (int)path);
        int cases = 0;
        foreach (var (ta, tb) in Transposes)
        {
            for (int s = 0; s < 28; s++)
            {
                // Mostly edge dimensions, sometimes uniform in 1..256 for non-square variety.
                int m = Pick(rng), n = Pick(rng), k = Pick(rng);
                bool acc = rng.Next(2) == 0;
                int threads = 1 + rng.Next(2);
                CheckOne(path, ta, tb, m, n, k, acc, threads, padLd: rng.Next(2) == 0, rng);
                cases++;
            }
        }
        Assert.Equal(4 * 28, cases);
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void SquareAndSkinnyShapesAllTransposes(GemmPath path)
    {
        var rng = new Random(99);
        (int M, int N, int K)[] shapes = [(1, 1, 1), (256, 256, 256), (1, 256, 17), (256, 1, 33), (255, 129, 1), (8, 32, 16), (6, 16, 5), (9, 33, 17), (128, 128, 32)];
        foreach (var (ta, tb) in Transposes)
            foreach (var (m, n, k) in shapes)
                foreach (int threads in new[] { 1, 2 })
                    CheckOne(path, ta, tb, m, n, k, accumulate: threads == 2, threads, padLd: true, rng);
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void ShapesLargerThanCacheBlocksMatchScalarTwin(GemmPath path)
    {
        var rng = new Random(7);
        // M > MC, K > KC, N > NC: every block loop runs more than once, with ragged ends.
        CheckOne(path, false, true, 197, 1057, 531, accumulate: false, threads: 2, padLd: true, rng);
        CheckOne(path, true, false, 101, 1040, 300, accumulate: true, threads: 1, padLd: false, rng);
        // Two threads over more chunks than threads, split along N and along M.
        CheckOne(path, false, true, 64, 2000, 40, accumulate: true, threads: 2, padLd: true, rng);
        CheckOne(path, true, true, 1300, 40, 50, accumulate: false, threads: 2, padLd: true, rng);
    }

    [Fact]
    public unsafe void AvxTransposesMoveEveryElementToItsPlace()
    {
        if (!System.Runtime.Intrinsics.X86.Avx.IsSupported) return; // no AVX: the Vector256 path does not exist here
        // Distinct values, strided source and destination: an 8×8 block and the 6-row A-panel form.
        const int lds = 11, ldd = 13;
        var src = new float[8 * lds];
        for (int i = 0; i < src.Length; i++) src[i] = i + 1;
        var dst = new float[8 * ldd];
        var panel = new float[8 * 6 + 1];
        panel[^1] = -7f; // sentinel: nothing is written past the 8 steps of 6 floats
        fixed (float* s = src) fixed (float* d = dst) fixed (float* pa = panel)
        {
            GemmKernels.Transpose8(s, lds, d, ldd);
            GemmKernels.Transpose6x8(s, lds, pa);
        }
        for (int i = 0; i < 8; i++)
            for (int q = 0; q < 8; q++)
                Assert.Equal(src[i * lds + q], dst[q * ldd + i]);
        for (int q = 0; q < 8; q++)
            for (int i = 0; i < 6; i++)
                Assert.Equal(src[i * lds + q], panel[q * 6 + i]);
        Assert.Equal(-7f, panel[^1]);
    }

    [Fact]
    public void ScalarPathIsTheTwin()
    {
        var rng = new Random(5);
        CheckOne(GemmPath.Scalar, true, true, 13, 17, 19, accumulate: true, threads: 2, padLd: true, rng);
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void BatchedMatchesScalarTwinPerItem(GemmPath path)
    {
        var rng = new Random(11);
        foreach (var (ta, tb) in Transposes)
            foreach (var (count, m, n, k, shareB) in new[] { (7, 128, 128, 32, false), (5, 33, 17, 9, true), (1, 64, 40, 20, false), (3, 300, 200, 64, false) })
            {
                int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
                int aItem = (ta ? k : m) * lda, bItem = (tb ? n : k) * ldb, cItem = m * ldc;
                int strideA = aItem + 5, strideB = shareB ? 0 : bItem + 7, strideC = cItem + 3;
                var a = Random(rng, count * strideA);
                var b = Random(rng, shareB ? bItem : count * strideB);
                var c = Random(rng, count * strideC);
                var expected = (float[])c.Clone();
                bool acc = count % 2 == 1;
                for (int i = 0; i < count; i++)
                    ScalarGemm.Multiply(ta, tb, m, n, k, a.AsSpan(i * strideA), lda, b.AsSpan(i * strideB), ldb,
                        expected.AsSpan(i * strideC), ldc, acc);
                Gemm.MultiplyBatched(path, count, ta, tb, m, n, k, a, strideA, lda, b, strideB, ldb, c, strideC, ldc, acc, threads: 2);
                for (int i = 0; i < c.Length; i++)
                    Assert.True(Math.Abs(c[i] - expected[i]) <= 1e-3f * (1 + Math.Abs(expected[i])),
                        $"{path} batched {count}×({m},{n},{k}) ta={ta} tb={tb}: index {i} got {c[i]}, want {expected[i]}");
            }
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void ZeroDepthOverwritesWithZeroOrKeeps(GemmPath path)
    {
        var c = new float[] { 1, 2, 3, 4, 5, 6 };
        Gemm.Multiply(path, false, false, 2, 2, 0, [], 1, [], 2, c, 3, accumulate: true, threads: 1);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, c);
        Gemm.Multiply(path, false, false, 2, 2, 0, [], 1, [], 2, c, 3, accumulate: false, threads: 1);
        Assert.Equal(new float[] { 0, 0, 3, 0, 0, 6 }, c);
    }

    // Shapes whose work is above the one-thread threshold, so two and three threads really split them:
    // a column split (M one sequence), a row split (M large, N narrow), a 2-D grid, a depth split (fewer
    // tiles than threads), a vocabulary-wide B packed in column slabs, and primes / tile ± 1 throughout.
    private static readonly (int M, int N, int K)[] SplitShapes =
        [(128, 1000, 300), (1000, 65, 200), (257, 129, 127), (7, 31, 12007), (5, 15, 30011), (9, 70001, 61), (33, 1025, 97)];

    [Fact]
    public void RowMajorAReadInPlaceIsBitIdenticalToPackedA()
    {
        // The Vector512 path reads row-major A in place (only a last partial tile packed); packing it first must
        // give the same bits: partial row tiles, edge columns, several depth and row blocks, accumulate or not,
        // the column-run and shared-B splits, and pre-packed B.
        if (!Gemm.IsSupported(GemmPath.Vector512)) return; // AVX-512 only; the other paths always pack
        var rng = new Random(77);
        (int M, int N, int K)[] shapes = [(13, 40, 7), (8, 32, 384), (127, 65, 385), (197, 1057, 531), (300, 300, 800), (129, 33, 1000)];
        foreach (var (m, n, k) in shapes)
            foreach (bool tb in new[] { false, true })
                foreach (int threads in new[] { 1, 2 })
                {
                    bool acc = rng.Next(2) == 0;
                    int lda = k + rng.Next(3), ldb = (tb ? k : n) + rng.Next(3), ldc = n + rng.Next(3);
                    var a = Random(rng, m * lda);
                    var b = Random(rng, (tb ? n : k) * ldb);
                    var c0 = Random(rng, m * ldc);
                    float[] Run(bool inPlace, bool prepacked)
                    {
                        bool saved = GemmDriver.ReadRowMajorA;
                        try
                        {
                            GemmDriver.ReadRowMajorA = inPlace;
                            return Vector512Product(false, tb, m, n, k, a, lda, b, ldb, c0, ldc, acc, threads, prepacked);
                        }
                        finally { GemmDriver.ReadRowMajorA = saved; }
                    }
                    var packedA = Run(inPlace: false, prepacked: false);
                    AssertNearScalar(GemmPath.Vector512, false, tb, m, n, k, a, lda, b, ldb, c0, packedA, ldc, acc);
                    string what = $"({m},{n},{k}) tb={tb} acc={acc} threads={threads}";
                    AssertBitEqual(packedA, Run(inPlace: true, prepacked: false), what);
                    AssertBitEqual(packedA, Run(inPlace: true, prepacked: true), what + " pre-packed B");
                }
    }

    [Fact]
    public unsafe void L2ColumnBlocksAndRowTilesOuterAreBitIdenticalToNcWideBlocks()
    {
        // A read in place packs or streams B in column blocks that stay in L2 (GemmDriver.ColumnBlock), and more than 2·MC rows
        // run their row tiles outer (with A packed, all its rows packed at once); NC-wide blocks with B micro-panels outer must
        // give the same bits: ragged last blocks, several depth and row blocks, partial row tiles and column panels, one and two
        // threads, B packed in the call and beforehand.
        if (!Gemm.IsSupported(GemmPath.Vector512)) return; // the Vector512 path only
        var rng = new Random(78);
        (int M, int N, int K)[] shapes = [(128, 700, 531), (37, 1100, 1500), (192, 1333, 192), (9, 4000, 300), (400, 1100, 900), (203, 500, 1100)];
        // A stored (K, M) is packed: more than 2·MC rows of it are packed whole per depth block, row tiles outer (RegionAWhole).
        (int M, int N, int K)[] packedAShapes = [(400, 1100, 900), (600, 700, 1300), (1001, 70, 300)];
        foreach (var (m, n, k, ta) in shapes.Select(s => (s.M, s.N, s.K, false)).Concat(packedAShapes.Select(s => (s.M, s.N, s.K, true))))
            foreach (bool tb in new[] { false, true })
                foreach (int threads in new[] { 1, 2 })
                {
                    bool acc = rng.Next(2) == 0;
                    int lda = (ta ? m : k) + rng.Next(3), ldb = (tb ? k : n) + rng.Next(3), ldc = n + rng.Next(3);
                    var a = Random(rng, (ta ? k : m) * lda);
                    var b = Random(rng, (tb ? n : k) * ldb);
                    var c0 = Random(rng, m * ldc);
                    var args = new GemmArgs(GemmPath.Vector512, false, tb, m, n, k, null, lda, null, ldb, null, ldc, acc);
                    if (!ta) Assert.True(GemmDriver.ColumnBlock(in args, m, args.Kc) < Math.Min(n, GemmDriver.NC), $"({m},{n},{k}) is blocked narrower than N");
                    float[] Run(bool l2Blocks, bool prepacked)
                    {
                        var saved = (GemmDriver.FewRowsBlockFloats, GemmDriver.ManyRowsBlockFloats, GemmDriver.RowTilesOuterOn);
                        try
                        {
                            if (!l2Blocks) (GemmDriver.FewRowsBlockFloats, GemmDriver.ManyRowsBlockFloats, GemmDriver.RowTilesOuterOn) = (0, 0, false);
                            return Vector512Product(ta, tb, m, n, k, a, lda, b, ldb, c0, ldc, acc, threads, prepacked);
                        }
                        finally { (GemmDriver.FewRowsBlockFloats, GemmDriver.ManyRowsBlockFloats, GemmDriver.RowTilesOuterOn) = saved; }
                    }
                    var wide = Run(l2Blocks: false, prepacked: false);
                    AssertNearScalar(GemmPath.Vector512, ta, tb, m, n, k, a, lda, b, ldb, c0, wide, ldc, acc);
                    string what = $"({m},{n},{k}) ta={ta} tb={tb} acc={acc} threads={threads}";
                    AssertBitEqual(wide, Run(l2Blocks: true, prepacked: false), what);
                    AssertBitEqual(wide, Run(l2Blocks: true, prepacked: true), what + " pre-packed B");
                }
    }

    /// <summary>C0 (+)= op(A)·op(B) on the Vector512 path into a copy of <paramref name="c0"/>, B packed in the call or beforehand.</summary>
    private static float[] Vector512Product(bool ta, bool tb, int m, int n, int k, float[] a, int lda, float[] b, int ldb, float[] c0, int ldc,
        bool acc, int threads, bool prepacked)
    {
        var c = (float[])c0.Clone();
        if (prepacked) Gemm.Multiply(ta, m, a, lda, PackedMatrix.Pack(GemmPath.Vector512, tb, k, n, b, ldb, threads), c, ldc, acc, threads);
        else Gemm.Multiply(GemmPath.Vector512, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, acc, threads);
        return c;
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void ThreadSplitsAndPrepackedWeightsAreBitIdenticalToOneThread(GemmPath path)
    {
        var rng = new Random(21 + (int)path);
        foreach (var (m, n, k) in SplitShapes)
        {
            // Every transpose pair once per shape over the list (all four on the first shapes, the scalar reference is the slow part).
            foreach (var (ta, tb) in Transposes)
            {
                if ((long)m * n * k > 5_000_000 && (ta, tb) != Transposes[(m + n) % 4]) continue;
                bool acc = rng.Next(2) == 0;
                int lda = (ta ? m : k) + rng.Next(3), ldb = (tb ? k : n) + rng.Next(3), ldc = n + rng.Next(3);
                var a = Random(rng, (ta ? k : m) * lda);
                var b = Random(rng, (tb ? n : k) * ldb);
                var c0 = Random(rng, m * ldc);
                AssertThreadsAndPrepackingAgree(path, ta, tb, m, n, k, a, lda, b, ldb, c0, ldc, acc, $"{path} ({m},{n},{k})");
            }
        }
    }

    /// <summary>
    /// One thread against the scalar twin, then 2, 3 and 4 threads (4: the 2-D grid) and a pre-packed B (on 1 and 2 threads) against one
    /// thread, bit for bit.
    /// </summary>
    private static void AssertThreadsAndPrepackingAgree(GemmPath path, bool ta, bool tb, int m, int n, int k,
        float[] a, int lda, float[] b, int ldb, float[] c0, int ldc, bool acc, string what)
    {
        var one = (float[])c0.Clone();
        Gemm.Multiply(path, ta, tb, m, n, k, a, lda, b, ldb, one, ldc, acc, threads: 1);
        AssertNearScalar(path, ta, tb, m, n, k, a, lda, b, ldb, c0, one, ldc, acc);
        foreach (int threads in new[] { 2, 3, 4 })
        {
            var c = (float[])c0.Clone();
            Gemm.Multiply(path, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, acc, threads);
            AssertBitEqual(one, c, $"{what} ta={ta} tb={tb} acc={acc} threads={threads}");
        }
        var packed = PackedMatrix.Pack(path, tb, k, n, b, ldb, threads: 2);
        foreach (int threads in new[] { 1, 2 })
        {
            var c = (float[])c0.Clone();
            Gemm.Multiply(ta, m, a, lda, packed, c, ldc, acc, threads);
            AssertBitEqual(one, c, $"{what} packed ta={ta} tb={tb} acc={acc} threads={threads}");
        }
    }

    [Theory]
    [InlineData(GemmPath.Vector512)]
    [InlineData(GemmPath.Vector256)]
    public void PlansSplitColumnsForOneSequenceRowsForLargeMAndDepthForTinyOutputs(GemmPath path)
    {
        // One sequence (M = 128) against a wide weight: column groups only, so no thread streams all of B.
        var p = GemmDriver.Plan(128, 3072, 768, path, 2);
        Assert.Equal((2, 1, false), (p.Parts, p.Gm, p.KSplit));
        Assert.True(p.Gn >= 2);
        // A training batch (M = 4096) against a square weight: row groups only, so no thread packs A twice.
        p = GemmDriver.Plan(4096, 768, 768, path, 2);
        Assert.Equal((2, 1, false), (p.Parts, p.Gn, p.KSplit));
        Assert.True(p.Gm >= 2);
        // One tile of output, deep: the depth blocks are split.
        p = GemmDriver.Plan(GemmDriver.TileRows(path), 16, 40000, path, 2);
        Assert.True(p.KSplit && p.Parts == 2 && p.Chunks(40000 / GemmDriver.DepthBlock(40000)) >= 2, p.ToString());
        // The test shapes above reach every kind of split.
        Assert.All(SplitShapes, s => Assert.True(GemmDriver.Plan(s.M, s.N, s.K, path, 2).Parts >= 2, $"{s} runs on one thread"));
        Assert.Contains(SplitShapes, s => GemmDriver.Plan(s.M, s.N, s.K, path, 2).KSplit);
        Assert.Contains(SplitShapes, s => GemmDriver.Plan(s.M, s.N, s.K, path, 4) is { Gm: > 1, Gn: > 1 });
        Assert.Contains(SplitShapes, s => (long)s.K * s.N > GemmDriver.MaxSharedPackFloats);
        // Small products stay on the calling thread.
        Assert.Equal(GemmPlan.Single, GemmDriver.Plan(128, 128, 32, path, 2));
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void LongDepthGroupsMatchScalarTwinAndAreBitIdenticalOnAnyThreadsAndPrepacked(GemmPath path)
    {
        // A weight-gradient shape (depth ≫ rows, columns): summed in two groups of depth blocks, the second into scratch
        // and added at the end. The groups depend on the shape alone, so 1, 2 and 3 threads and a pre-packed B agree bit
        // for bit; a group boundary off by a block or a scratch added twice fails the scalar comparison.
        int m = 200, n = 40, k = 1700;
        Assert.Equal(2, GemmDriver.DepthGroups(m, n, k, GemmDriver.DepthBlock(k)));
        Assert.Equal(1, GemmDriver.DepthGroups(128, n, k, GemmDriver.DepthBlock(k))); // one sequence's rows: not grouped
        // BERT-base FFN weight gradients over 4096 tokens: grouped where op(B) is too wide to pack once and share.
        Assert.Equal(2, GemmDriver.DepthGroups(768, 3072, 4096, GemmDriver.DepthBlock(4096)));
        Assert.Equal(1, GemmDriver.DepthGroups(3072, 768, 4096, GemmDriver.DepthBlock(4096)));
        var rng = new Random(83);
        foreach (var (ta, tb) in Transposes)
            foreach (bool acc in new[] { false, true })
            {
                int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 3;
                var a = Random(rng, (ta ? k : m) * lda); var b = Random(rng, (tb ? n : k) * ldb); var c0 = Random(rng, m * ldc);
                AssertThreadsAndPrepackingAgree(path, ta, tb, m, n, k, a, lda, b, ldb, c0, ldc, acc, $"{path} depth groups");
            }
    }

    [Fact]
    public void LongDepthsAreCutIntoAnEvenNumberOfEqualBlocks()
    {
        // Two depth groups of equal depth need an even block count; short depths keep their one to three blocks.
        foreach (int k in new[] { 1, 16, 100, 384, 385, 1000, 1152, 1153, 1700, 3072, 4096, 4097, 40000 })
        {
            int kc = GemmDriver.DepthBlock(k), blocks = (k + kc - 1) / kc;
            Assert.True(kc % 16 == 0 && kc <= GemmDriver.RoundUp(GemmDriver.KC, 16), $"k={k}: block {kc}");
            Assert.True(blocks < 4 || blocks % 2 == 0, $"k={k}: {blocks} blocks of {kc}");
            Assert.True(k <= kc || (blocks - 1) * kc < k, $"k={k}: an empty last block ({blocks} of {kc})");
        }
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void SharedPackingInColumnSlabsIsBitIdenticalToOneThread(GemmPath path)
    {
        // More rows than a sequence (the shared-packing path) and a B wider than the shared buffer allows (a small limit
        // here, vocabulary-wide in the MLM decoder): packed and computed slab by slab. Plans change no bits, so lowering the
        // limit cannot disturb tests running beside this one.
        long saved = GemmDriver.MaxSharedPackFloats;
        GemmDriver.MaxSharedPackFloats = 1 << 16;
        try
        {
            var rng = new Random(71);
            foreach (var (ta, tb) in Transposes)
            {
                int m = 200, n = 2100, k = 50;
                int lda = ta ? m : k, ldb = tb ? k : n;
                var a = Random(rng, (ta ? k : m) * lda); var b = Random(rng, (tb ? n : k) * ldb); var c0 = Random(rng, m * n);
                var one = (float[])c0.Clone();
                Gemm.Multiply(path, ta, tb, m, n, k, a, lda, b, ldb, one, n, true, threads: 1);
                AssertNearScalar(path, ta, tb, m, n, k, a, lda, b, ldb, c0, one, n, true);
                var two = (float[])c0.Clone();
                Gemm.Multiply(path, ta, tb, m, n, k, a, lda, b, ldb, two, n, true, threads: 2);
                AssertBitEqual(one, two, $"{path} slabs ta={ta} tb={tb}");
            }
        }
        finally { GemmDriver.MaxSharedPackFloats = saved; }
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void PackedMatrixMatchesScalarTwinOnSampledSizes(GemmPath path)
    {
        var rng = new Random(31 + (int)path);
        foreach (var (ta, tb) in Transposes)
            for (int s = 0; s < 12; s++)
            {
                int m = Pick(rng), n = Pick(rng), k = Pick(rng);
                bool acc = rng.Next(2) == 0;
                int lda = (ta ? m : k) + rng.Next(3), ldb = (tb ? k : n) + rng.Next(3), ldc = n + rng.Next(3);
                var a = Random(rng, (ta ? k : m) * lda);
                var b = Random(rng, (tb ? n : k) * ldb);
                var c0 = Random(rng, m * ldc);
                var packed = PackedMatrix.Pack(path, tb, k, n, b, ldb, threads: 1);
                Assert.Equal((k, n, tb, path), (packed.K, packed.N, packed.Transposed, packed.Path));
                var c = (float[])c0.Clone();
                Gemm.Multiply(ta, m, a, lda, packed, c, ldc, acc, threads: 1 + rng.Next(2));
                AssertNearScalar(path, ta, tb, m, n, k, a, lda, b, ldb, c0, c, ldc, acc);
                var unpacked = (float[])c0.Clone();
                Gemm.Multiply(path, ta, tb, m, n, k, a, lda, b, ldb, unpacked, ldc, acc, threads: 1);
                AssertBitEqual(unpacked, c, $"{path} packed vs unpacked ({m},{n},{k}) ta={ta} tb={tb}");
            }
    }

    [Fact]
    public void ScalarPackedMatrixIsThePlainTwin()
    {
        var rng = new Random(41);
        int m = 13, n = 17, k = 19;
        var a = Random(rng, m * k); var b = Random(rng, n * k); var c0 = Random(rng, m * n);
        var packed = PackedMatrix.Pack(GemmPath.Scalar, true, k, n, b, k, threads: 1);
        var c = (float[])c0.Clone();
        Gemm.Multiply(false, m, a, k, packed, c, n, accumulate: true);
        var expected = (float[])c0.Clone();
        ScalarGemm.Multiply(false, true, m, n, k, a, k, b, k, expected, n, accumulate: true);
        AssertBitEqual(expected, c, "scalar packed");
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void RepackTakesTheNewValues(GemmPath path)
    {
        var rng = new Random(51);
        int m = 40, n = 70, k = 90;
        var a = Random(rng, m * k);
        var b1 = Random(rng, n * k); var b2 = Random(rng, n * k);
        var packed = PackedMatrix.Pack(path, true, k, n, b1, k, threads: 1);
        packed.Repack(b2, k);
        var c = new float[m * n];
        Gemm.Multiply(false, m, a, k, packed, c, n);
        var expected = new float[m * n];
        Gemm.Multiply(path, false, true, m, n, k, a, k, b2, k, expected, n, false, threads: 1);
        AssertBitEqual(expected, c, "repacked");
    }

    [Fact]
    public void CallsInsideAParallelLoopRunOnTheirOwnThreadAndAgree()
    {
        // The pool is owned by the loop, so each body's two-thread product runs on its own thread.
        var rng = new Random(61);
        int m = 64, n = 300, k = 200;
        var a = Random(rng, 4 * m * k); var b = Random(rng, n * k);
        var expected = new float[4 * m * n];
        for (int i = 0; i < 4; i++)
            Gemm.Multiply(false, true, m, n, k, a.AsSpan(i * m * k), k, b, k, expected.AsSpan(i * m * n), n, threads: 1);
        var packed = PackedMatrix.Pack(true, k, n, b, k);
        var got = new float[4 * m * n]; var gotPacked = new float[4 * m * n];
        EngineParallel.For(4, 2, i =>
        {
            Gemm.Multiply(false, true, m, n, k, a.AsSpan(i * m * k), k, b, k, got.AsSpan(i * m * n), n, threads: 2);
            Gemm.Multiply(false, m, a.AsSpan(i * m * k), k, packed, gotPacked.AsSpan(i * m * n), n, threads: 2);
        });
        AssertBitEqual(expected, got, "nested");
        AssertBitEqual(expected, gotPacked, "nested packed");
    }

    [Fact]
    public void PackedMatrixBadArgumentsThrowClearErrors()
    {
        var e = Assert.Throws<ArgumentException>(() => PackedMatrix.Pack(true, 4, 3, new float[11], 4));
        Assert.Contains("B needs 12 floats", e.Message);
        e = Assert.Throws<ArgumentException>(() => PackedMatrix.Pack(false, 4, 3, new float[12], 2));
        Assert.Contains("ldb=2", e.Message);
        var packed = PackedMatrix.Pack(false, 4, 3, new float[12], 3);
        e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, 2, new float[7], 4, packed, new float[6], 3));
        Assert.Contains("A needs 8 floats", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, 2, new float[8], 4, packed, new float[5], 3));
        Assert.Contains("C needs 6 floats", e.Message);
        e = Assert.Throws<ArgumentException>(() => packed.Repack(new float[12], 2));
        Assert.Contains("ldb=2", e.Message);
    }

    private static void AssertBitEqual(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: index {i} is {actual[i]:R}, the one-thread product gives {expected[i]:R}");
    }

    /// <summary>got against the scalar twin from c0, with the tolerance of <see cref="CheckOne"/>; padding columns untouched.</summary>
    private static void AssertNearScalar(GemmPath path, bool ta, bool tb, int m, int n, int k, float[] a, int lda, float[] b, int ldb,
        float[] c0, float[] got, int ldc, bool accumulate)
    {
        var expected = (float[])c0.Clone();
        ScalarGemm.Multiply(ta, tb, m, n, k, a, lda, b, ldb, expected, ldc, accumulate);
        var scale = new float[m * ldc];
        ScalarGemm.Multiply(ta, tb, m, n, k, a.Select(Math.Abs).ToArray(), lda, b.Select(Math.Abs).ToArray(), ldb, scale, ldc);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < ldc; j++)
            {
                int at = i * ldc + j;
                if (j >= n)
                {
                    Assert.True(got[at] == c0[at], $"{path} wrote padding C[{i},{j}] for ({m},{n},{k}) ta={ta} tb={tb}");
                    continue;
                }
                float tol = 2 * (k + 2) * Eps * (scale[at] + (accumulate ? Math.Abs(c0[at]) : 0)) + 1e-30f;
                if (!(Math.Abs(got[at] - expected[at]) <= tol))
                    Assert.Fail($"{path} ({m},{n},{k}) ta={ta} tb={tb} acc={accumulate}: C[{i},{j}] = {got[at]}, want {expected[at]} ± {tol}");
            }
    }

    [Fact]
    public void BadArgumentsThrowClearErrors()
    {
        var a = new float[6];
        var c = new float[4];
        var e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 2, 2, 3, a, 3, new float[5], 2, c, 2));
        Assert.Contains("B needs 6 floats", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 2, 2, 3, a, 2, new float[6], 2, c, 2));
        Assert.Contains("lda=2", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, -1, 2, 3, a, 3, new float[6], 2, c, 2));
        Assert.Contains("m=-1", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 2, 2, 3, a, 3, new float[6], 2, c, 2, threads: -1));
        Assert.Contains("threads", e.Message);
        Assert.Throws<ArgumentException>(() => Gemm.Path = (GemmPath)42);
        e = Assert.Throws<ArgumentException>(() => Gemm.MultiplyBatched(2, false, false, 2, 2, 3, new float[12], 6, 3, new float[6], 0, 2, new float[8], 1, 2));
        Assert.Contains("overlap", e.Message);
    }

    private static readonly (bool, bool)[] Transposes = [(false, false), (false, true), (true, false), (true, true)];

    private static int Pick(Random rng) => rng.Next(3) == 0 ? rng.Next(1, 257) : EdgeDims[rng.Next(EdgeDims.Length)];

    private static float[] Random(Random rng, int length)
    {
        var x = new float[length];
        for (int i = 0; i < length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    private static void CheckOne(GemmPath path, bool ta, bool tb, int m, int n, int k, bool accumulate, int threads, bool padLd, Random rng)
    {
        int aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n;
        int lda = aCols + (padLd ? 1 + rng.Next(5) : 0);
        int ldb = bCols + (padLd ? 1 + rng.Next(5) : 0);
        int ldc = n + (padLd ? 1 + rng.Next(5) : 0);
        var a = Random(rng, Math.Max(1, aRows * lda));
        var b = Random(rng, Math.Max(1, bRows * ldb));
        var c0 = Random(rng, m * ldc);
        var expected = (float[])c0.Clone();
        ScalarGemm.Multiply(ta, tb, m, n, k, a, lda, b, ldb, expected, ldc, accumulate);
        var absA = a.Select(Math.Abs).ToArray();
        var absB = b.Select(Math.Abs).ToArray();
        var scale = new float[m * ldc];
        ScalarGemm.Multiply(ta, tb, m, n, k, absA, lda, absB, ldb, scale, ldc);

        var c = (float[])c0.Clone();
        Gemm.Multiply(path, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate, threads);

        for (int i = 0; i < m; i++)
            for (int j = 0; j < ldc; j++)
            {
                int at = i * ldc + j;
                if (j >= n)
                {
                    Assert.True(c[at] == c0[at], $"{path} wrote padding C[{i},{j}] for ({m},{n},{k}) ta={ta} tb={tb}");
                    continue;
                }
                float tol = 2 * (k + 2) * Eps * (scale[at] + (accumulate ? Math.Abs(c0[at]) : 0)) + 1e-30f;
                Assert.True(Math.Abs(c[at] - expected[at]) <= tol,
                    $"{path} ({m},{n},{k}) ta={ta} tb={tb} acc={accumulate} threads={threads} ld=({lda},{ldb},{ldc}): C[{i},{j}] = {c[at]}, want {expected[at]} ± {tol}");
            }
    }
}
