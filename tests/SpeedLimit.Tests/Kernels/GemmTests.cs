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
