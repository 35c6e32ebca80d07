using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SpeedLimit.Kernels;

namespace SpeedLimit.Bench;

/// <summary>
/// fp32 GEMM throughput on BERT-shaped products beside the machine's FMA peak measured in the
/// same run (a register-only Vector512 FMA loop), on 1 and 2 threads.
/// </summary>
/// <remarks>
/// Two clocks per figure: wall time (what a caller waits) and process CPU time (what the kernel
/// achieves while it holds cores). On a machine shared with other busy processes the wall figures
/// drop with the share of the cores the bench gets; the CPU-time figures mostly do not, so both are
/// printed, each beside the FMA peak measured on the same clock.
/// </remarks>
public sealed class GemmBench : IBenchSection
{
    public string Name => "gemm";
    public string Description => "fp32 GEMM GFLOP/s (NN, NT, TN weight-gradient) vs measured FMA peak, 1 and 2 threads";

    private static readonly (int K, int N)[] LayerShapes = [(256, 1024), (1024, 256), (512, 2048), (768, 3072), (3072, 768), (768, 768)];

    public void Run(BenchReport report, bool quick)
    {
        int runs = quick ? 3 : 7;
        report.Note($"  path: {Gemm.Path} (resolves to {Gemm.AutoPath}), processors: {Environment.ProcessorCount}; medians of {runs} runs.");
        report.Note("  'wall' = flops per elapsed second; 'cpu' = flops per second of process CPU time (per core busy, so a perfectly");
        report.Note("  scaling t2 run shows the t1 figure). On a shared machine wall figures fall with the share of the cores the bench gets;");
        report.Note("  cpu figures mostly do not. % of peak is against the FMA peak measured on the same clock.");
        int[] threadCounts = Environment.ProcessorCount >= 2 ? [1, 2] : [1];

        var peak = new Dictionary<int, (double Wall, double Cpu)>();
        foreach (int t in threadCounts)
        {
            peak[t] = FmaPeakGflops(t, runs);
            report.Figure($"fma peak t{t} wall", peak[t].Wall, "GFLOP/s");
            report.Figure($"fma peak t{t} cpu", peak[t].Cpu, "GFLOP/s");
        }

        int[] ms = quick ? [128] : [128, 4096];
        var shapes = quick ? LayerShapes[..2] : LayerShapes;
        foreach (int m in ms)
            foreach (var (k, n) in shapes)
                foreach (int t in threadCounts)
                {
                    Measure(report, "NN", false, false, m, n, k, t, runs, peak[t]);
                    Measure(report, "NT", false, true, m, n, k, t, runs, peak[t]);
                    // Weight gradient of the same layer: dW(N,K) = dYᵀ(N,M) · X(M,K), reported as (m,n,k) of the product.
                    Measure(report, "TN dW", true, false, n, k, m, t, runs, peak[t]);
                }

        // Attention per (batch, head): scores Q·Kᵀ of 128×128×32, one alone (latency) and 12 heads batched.
        var small = Matrices(128, 128, 32);
        double soloS = Timing.MedianSeconds(() => Gemm.Multiply(false, true, 128, 128, 32, small.A, 32, small.B, 32, small.C, 128, threads: 0), 200, runs * 200);
        report.Figure("attention scores 128x128x32 single call wall", soloS * 1e6, "us");
        const int heads = 12;
        var q = Filled(heads * 128 * 32, 1);
        var kk = Filled(heads * 128 * 32, 2);
        var scores = new float[heads * 128 * 128];
        foreach (int t in threadCounts)
        {
            var (wall, cpu) = Time(() => Gemm.MultiplyBatched(heads, false, true, 128, 128, 32,
                q, 128 * 32, 32, kk, 128 * 32, 32, scores, 128 * 128, 128, threads: t), 20, runs, 50);
            double flops = 2.0 * heads * 128 * 128 * 32;
            report.Figure($"attention scores 12 heads batched t{t} wall", flops / wall / 1e9, "GFLOP/s");
            report.Figure($"attention scores 12 heads batched t{t} cpu", flops / cpu / 1e9, "GFLOP/s");
        }
    }

    private static void Measure(BenchReport report, string label, bool ta, bool tb, int m, int n, int k, int threads, int runs, (double Wall, double Cpu) peak)
    {
        var x = Matrices(m, n, k);
        double flops = 2.0 * m * n * k;
        // Repeat small products inside one timed run so each run lasts a few milliseconds.
        int reps = (int)Math.Clamp(2e8 / flops, 1, 1000);
        var (wall, cpu) = Time(() => Gemm.Multiply(ta, tb, m, n, k, x.A, ta ? m : k, x.B, tb ? k : n, x.C, n, threads: threads), 2, runs, reps);
        double gWall = flops / wall / 1e9, gCpu = flops / cpu / 1e9;
        string name = $"gemm {label} M={m} K={k} N={n} t{threads}";
        report.Figure($"{name} wall", gWall, "GFLOP/s");
        report.Figure($"{name} cpu", gCpu, "GFLOP/s");
        report.Note($"  {"",-60} {100 * gWall / peak.Wall,8:0.0}% / {100 * gCpu / peak.Cpu:0.0}% of wall / cpu peak");
    }

