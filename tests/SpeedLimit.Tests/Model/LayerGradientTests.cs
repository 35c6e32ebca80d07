using SpeedLimit.Model.Layers;
using static SpeedLimit.Tests.Model.FiniteDifference;

namespace SpeedLimit.Tests.Model;

/// <summary>Each layer's backward against central finite differences of loss = Σ c ⊙ y.</summary>
public class LayerGradientTests
{
    [Fact]
    public void LinearBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        int rows = 5, inDim = 7, outDim = 3;
        var x = RandomArray(rng, rows * inDim); var w = RandomArray(rng, outDim * inDim); var b = RandomArray(rng, outDim);
        var c = RandomArray(rng, rows * outDim);
        var y = new float[rows * outDim];
        double Loss() { Linear.Forward(x, w, b, y, rows, inDim, outDim, 1); return Dot(y, c); }
        var dx = new float[x.Length]; var dw = new float[w.Length]; var db = new float[b.Length];
        Linear.Backward(x, w, c, dx, dw, db, rows, inDim, outDim, 1);
        Check("dx", Loss, x, 0, x.Length, dx, 0, rng);
        Check("dW", Loss, w, 0, w.Length, dw, 0, rng);
        Check("db", Loss, b, 0, b.Length, db, 0, rng);
    }

    [Fact]
    public void LayerNormBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(2);
        int rows = 4, dim = 9;
        var x = RandomArray(rng, rows * dim, 2f); var g = RandomArray(rng, dim); var beta = RandomArray(rng, dim);
        var c = RandomArray(rng, rows * dim);
        var y = new float[x.Length]; var mean = new float[rows]; var rstd = new float[rows];
        double Loss() { LayerNorm.Forward(x, g, beta, y, mean, rstd, rows, dim, 1e-5f); return Dot(y, c); }
        Loss();
        var dx = new float[x.Length]; var dg = new float[dim]; var db = new float[dim];
        LayerNorm.Backward(x, g, mean, rstd, c, dx, dg, db, rows, dim, new float[2 * dim]);
        Check("dx", Loss, x, 0, x.Length, dx, 0, rng, samples: 36);
        Check("dgamma", Loss, g, 0, dim, dg, 0, rng);
        Check("dbeta", Loss, beta, 0, dim, db, 0, rng);
    }

    [Fact]
    public void GeluBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(3);
        var x = RandomArray(rng, 1500, 4f); // crosses the 512-element chunk boundary
        var c = RandomArray(rng, x.Length);
        var y = new float[x.Length];
        double Loss() { Gelu.Forward(x, y); return Dot(y, c); }
        var dx = new float[x.Length];
        Gelu.Backward(x, c, dx);
        Check("dx", Loss, x, 0, x.Length, dx, 0, rng, samples: 40);
    }

    [Fact]
    public void ErfMatchesSeriesReference()
    {
        // Reference: Maclaurin series in double (|x| ≤ 3) and erf = 1 beyond float resolution.
        static double ErfSeries(double x)
        {
            double sum = 0, term = x;
            for (int n = 0; n < 200; n++)
            {
                sum += term / (2 * n + 1);
                term *= -x * x / (n + 1);
            }
            return 2 / Math.Sqrt(Math.PI) * sum;
        }
        var x = new float[601];
        for (int i = 0; i < x.Length; i++) x[i] = -3f + i * 0.01f;
        var y = new float[x.Length];
        Gelu.Forward(x, y);
        for (int i = 0; i < x.Length; i++)
        {
            Assert.InRange(Gelu.Erf(x[i]) - ErfSeries(x[i]), -3e-7, 3e-7);
            double geluRef = 0.5 * x[i] * (1 + ErfSeries(x[i] / Math.Sqrt(2)));
            Assert.InRange(y[i] - geluRef, -5e-7, 5e-7);
        }
    }

    [Fact]
    public void AttentionBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(4);
        int batch = 2, T = 5, heads = 3, H = 6 * heads, n = batch * T * H;
        var q = RandomArray(rng, n); var k = RandomArray(rng, n); var v = RandomArray(rng, n);
        int[] mask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]; // second sequence padded
        var c = RandomArray(rng, n);
        var probs = new float[batch * heads * T * T]; var ctx = new float[n];
        double Loss() { Attention.Forward(q, k, v, mask, probs, ctx, batch, T, H, heads, 1); return Dot(ctx, c); }
        Loss();
        var dq = new float[n]; var dk = new float[n]; var dv = new float[n];
        Attention.Backward(q, k, v, probs, c, dq, dk, dv, new float[probs.Length], batch, T, H, heads, 2);
        Check("dQ", Loss, q, 0, n, dq, 0, rng, samples: 40);
        Check("dK", Loss, k, 0, n, dk, 0, rng, samples: 40);
        Check("dV", Loss, v, 0, n, dv, 0, rng, samples: 40);
        // a padded key gets (almost) no attention
        Assert.True(probs[(1 * heads + 0) * T * T + 0 * T + 4] < 1e-3f);
        // every element of dQ, dK, dV is written once: writing them (over garbage) is adding them to zeros
        var wq = RandomArray(rng, n); var wk = RandomArray(rng, n); var wv = RandomArray(rng, n);
        Attention.Backward(q, k, v, probs, c, wq, wk, wv, new float[probs.Length], batch, T, H, heads, 2, accumulate: false);
        Assert.Equal(dq, wq);
        Assert.Equal(dk, wk);
        Assert.Equal(dv, wv);
    }

    [Fact]
    public void AttentionStaysFiniteForHugeScores()
    {
        int T = 3, H = 2;
        float[] q = [100, 100, 100, 100, 100, 100], k = [100, 100, 90, 90, 80, 80], v = [1, 2, 3, 4, 5, 6];
        var probs = new float[T * T]; var ctx = new float[T * H];
        Attention.Forward(q, k, v, [1, 1, 1], probs, ctx, 1, T, H, 1, 1);
        Assert.All(ctx, x => Assert.True(float.IsFinite(x)));
        Assert.Equal(1f, probs[0], 1e-6f); // key 0 dominates: scores 14142 vs 12728 vs 11314
        Assert.Equal(1f, ctx[0], 1e-5f);
    }

    [Fact]
    public void ThreadedGeluMatchesSingleThreaded()
    {
        var rng = new Random(5);
        int n = 100_003; // odd, several parts
        var x = RandomArray(rng, n, 4f); var dy = RandomArray(rng, n);
        var y1 = new float[n]; var y2 = new float[n];
        Gelu.Forward(x, y1);
        Gelu.Forward(x, y2, n, threads: 2);
        Assert.Equal(y1, y2);
        var d1 = new float[n]; var d2 = new float[n];
        Gelu.Backward(x, dy, d1);
        Gelu.Backward(x, dy, d2, n, threads: 2);
        Assert.Equal(d1, d2);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void ThreadedLayerNormBackwardIsTheSerialPassBitForBit(int threads)
    {
        var rng = new Random(20 + threads);
        int rows = 509, dim = 203; // dim not a multiple of 16 or 8: a short last column run and a scalar tail
        var x = RandomArray(rng, rows * dim, 2f); var g = RandomArray(rng, dim); var beta = RandomArray(rng, dim);
        var y = new float[x.Length]; var mean = new float[rows]; var rstd = new float[rows];
        LayerNorm.Forward(x, g, beta, y, mean, rstd, rows, dim, 1e-5f);
        var dy = RandomArray(rng, rows * dim);
        var start = RandomArray(rng, rows * dim); // dx accumulates onto what is there
        var dgStart = RandomArray(rng, dim); var dbStart = RandomArray(rng, dim);
        (float[] Dx, float[] Dg, float[] Db) Run(int t, bool accumulate)
        {
            var dx = accumulate ? (float[])start.Clone() : RandomArray(new Random(99), rows * dim); // overwritten: garbage first
            var dg = (float[])dgStart.Clone(); var db = (float[])dbStart.Clone();
            LayerNorm.Backward(x, g, mean, rstd, dy, dx, dg, db, rows, dim, new float[2 * dim], t, accumulate);
            return (dx, dg, db);
        }
        foreach (bool accumulate in new[] { true, false })
        {
            var serial = Run(1, accumulate);
            var threaded = Run(threads, accumulate);
            Assert.Equal(serial.Dx, threaded.Dx);
            Assert.Equal(serial.Dg, threaded.Dg);
            Assert.Equal(serial.Db, threaded.Db);
        }
        // writing dx is adding it to zeros
        var zeros = new float[rows * dim];
        LayerNorm.Backward(x, g, mean, rstd, dy, zeros, new float[dim], new float[dim], rows, dim, new float[2 * dim]);
        Assert.Equal(zeros, Run(threads, accumulate: false).Dx);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void ThreadedLinearBiasAndInputGradientsAreTheSerialOnes(int threads)
    {
        var rng = new Random(30 + threads);
        int rows = 700, inDim = 40, outDim = 150; // 150: a short last column run of the bias gradient
        var x = RandomArray(rng, rows * inDim); var w = RandomArray(rng, outDim * inDim); var b = RandomArray(rng, outDim);
        var dy = RandomArray(rng, rows * outDim);
        var y1 = new float[rows * outDim]; var y2 = new float[rows * outDim];
        Linear.Forward(x, w, b, y1, rows, inDim, outDim, 1);
        Linear.Forward(x, w, b, y2, rows, inDim, outDim, threads);
        Assert.Equal(y1, y2);
        var dbStart = RandomArray(rng, outDim);
        var dx1 = new float[rows * inDim]; var dw1 = new float[outDim * inDim]; var db1 = (float[])dbStart.Clone();
        Linear.Backward(x, w, dy, dx1, dw1, db1, rows, inDim, outDim, 1);
        var dx2 = RandomArray(rng, rows * inDim); var dw2 = new float[outDim * inDim]; var db2 = (float[])dbStart.Clone();
        Linear.Backward(x, w, dy, dx2, dw2, db2, rows, inDim, outDim, threads, accumulateDx: false); // garbage in dx is overwritten
        Assert.Equal(dx1, dx2);
        Assert.Equal(dw1, dw2);
        Assert.Equal(db1, db2);
    }

    [Fact]
    public void GeluBackwardWritingIsAddingToZeros()
    {
        var rng = new Random(6);
        int n = 70_001;
        var x = RandomArray(rng, n, 4f); var dy = RandomArray(rng, n);
        var added = new float[n];
        Gelu.Backward(x, dy, added, n, threads: 2);
        var written = RandomArray(rng, n);
        Gelu.Backward(x, dy, written, n, threads: 2, accumulate: false);
        Assert.Equal(added, written);
    }
}
