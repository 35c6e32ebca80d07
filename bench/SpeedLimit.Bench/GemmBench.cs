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
public sealed class GemmBench : IBenchSection
{
    public string Name => "gemm";
    public string Description => "fp32 GEMM GFLOP/s (NN, NT, TN weight-gradient) vs measured FMA peak, 1 and 2 threads";

    private static readonly (int K, int N)[] LayerShapes = [(256, 1024), (1024, 256), (512, 2048), (768, 3072), (3072, 768), (768, 768)];

    public void Run(BenchReport report, bool quick)
    {
        int runs = quick ? 3 : 7;
        report.Note($"  path: {Gemm.Path} (resolves to {Gemm.AutoPath}), processors: {Environment.ProcessorCount}; medians of {runs} runs; the machine may be shared, so figures are noisy.");
        int[] threadCounts = Environment.ProcessorCount >= 2 ? [1, 2] : [1];

        var peak = new Dictionary<int, double>();
        foreach (int t in threadCounts)
        {
            peak[t] = FmaPeakGflops(t, runs);
            report.Figure($"fma peak t{t}", peak[t], "GFLOP/s");
        }

        int[] ms = quick ? [128] : [128, 4096];
        var shapes = quick ? LayerShapes[..2] : LayerShapes;
        foreach (int m in ms)
            foreach (var (k, n) in shapes)
                foreach (int t in threadCounts)
                {
                    Measure(report, "NN", false, false, m, n, k, t, runs, peak[t]);
                    Measure(report, "NT", false, true, m, n, k, t, runs, peak[t]);
                    // Weight gradient of the same layer: dW(N,K) = dYᵀ(N,M) · X(M,K).
                    Measure(report, "TN dW", true, false, n, k, m, t, runs, peak[t]);
                }

        // Attention per (batch, head): scores Q·Kᵀ of 128×128×32, one alone (latency) and 12 heads batched.
        var small = Matrices(128, 128, 32, true, false);
        double soloS = Timing.MedianSeconds(() => Gemm.Multiply(false, true, 128, 128, 32, small.A, 32, small.B, 32, small.C, 128, threads: 0), 200, runs * 200);
        report.Figure("attention scores 128x128x32 single call", soloS * 1e6, "us");
        const int heads = 12;
        var q = Filled(heads * 128 * 32, 1);
        var kk = Filled(heads * 128 * 32, 2);
        var scores = new float[heads * 128 * 128];
        foreach (int t in threadCounts)
        {
            double s = Timing.MedianSeconds(() => Gemm.MultiplyBatched(heads, false, true, 128, 128, 32,
                q, 128 * 32, 32, kk, 128 * 32, 32, scores, 128 * 128, 128, threads: t), 20, runs * 20);
            report.Figure($"attention scores 12 heads batched t{t}", 2.0 * heads * 128 * 128 * 32 / s / 1e9, "GFLOP/s");
        }
    }

    private static void Measure(BenchReport report, string label, bool ta, bool tb, int m, int n, int k, int threads, int runs, double peak)
    {
        var x = Matrices(m, n, k, ta, tb);
        double flops = 2.0 * m * n * k;
        // Repeat small products inside one timed run so each run lasts a few milliseconds.
        int reps = (int)Math.Clamp(2e8 / flops, 1, 1000);
        double s = Timing.MedianSeconds(() =>
        {
            for (int r = 0; r < reps; r++)
                Gemm.Multiply(ta, tb, m, n, k, x.A, ta ? m : k, x.B, tb ? k : n, x.C, n, threads: threads);
        }, 2, runs) / reps;
        double gflops = flops / s / 1e9;
        report.Figure($"gemm {label} M={m} K={k} N={n} t{threads}", gflops, "GFLOP/s");
        report.Note($"  {"",-60} {100 * gflops / peak,11:0.0}% of peak t{threads}");
    }

    private static (float[] A, float[] B, float[] C) Matrices(int m, int n, int k, bool ta, bool tb) =>
        (Filled(m * k, 3), Filled(k * n, 4), new float[m * n]);

    private static float[] Filled(int length, int seed)
    {
        var rng = new Random(seed);
        var x = new float[length];
        for (int i = 0; i < length; i++) x[i] = (float)(rng.NextDouble() - 0.5);
        return x;
    }

    /// <summary>Measured FMA peak: each thread runs a register-only loop of 10 independent Vector512 FMA chains.</summary>
    private static double FmaPeakGflops(int threads, int runs)
    {
        const int iterations = 20_000_000;
        double flopsPerThread = iterations * FmaLoopFlopsPerIteration;
        var times = new double[runs];
        FmaLoop(1000); // JIT
        for (int r = 0; r < runs; r++)
        {
            var sw = Stopwatch.StartNew();
            if (threads == 1) FmaLoop(iterations);
            else Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => FmaLoop(iterations));
            times[r] = sw.Elapsed.TotalSeconds;
        }
        return flopsPerThread * threads / Timing.Median(times) / 1e9;
    }

    private static readonly float[] s_sinks = new float[16];

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
