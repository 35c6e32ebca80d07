using SpeedLimit.Kernels;
using SpeedLimit.Model.Layers;
using static SpeedLimit.Tests.Model.FiniteDifference;

namespace SpeedLimit.Tests.Kernels;

/// <summary>
/// The direct small product against its scalar twin (a fused multiply-add chain per element, bit for bit) and against
/// Gemm (the same bits, which lets attention pick either path by size); attention on both paths.
/// </summary>
public class SmallProductTests
{
    public static TheoryData<bool, bool> Modes => new() { { false, false }, { false, true }, { true, false }, { true, true } };

    [Theory]
    [MemberData(nameof(Modes))]
    public void EveryShape_IsTheScalarFmaChain_BitForBit(bool transA, bool accumulate)
    {
        var rng = new Random(transA ? 3 : 5);
        int[] sizes = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 31, 32, 33, 48, 64, 65];
        foreach (int m in sizes)
            foreach (int n in sizes)
                foreach (int k in new[] { 0, 1, 6, 17, 64 })
                {
                    int lda = (transA ? m : k) + 3, ldb = n + 2, ldc = n + 5; // padded strides
                    var a = RandomArray(rng, Math.Max(1, (transA ? k : m) * lda));
                    var b = RandomArray(rng, Math.Max(1, k * ldb));
                    var c = RandomArray(rng, m * ldc);
                    var expected = (float[])c.Clone();
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++)
                        {
                            float acc = 0f;
                            for (int s = 0; s < k; s++) acc = MathF.FusedMultiplyAdd(transA ? a[s * lda + i] : a[i * lda + s], b[s * ldb + j], acc);
                            expected[i * ldc + j] = accumulate ? expected[i * ldc + j] + acc : acc;
                        }
                    SmallProduct.Multiply(transA, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
                    for (int at = 0; at < c.Length; at++) // padding columns keep their values
                        if (BitConverter.SingleToInt32Bits(c[at]) != BitConverter.SingleToInt32Bits(expected[at]))
                            Assert.Fail($"({m},{n},{k}) transA={transA} acc={accumulate}: C[{at / ldc},{at % ldc}] = {c[at]:R}, the FMA chain gives {expected[at]:R}");
                }
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void Shapes_WithinOneDepthBlock_GiveGemmsBits(bool transA, bool accumulate)
    {
        var rng = new Random(11);
        foreach (var (m, n, k) in new[] { (20, 20, 64), (20, 64, 20), (37, 48, 37), (64, 16, 64), (5, 6, 48), (64, 64, 64) })
        {
            var a = RandomArray(rng, m * k);
            var b = RandomArray(rng, k * n);
            var c = RandomArray(rng, m * n);
            var viaGemm = (float[])c.Clone();
            Gemm.Multiply(transA, false, m, n, k, a, transA ? m : k, b, n, viaGemm, n, accumulate, 1);
            SmallProduct.Multiply(transA, m, n, k, a, transA ? m : k, b, n, c, n, accumulate);
            Assert.Equal(viaGemm, c);
        }
    }

    [Theory]
    [InlineData(1, 16, 1)]
    [InlineData(7, 6, 2)]
    [InlineData(14, 48, 2)]
    [InlineData(20, 64, 3)]
    [InlineData(33, 16, 2)]
    [InlineData(64, 64, 1)]
    public void Attention_DirectAndGemmPaths_GiveTheSameBits(int T, int hs, int threads)
    {
        var rng = new Random(T * 100 + hs);
        int batch = 5, heads = 4, H = hs * heads, n = batch * T * H;
        var q = RandomArray(rng, n, 2f); var k = RandomArray(rng, n, 2f); var v = RandomArray(rng, n);
        var mask = Enumerable.Range(0, batch * T).Select(i => i / T == 1 && i % T >= (T + 1) / 2 ? 0 : 1).ToArray(); // one padded sequence
        var dCtx = RandomArray(rng, n);
        (float[] Probs, float[] Ctx, float[] Dq, float[] Dk, float[] Dv) Run(bool direct)
        {
            var probs = new float[batch * heads * T * T]; var ctx = new float[n];
            Attention.Forward(q, k, v, mask, probs, ctx, batch, T, H, heads, threads, direct);
            var dq = new float[n]; var dk = new float[n]; var dv = new float[n];
            Attention.Backward(q, k, v, probs, dCtx, dq, dk, dv, new float[probs.Length], batch, T, H, heads, threads, accumulate: false, direct);
            Attention.Backward(q, k, v, probs, dCtx, dq, dk, dv, new float[probs.Length], batch, T, H, heads, threads, accumulate: true, direct);
            return (probs, ctx, dq, dk, dv);
        }
        var viaGemm = Run(direct: false);
        var direct = Run(direct: true);
        Assert.Equal(viaGemm.Probs, direct.Probs);
        Assert.Equal(viaGemm.Ctx, direct.Ctx);
        Assert.Equal(viaGemm.Dq, direct.Dq);
        Assert.Equal(viaGemm.Dk, direct.Dk);
        Assert.Equal(viaGemm.Dv, direct.Dv);
    }

    [Fact]
    public void ShortStridesOrOperands_AreRejected()
    {
        var x = new float[64];
        Assert.Throws<ArgumentException>(() => SmallProduct.Multiply(false, 4, 4, 4, x, 3, x, 4, x, 4, false));
        Assert.Throws<ArgumentException>(() => SmallProduct.Multiply(false, 4, 4, 8, x, 8, new float[20], 4, x, 4, false));
        Assert.Throws<ArgumentException>(() => SmallProduct.Multiply(true, 4, 4, 4, x, 4, x, 4, new float[10], 4, false));
    }
}