    /// <summary>Median wall seconds and median process-CPU seconds of one call (each run repeats it <paramref name="reps"/> times).</summary>
    private static (double Wall, double Cpu) Time(Action action, int warmup, int runs, int reps)
    {
        for (int i = 0; i < warmup; i++) action();
        var wall = new double[runs];
        var cpu = new double[runs];
        for (int r = 0; r < runs; r++)
        {
            double c0 = ProcessCpuSeconds();
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < reps; i++) action();
            wall[r] = Stopwatch.GetElapsedTime(t0).TotalSeconds / reps;
            cpu[r] = (ProcessCpuSeconds() - c0) / reps;
        }
        return (Timing.Median(wall), Timing.Median(cpu));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec ts);

    private struct TimeSpec
    {
        public long Seconds, Nanoseconds;
    }

    /// <summary>CPU time of the whole process (all threads); falls back to the managed counter off Linux.</summary>
    internal static double ProcessCpuSeconds() =>
        OperatingSystem.IsLinux() && ClockGetTime(2 /* CLOCK_PROCESS_CPUTIME_ID */, out var ts) == 0
            ? ts.Seconds + ts.Nanoseconds * 1e-9
            : Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    private static (float[] A, float[] B, float[] C) Matrices(int m, int n, int k) =>
        (Filled(m * k, 3), Filled(k * n, 4), new float[m * n]);

    private static float[] Filled(int length, int seed)
    {
        var rng = new Random(seed);
        var x = new float[length];
        for (int i = 0; i < length; i++) x[i] = (float)(rng.NextDouble() - 0.5);
        return x;
    }

    /// <summary>Measured FMA peak (wall and CPU clock): each thread runs a register-only loop of 10 independent Vector512 FMA chains.</summary>
    internal static (double Wall, double Cpu) FmaPeakGflops(int threads, int runs)
    {
        const int iterations = 20_000_000;
        double flops = iterations * FmaLoopFlopsPerIteration * threads;
        FmaLoop(1000); // JIT
        var (wall, cpu) = Time(() =>
        {
            if (threads == 1) FmaLoop(iterations);
            else Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => FmaLoop(iterations));
        }, 1, runs, 1);
        return (flops / wall / 1e9, flops / cpu / 1e9);
    }

    /// <summary>10 independent FMA chains (4-cycle latency, one zmm FMA per cycle: at least 4 needed) on registers only.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void FmaLoop(int iterations)
    {
        fixed (float* sink = s_sink) FmaLoop(iterations, sink);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static unsafe void FmaLoop(int iterations, float* sink)
    {
        if (!Avx512F.IsSupported) throw new PlatformNotSupportedException("The FMA peak loop needs AVX-512F.");
        var m = Vector512.Create(0.999999f);
        var d = Vector512.Create(1e-7f);
        var a0 = Vector512<float>.Zero; var a1 = Vector512<float>.Zero; var a2 = Vector512<float>.Zero;
        var a3 = Vector512<float>.Zero; var a4 = Vector512<float>.Zero; var a5 = Vector512<float>.Zero;
        var a6 = Vector512<float>.Zero; var a7 = Vector512<float>.Zero; var a8 = Vector512<float>.Zero;
        var a9 = Vector512<float>.Zero;
        for (int i = 0; i < iterations; i++)
        {
            a0 = Avx512F.FusedMultiplyAdd(m, d, a0); a1 = Avx512F.FusedMultiplyAdd(m, d, a1);
            a2 = Avx512F.FusedMultiplyAdd(m, d, a2); a3 = Avx512F.FusedMultiplyAdd(m, d, a3);
            a4 = Avx512F.FusedMultiplyAdd(m, d, a4); a5 = Avx512F.FusedMultiplyAdd(m, d, a5);
            a6 = Avx512F.FusedMultiplyAdd(m, d, a6); a7 = Avx512F.FusedMultiplyAdd(m, d, a7);
            a8 = Avx512F.FusedMultiplyAdd(m, d, a8); a9 = Avx512F.FusedMultiplyAdd(m, d, a9);
        }
        Avx512F.Store(sink, a0); Avx512F.Store(sink + 16, a1); Avx512F.Store(sink + 32, a2); Avx512F.Store(sink + 48, a3);
        Avx512F.Store(sink + 64, a4); Avx512F.Store(sink + 80, a5); Avx512F.Store(sink + 96, a6); Avx512F.Store(sink + 112, a7);
        Avx512F.Store(sink + 128, a8); Avx512F.Store(sink + 144, a9);
    }

    /// <summary>Flops of one FmaLoop iteration.</summary>
    internal const double FmaLoopFlopsPerIteration = 10.0 * 16 * 2;

    private static readonly float[] s_sink = new float[160];
}
