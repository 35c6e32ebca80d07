using SpeedLimit.Model.Layers;

namespace SpeedLimit.Bench;

/// <summary>
/// Attention forward + backward on both per-head product paths, side by side: GEMM calls and the direct loops
/// (<c>SmallProduct</c>) that short sequences take, batch 32 × 4 heads, over sequence lengths from a short sentence's
/// to the training bench's 128; which path the engine picks is printed beside each shape.
/// </summary>
public sealed class AttentionBench : IBenchSection
{
    public string Name => "attention";
    public string Description => "attention forward + backward: direct small products vs GEMM per head, batch 32 × 4 heads, 1 and 2 threads";

    public void Run(BenchReport report, bool quick)
    {
        int runs = quick ? 5 : 21;
        report.Note($"  load before: {Affinity.LoadAverage()} (/proc/loadavg); medians of {runs} interleaved runs; "
            + $"the engine takes the direct path where T × head size ≤ {Attention.DirectMaxWork}");
        const int batch = 32, heads = 4;
        foreach (var (T, hs) in new[] { (8, 16), (14, 48), (20, 48), (20, 64), (24, 64), (32, 48), (128, 64) })
        {
            int hidden = hs * heads, n = batch * T * hidden;
            var rng = new Random(T * 1000 + hs);
            float[] Random(int length) => Enumerable.Range(0, length).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
            var q = Random(n); var k = Random(n); var v = Random(n); var dCtx = Random(n);
            var mask = Enumerable.Repeat(1, batch * T).ToArray();
            var probs = new float[batch * heads * T * T]; var scratch = new float[probs.Length];
            var ctx = new float[n]; var dq = new float[n]; var dk = new float[n]; var dv = new float[n];
            string taken = T * hs <= Attention.DirectMaxWork ? "direct" : "gemm";
            foreach (int threads in new[] { 1, 2 })
            {
                Action Pass(bool direct) => () =>
                {
                    Attention.Forward(q, k, v, mask, probs, ctx, batch, T, hidden, heads, threads, direct);
                    Attention.Backward(q, k, v, probs, dCtx, dq, dk, dv, scratch, batch, T, hidden, heads, threads, accumulate: false, direct);
                };
                var (viaGemm, viaDirect) = Timing.Interleaved(Pass(false), Pass(true), runs);
                string name = $"attention T={T} head={hs} t{threads}";
                report.Figure($"{name} gemm", viaGemm * 1e3, "ms");
                report.Figure($"{name} direct", viaDirect * 1e3, "ms");
                report.Figure($"{name} gemm/direct ({taken} taken)", viaGemm / viaDirect, "ratio");
            }
        }
        report.Note($"  load after: {Affinity.LoadAverage()}");
    }
}
