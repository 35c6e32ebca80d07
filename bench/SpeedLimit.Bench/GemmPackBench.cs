using System.Runtime.InteropServices;
using SpeedLimit.Kernels;

namespace SpeedLimit.Bench;

/// <summary>
/// What packing costs a product that packs its operands in the call, against what memory allows: the time to pack the
/// operands of a few `gemm` shapes as one call does (op(B) for the 128-row weight products; op(A) and op(B) for the
/// K = 4096 weight gradients) beside a plain copy of as many bytes, with the operand in cache ("warm", just read) and
/// evicted ("cold", 96 MiB written in between), and the ceiling that puts on GEMM ÷ FMA peak when the packing does not
/// overlap the multiply-adds: t_fma ÷ (t_fma + t_pack), t_fma the product's multiply-adds at the peak timed in the same run.
/// </summary>
public sealed unsafe class GemmPackBench : IBenchSection
{
    public string Name => "gemm-pack";
    public string Description => "packing a product's operands ÷ copying as many bytes, and the ceiling it puts on GEMM ÷ FMA peak";

    private static readonly (bool TransA, bool TransB, int M, int N, int K)[] Shapes =
        [(false, false, 128, 3072, 768), (false, true, 128, 768, 3072), (false, false, 128, 768, 768), (true, false, 256, 1024, 4096), (true, false, 768, 768, 4096)];

    public void Run(BenchReport report, bool quick)
    {
        var path = Gemm.AutoPath;
        if (path == GemmPath.Scalar)
        {
            report.Note("  skipped: the scalar path does not pack");
            return;
        }
        int runs = quick ? 9 : 31;
        var peak = FmaPeak.Measure(1, quick ? 3 : 5);
        report.Note($"  {GemmKnobs.Describe("KC", "MC", "NC", "PACK_ROWS", "PREFETCH_BANDS")}; {path}; one-thread FMA peak {peak.WallGflops:F1} GFLOP/s; medians of {runs} runs; load before: {Affinity.LoadAverage()}");
        var evict = new byte[96 << 20];
        foreach (var (ta, tb, m, n, k) in Shapes)
        {
            string name = $"gemm-pack {(ta ? "T" : "N")}{(tb ? "T" : "N")} M={m} K={k} N={n}";
            var a = Operand((long)m * k);
            var b = Operand((long)k * n);
            long floats = (ta ? (long)m * k : 0) + (long)k * n;
            // One call's pack buffers, reused block after block as the driver reuses them; the copy goes to a buffer as
            // large, a block's bytes at a time.
            int kc = GemmDriver.DepthBlock(k);
            long blockFloats = (long)kc * GemmDriver.RoundUp(Math.Min(n, GemmDriver.NC), GemmDriver.TileCols(path));
            var packB = Operand(blockFloats);
            var packA = Operand((long)GemmDriver.RoundUp(GemmDriver.MC, GemmDriver.TileRows(path)) * kc);
            void Pack() => PackLikeOneCall(path, ta, tb, m, n, k, a, b, packA, packB);
            void Copy()
            {
                CopyInBlocks(b, (long)k * n, packB, blockFloats);
                if (ta) CopyInBlocks(a, (long)m * k, packB, blockFloats);
            }
            Pack(); Copy();
            double fmaSeconds = 2.0 * m * n * k / (peak.WallGflops * 1e9);
            foreach (bool cold in new[] { false, true })
            {
                var pack = new double[runs];
                var plain = new double[runs];
                for (int r = 0; r < runs; r++)
                {
                    if (cold) evict.AsSpan().Fill((byte)r);
                    pack[r] = Timing.Seconds(Pack);
                    if (cold) evict.AsSpan().Fill((byte)~r);
                    plain[r] = Timing.Seconds(Copy);
                }
                string state = cold ? "cold" : "warm";
                double tp = Timing.Median(pack), tc = Timing.Median(plain);
                report.Figure($"{name} pack {state}", tp * 1e3, "ms");
                report.Figure($"{name} pack {state} / memcpy", tp / tc, "ratio");
                report.Figure($"{name} ceiling of peak, pack {state} not overlapped", fmaSeconds / (fmaSeconds + tp), "ratio");
            }
            report.Note($"  {name}: the multiply-adds at the peak take {fmaSeconds * 1e3:F2} ms; {floats * 4 / 1e6:F1} MB packed");
            foreach (var p in new[] { a, b, packA, packB }) NativeMemory.AlignedFree(p);
        }
        report.Note($"  load after: {Affinity.LoadAverage()}");
    }

    /// <summary>
    /// Packs op(B) in KC × NC blocks, and for a transposed A op(A) in MC × KC blocks, each block into the same buffer, as a
    /// single-thread call does (row-major A is read in place, not packed).
    /// </summary>
    private static void PackLikeOneCall(GemmPath path, bool ta, bool tb, int m, int n, int k, float* a, float* b, float* packA, float* packB)
    {
        int mr = GemmDriver.TileRows(path), nr = GemmDriver.TileCols(path);
        int kc = GemmDriver.DepthBlock(k), nc = GemmDriver.NC, mc = GemmDriver.MC;
        for (int jc = 0; jc < n; jc += nc)
            for (int pc = 0; pc < k; pc += kc)
                GemmPack.PackB(b, tb ? k : n, tb, pc, Math.Min(kc, k - pc), jc, Math.Min(nc, n - jc), nr, packB, path);
        if (!ta) return;
        for (int pc = 0; pc < k; pc += kc)
            for (int ic = 0; ic < m; ic += mc)
                GemmPack.PackA(a, m, true, ic, Math.Min(mc, m - ic), pc, Math.Min(kc, k - pc), mr, packA, path);
    }

    private static void CopyInBlocks(float* source, long floats, float* block, long blockFloats)
    {
        for (long at = 0; at < floats; at += blockFloats)
        {
            long count = Math.Min(blockFloats, floats - at);
            Buffer.MemoryCopy(source + at, block, count * sizeof(float), count * sizeof(float));
        }
    }

    private static float* Operand(long floats)
    {
        var p = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        for (long i = 0; i < floats; i++) p[i] = (i % 7) * 0.1f;
        return p;
    }

}
