using SpeedLimit.Kernels;

namespace SpeedLimit.Bench;

/// <summary>
/// Tuning aid for the GEMM blocking: best-of-N GFLOP/s (the least disturbed run on a shared machine)
/// of a few shapes, with the driver's settings from GEMM_* environment variables (<see cref="GemmKnobs"/>: GEMM_KC,
/// GEMM_MC, GEMM_NC, GEMM_CHUNKS_PER_THREAD, …), a shape subset from GEMM_SHAPES (e.g. 128x768x768), GEMM_T1=1 for one
/// thread only. To compare settings, prefer `gemm-ab` (<see cref="GemmCompareBench"/>): one process, calls interleaved.
/// </summary>
public sealed class GemmTuneBench : IBenchSection
{
    public string Name => "gemm-tune";
    public string Description => "GEMM blocking tuning aid: best-of-N GFLOP/s; set GEMM_KC, GEMM_MC, GEMM_NC";

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec ts);

    private struct TimeSpec
    {
        public long Seconds, Nanoseconds;
    }

    private static double ThreadCpuSeconds() =>
        OperatingSystem.IsLinux() && ClockGetTime(3 /* CLOCK_THREAD_CPUTIME_ID */, out var ts) == 0 ? ts.Seconds + ts.Nanoseconds * 1e-9 : 0;

    private static unsafe void KernelOnly(BenchReport report, int kc)
    {
        var path = Gemm.AutoPath;
        int mr = GemmDriver.TileRows(path), nr = GemmDriver.TileCols(path);
        float* a = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(mr * kc * 4), 64);
        float* b = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(nr * kc * 4), 64);
        float* c = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(mr * nr * 4), 64);
        for (int i = 0; i < mr * kc; i++) a[i] = 0.001f * (i % 13);
        for (int i = 0; i < nr * kc; i++) b[i] = 0.001f * (i % 11);
        var cpu = new List<double>();
        int reps = 200_000_000 / (2 * mr * nr * kc);
        for (int r = 0; r < 6; r++)
        {
            double c0 = ThreadCpuSeconds();
            for (int i = 0; i < reps; i++) GemmKernels.Tile(path, a, b, kc, c, nr, true);
            if (r > 0) cpu.Add((ThreadCpuSeconds() - c0));
        }
        report.Figure($"kernel only {mr}x{nr} kc={kc} per-cpu-second", 2.0 * mr * nr * kc * reps / Timing.Median(cpu) / 1e9, "GFLOP/s");
        System.Runtime.InteropServices.NativeMemory.AlignedFree(a);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(b);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(c);
    }

    private static unsafe void MacroOnly(BenchReport report, int kc, int mc, int nc, bool irOuter)
    {
        var path = Gemm.AutoPath;
        int mr = GemmDriver.TileRows(path), nr = GemmDriver.TileCols(path);
        float* a = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(mc * kc * 4), 64);
        float* b = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(nc * kc * 4), 64);
        float* c = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(mc * nc * 4), 64);
        for (int i = 0; i < mc * kc; i++) a[i] = 0.001f * (i % 13);
        for (int i = 0; i < nc * kc; i++) b[i] = 0.001f * (i % 11);
        var cpu = new List<double>();
        for (int r = 0; r < 6; r++)
        {
            double c0 = ThreadCpuSeconds();
            for (int rep = 0; rep < 10; rep++)
            {
                if (irOuter)
                {
                    for (int ir = 0; ir < mc; ir += mr)
                        for (int jr = 0; jr < nc; jr += nr)
                            GemmKernels.Tile(path, a + ir * kc, b + jr * kc, kc, c + ir * nc + jr, nc, true);
                }
                else
                {
                    for (int jr = 0; jr < nc; jr += nr)
                        for (int ir = 0; ir < mc; ir += mr)
                            GemmKernels.Tile(path, a + ir * kc, b + jr * kc, kc, c + ir * nc + jr, nc, true);
                }
            }
            if (r > 0) cpu.Add((ThreadCpuSeconds() - c0));
        }
        report.Figure($"macro only kc={kc} mc={mc} nc={nc} {(irOuter ? "ir-outer" : "jr-outer")} per-cpu-second", 2.0 * mc * nc * kc * 10 / Timing.Median(cpu) / 1e9, "GFLOP/s");
        System.Runtime.InteropServices.NativeMemory.AlignedFree(a);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(b);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(c);
    }

    /// <summary>The tuning shapes: (transA, transB, M, N, K), BERT layers at 128 and 4096 rows, weight gradients, a search batch.</summary>
    internal static readonly (bool TransA, bool TransB, int M, int N, int K)[] Shapes =
        [(false, true, 128, 256, 1024), (false, false, 128, 1024, 256), (false, true, 128, 768, 3072), (false, false, 128, 3072, 768), (false, true, 128, 2048, 512), (false, false, 128, 1024, 768), (false, true, 128, 768, 768), (false, true, 4096, 768, 768), (false, false, 4096, 256, 1024), (false, false, 4096, 1024, 256), (false, true, 4096, 256, 256), (false, false, 4096, 3072, 768), (false, false, 128, 2048, 512), (false, false, 128, 768, 768), (true, false, 768, 768, 4096), (true, false, 1024, 256, 4096), (true, false, 256, 256, 4096), (true, false, 256, 1024, 4096), (true, false, 768, 3072, 4096), (true, false, 3072, 768, 4096), (true, false, 2048, 512, 4096), (false, true, 128, 128, 32),
            (false, false, 4096, 768, 3072), (false, true, 4096, 768, 3072), (false, false, 128, 256, 1024),
            // a fine-tuning batch of short sentences (446 tokens) through a (192, 1024) layer
            (false, true, 446, 1024, 192), (false, false, 446, 192, 1024), (false, true, 446, 192, 192), (false, false, 446, 1024, 192),
            // one sequence through the (5, 528, 1016) layers the engine-vs-ONNX-Runtime figure runs: QKV, output, FFN in and out
            (false, false, 128, 1584, 528), (false, false, 128, 528, 528), (false, false, 128, 1016, 528), (false, false, 128, 528, 1016),
            // a fine-tuning batch of 32 × 64 tokens through the pretrained (6, 384, 1536): QKV, output, FFN in and out, and dX of FFN in
            (false, true, 2048, 1152, 384), (false, true, 2048, 384, 384), (false, true, 2048, 1536, 384), (false, true, 2048, 384, 1536), (false, false, 2048, 384, 1536)];

    public void Run(BenchReport report, bool quick)
    {
        report.Note($"  path={Gemm.Path} KC={GemmDriver.KC} MC={GemmDriver.MC} NC={GemmDriver.NC}");
        int runs = quick ? 5 : 15;
        report.Figure("fma peak per-cpu-second t1", FmaPeak.Measure(1, 5).CpuGflops, "GFLOP/s");
        KernelOnly(report, 64); KernelOnly(report, 128); KernelOnly(report, 256);
        MacroOnly(report, GemmDriver.KC, GemmDriver.MC, GemmDriver.NC, false);
        MacroOnly(report, GemmDriver.KC, GemmDriver.MC, GemmDriver.NC, true);
        var filter = Environment.GetEnvironmentVariable("GEMM_SHAPES");
        foreach (var (ta, tb, m, n, k) in Shapes)
            foreach (int t in new[] { 1, 2 })
            {
                if (filter != null && !filter.Contains($"{m}x{n}x{k}", StringComparison.Ordinal)) continue;
                if (Environment.GetEnvironmentVariable("GEMM_T1") == "1" && t == 2) continue;
                var a = new float[m * k]; var b = new float[k * n]; var c = new float[m * n];
                for (int i = 0; i < a.Length; i++) a[i] = (i % 7) * 0.1f;
                for (int i = 0; i < b.Length; i++) b[i] = (i % 5) * 0.1f;
                double flops = 2.0 * m * n * k;
                int reps = (int)Math.Clamp(1e8 / flops, 1, 2000);
                var times = new List<double>();
                var cpu = new List<double>();
                for (int r = 0; r < runs + 1; r++)
                {
                    double c0 = ThreadCpuSeconds();
                    long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                    for (int i = 0; i < reps; i++) Gemm.Multiply(ta, tb, m, n, k, a, ta ? m : k, b, tb ? k : n, c, n, threads: t);
                    if (r > 0)
                    {
                        times.Add(System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds / reps);
                        cpu.Add((ThreadCpuSeconds() - c0) / reps);
                    }
                }
                string name = $"{(ta ? "T" : "N")}{(tb ? "T" : "N")} {m}x{n}x{k} t{t}";
                report.Figure($"best wall {name}", flops / times.Min() / 1e9, "GFLOP/s");
                // The calling thread's CPU time: what the kernel does while it holds a core.
                if (t == 1) report.Figure($"best per-cpu-second {name}", flops / cpu.Min() / 1e9, "GFLOP/s");
            }
    }
}
