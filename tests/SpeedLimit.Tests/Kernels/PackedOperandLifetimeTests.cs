using SpeedLimit.Kernels;

namespace SpeedLimit.Tests.Kernels;

/// <summary>
/// A packed operand passed as a temporary (no caller holds it) must live until the product is done: the kernels read
/// its pinned storage through pointers, and pinned is not rooted. Before <c>GC.KeepAlive</c> in <see cref="Gemm"/>,
/// this crashed the test host with an access violation within a few hundred products while another thread collected
/// garbage and refilled the pinned heap (the "Test Run Aborted" seen now and then in the GEMM tests); a failure here is
/// therefore likely a crashed run rather than a failed assertion.
/// </summary>
public class PackedOperandLifetimeTests
{
    private const int Products = 400;

    [Fact]
    public void TemporaryPackedMatrixSurvivesACollectionDuringTheProduct()
    {
        const int m = 64, n = 512, k = 512;
        var rng = new Random(5);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)rng.NextDouble()).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => (float)rng.NextDouble()).ToArray();
        var expected = new float[m * n];
        Gemm.Multiply(false, false, m, n, k, a, k, b, n, expected, n, threads: 1);
        int wrong = UnderGarbageCollection(() =>
        {
            var c = new float[m * n];
            Gemm.Multiply(false, m, a, k, PackedMatrix.Pack(false, k, n, b, n, threads: 1), c, n, threads: 1);
            return c.AsSpan().SequenceEqual(expected);
        });
        Assert.Equal(0, wrong);
    }

    /// <summary>Runs <paramref name="product"/> <see cref="Products"/> times while another thread collects and refills the pinned heap; returns the wrong results.</summary>
    private static int UnderGarbageCollection(Func<bool> product)
    {
        bool stop = false;
        var collector = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                GC.Collect();
                GC.AllocateUninitializedArray<float>(1 << 18, pinned: true).AsSpan().Fill(float.NaN);
            }
        }) { IsBackground = true };
        collector.Start();
        int wrong = 0;
        try
        {
            for (int i = 0; i < Products; i++)
                if (!product()) wrong++;
        }
        finally
        {
            Volatile.Write(ref stop, true);
            collector.Join();
        }
        return wrong;
    }
}
