using SpeedLimit.Kernels;

namespace SpeedLimit.Tests.Kernels;

/// <summary>
/// Every integer path against the scalar twin, exactly (integer arithmetic has no tolerance): sizes 1..256
/// with primes and tile ± 1 (MR 4/6/8, NR 16/32, depth unit 2/4), every zero point, extreme operands that
/// would saturate an int16 pair sum, and row/column splits on two threads.
/// </summary>
public class Int8GemmTests
{
    private static readonly int[] EdgeDims = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 97, 127, 128, 129, 255, 256];

    public static IEnumerable<object[]> SimdPaths() =>
        Int8Gemm.SupportedPaths.Where(p => p != Int8GemmPath.Scalar).Select(p => new object[] { p });

    [Fact]
    public void ThisMachineHasAnIntegerSimdPath()
    {
        // Without one the theories below would have no data and test nothing.
        Assert.NotEqual(Int8GemmPath.Scalar, Int8Gemm.AutoPath);
        Assert.Contains(Int8GemmPath.Avx2, Int8Gemm.SupportedPaths);
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void SampledShapesMatchScalarTwinExactly(Int8GemmPath path)
    {
        var rng = new Random(100 + (int)path);
        for (int s = 0; s < 60; s++)
        {
            int m = Pick(rng), n = Pick(rng), k = Pick(rng);
            CheckOne(path, m, n, k, (byte)rng.Next(256), threads: 1 + rng.Next(2), pad: rng.Next(2) == 0, rng, extreme: s % 7 == 0);
        }
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void LargeShapesSplitOverThreadsMatchScalarTwin(Int8GemmPath path)
    {
        var rng = new Random(200 + (int)path);
        // Rows split (a dev batch), columns split too (one sequence against a wide layer), depth beyond 1,000.
        CheckOne(path, 517, 130, 67, 131, threads: 2, pad: true, rng, extreme: false);
        CheckOne(path, 64, 1031, 264, 7, threads: 2, pad: false, rng, extreme: false);
        CheckOne(path, 13, 97, 1537, 255, threads: 3, pad: true, rng, extreme: true);
    }

    [Theory]
    [MemberData(nameof(SimdPaths))]
    public void ExtremeOperandsDoNotSaturate(Int8GemmPath path)
    {
        // 255·127 + 255·127 overflows int16 (vpmaddubsw would saturate); the sums here reach 255·127·1016.
        foreach (var (xv, zp, wv) in new (byte, byte, sbyte)[] { (255, 0, 127), (255, 0, -127), (0, 255, 127), (255, 0, -128), (0, 255, -128) })
        {
            int m = 9, n = 33, k = 1016;
            var x = Enumerable.Repeat(xv, m * k).ToArray();
            var w = Enumerable.Repeat(wv, n * k).ToArray();
            var acc = new int[m * n];
            Int8Gemm.Multiply(m, x, k, zp, PackedInt8Matrix.Pack(w, n, k, path), acc, n, threads: 1);
            Assert.All(acc, v => Assert.Equal((xv - zp) * wv * k, v));
        }
    }

    [Theory]
    [InlineData(Int8GemmPath.AvxVnni)]
    [InlineData(Int8GemmPath.Avx512BW)]
    [InlineData(Int8GemmPath.Avx2)]
    public void EveryPathsPackingAndCorrectionMatchScalarTwinOnAnyCpu(Int8GemmPath path)
    {
        // The path's packed layout, zero-point correction and edge tiles under a scalar emulation of its kernel,
        // so the AVX-VNNI layout is tested on CPUs without AVX-VNNI (only the instruction itself then is not).
        var rng = new Random(300 + (int)path);
        for (int s = 0; s < 12; s++)
            CheckOne(path, Pick(rng) % 40 + 1, Pick(rng) % 70 + 1, Pick(rng), (byte)rng.Next(256), threads: 1 + rng.Next(2), pad: true, rng,
                extreme: s % 3 == 0, emulated: true);
    }

    public static IEnumerable<object[]> DequantizeCases() =>
        Int8Gemm.SupportedPaths.Select(p => new object[] { p, false })
            .Concat(new[] { Int8GemmPath.AvxVnni, Int8GemmPath.Avx512BW, Int8GemmPath.Avx2 }.Select(p => new object[] { p, true }));

    [Theory]
    [MemberData(nameof(DequantizeCases))]
    public void DequantizingFormIsTheScalarFormulaBitForBit(Int8GemmPath path, bool emulated)
    {
        // y = float(acc)·m + b, two roundings, per tensor and per output, with and without bias, edge tiles included.
        var rng = new Random(400 + (int)path);
        for (int s = 0; s < 10; s++)
        {
            int m = Pick(rng) % 70 + 1, n = Pick(rng), k = Pick(rng);
            byte zp = (byte)rng.Next(256);
            var x = new byte[m * k]; rng.NextBytes(x);
            var w = new sbyte[n * k]; for (int i = 0; i < w.Length; i++) w[i] = (sbyte)rng.Next(-127, 128);
            bool perOutput = s % 2 == 0, withBias = s % 3 != 0;
            var mult = Enumerable.Range(0, perOutput ? n : 1).Select(_ => (float)(rng.NextDouble() * 1e-3)).ToArray();
            var bias = withBias ? Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray() : [];
            var acc = new int[m * n];
            ScalarInt8Gemm.Multiply(m, n, k, x, k, zp, w, acc, n);
            int ldy = n + 3;
            var y = Enumerable.Repeat(-7f, m * ldy).ToArray();
            var packed = emulated ? PackedInt8Matrix.PackEmulated(w, n, k, path) : PackedInt8Matrix.Pack(w, n, k, path);
            Int8Gemm.MultiplyDequantize(m, x, k, zp, packed, mult, bias, y, ldy, threads: 1 + s % 2);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < ldy; j++)
                {
                    float want = j >= n ? -7f : acc[i * n + j] * mult[perOutput ? j : 0];
                    if (j < n && withBias) want += bias[j];
                    Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(y[i * ldy + j]),
                        $"{path}{(emulated ? " emulated" : "")} ({m},{n},{k}) y[{i},{j}] = {y[i * ldy + j]:R}, want {want:R}");
                }
        }
    }

    [Fact]
    public void ScalarPathIsTheTwin()
    {
        var rng = new Random(5);
        CheckOne(Int8GemmPath.Scalar, 13, 17, 19, 77, threads: 2, pad: true, rng, extreme: false);
    }

    [Fact]
    public void BadArgumentsThrowClearErrors()
    {
        var e = Assert.Throws<ArgumentException>(() => PackedInt8Matrix.Pack(new sbyte[5], 2, 3));
        Assert.Contains("(2,3) needs 6", e.Message);
        var w = PackedInt8Matrix.Pack(new sbyte[6], 2, 3);
        e = Assert.Throws<ArgumentException>(() => Int8Gemm.Multiply(2, new byte[5], 3, 0, w, new int[4], 2));
        Assert.Contains("x needs 6", e.Message);
        e = Assert.Throws<ArgumentException>(() => Int8Gemm.Multiply(2, new byte[6], 3, 0, w, new int[3], 2));
        Assert.Contains("acc needs 4", e.Message);
        e = Assert.Throws<ArgumentException>(() => Int8Gemm.Multiply(2, new byte[6], 2, 0, w, new int[4], 2));
        Assert.Contains("ldx=2", e.Message);
        Assert.Throws<ArgumentException>(() => PackedInt8Matrix.Pack(new sbyte[6], 2, 3, (Int8GemmPath)42));
    }

    private static int Pick(Random rng) => rng.Next(3) == 0 ? rng.Next(1, 257) : EdgeDims[rng.Next(EdgeDims.Length)];

    private static void CheckOne(Int8GemmPath path, int m, int n, int k, byte zp, int threads, bool pad, Random rng, bool extreme, bool emulated = false)
    {
        int ldx = k + (pad ? 1 + rng.Next(5) : 0), ldc = n + (pad ? 1 + rng.Next(5) : 0);
        var x = new byte[m * ldx];
        var w = new sbyte[n * k];
        for (int i = 0; i < x.Length; i++) x[i] = extreme ? (byte)(rng.Next(2) * 255) : (byte)rng.Next(256);
        for (int i = 0; i < w.Length; i++) w[i] = extreme ? (sbyte)(rng.Next(2) == 0 ? 127 : -127) : (sbyte)rng.Next(-127, 128);
        var sentinel = new int[m * ldc];
        for (int i = 0; i < sentinel.Length; i++) sentinel[i] = rng.Next();
        var expected = (int[])sentinel.Clone();
        ScalarInt8Gemm.Multiply(m, n, k, x, ldx, zp, w, expected, ldc);
        var got = (int[])sentinel.Clone();
        var packed = emulated ? PackedInt8Matrix.PackEmulated(w, n, k, path) : PackedInt8Matrix.Pack(w, n, k, path);
        Int8Gemm.Multiply(m, x, ldx, zp, packed, got, ldc, threads);
        for (int i = 0; i < got.Length; i++)
            if (got[i] != expected[i])
                Assert.Fail($"{path}{(emulated ? " emulated" : "")} ({m},{n},{k}) zp={zp} threads={threads} ld=({ldx},{ldc}): acc[{i / ldc},{i % ldc}] = {got[i]}, want {expected[i]}"
                    + (i % ldc >= n ? " (padding written)" : ""));
    }
}
