using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SpeedLimit.Kernels;

namespace SpeedLimit.Bench;

/// <summary>
/// fp32 GEMM throughput on BERT-shaped products beside the machine's FMA peak (<see cref="FmaPeak"/>)
/// and OpenBLAS (<see cref="OpenBlas"/>, when installed) measured in the same run, on 1 and 2 threads.
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
    public string Description => "fp32 GEMM GFLOP/s (NN, NT, TN weight-gradient) vs measured FMA peak and OpenBLAS, 1 and 2 threads";

    private static readonly (int K, int N)[] LayerShapes = [(256, 1024), (1024, 256), (512, 2048), (768, 3072), (3072, 768), (768, 768)];

    public void Run(BenchReport report, bool quick)
    {
        int runs = quick ? 3 : 9;
        report.Note($"  load before: {Affinity.LoadAverage()} (/proc/loadavg); path: {Gemm.Path} (resolves to {Gemm.AutoPath}), processors: {Environment.ProcessorCount}; medians of {runs} runs.");
        report.Note("  'wall' = flops per elapsed second; 'cpu' = flops per second of process CPU time (per core busy, so a perfectly");
        report.Note("  scaling t2 run shows the t1 figure). On a shared machine wall figures fall with the share of the cores the bench gets;");
        report.Note("  cpu figures mostly do not. % of peak is against t × the one-core FMA peak on the thread-CPU clock (what t cores");
        report.Note("  reach when they run; on a quiet machine the wall peak equals it). Ratios to OpenBLAS");
        report.Note("  come from runs interleaved with ours (ours, theirs, ours, ...), so both see the same load.");
        int[] threadCounts = Environment.ProcessorCount >= 2 ? [1, 2] : [1];
        if (Environment.ProcessorCount > 2) threadCounts = [1, 2, Environment.ProcessorCount];

        var peak = new Dictionary<int, (double Wall, double Cpu)>();
        foreach (int t in threadCounts)
        {
            var p = FmaPeak.Measure(t, runs);
            peak[t] = (p.WallGflops, p.CpuGflops);
            report.Figure($"fma peak t{t} wall", p.WallGflops, "GFLOP/s");
            report.Figure($"fma peak t{t} cpu", p.CpuGflops, "GFLOP/s"); // t cores × per-core rate on the thread-CPU clock
            if (t > 1) report.Note($"  {p.Isa}, per thread: {string.Join(", ", p.PerThreadGflops.Select(g => g.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)))} GFLOP/s; t{t}/t1 wall = {p.WallGflops / peak[1].Wall:0.00}");
        }

        var blas = OpenBlas.TryLoad(out string why);
        if (blas is null) report.Note($"  OpenBLAS: skipped ({why}).");
        else report.Note($"  OpenBLAS: {OpenBlas.LibraryName}, core by itself: {blas.ProbedCore}; running core: {blas.Core}"
            + (blas.CoreTypeSet is { } ct ? $" (OPENBLAS_CORETYPE={ct} set for this process because it picked a generic kernel)" : ""));

        int[] ms = quick ? [128] : [128, 4096];
        var shapes = quick ? LayerShapes[..2] : LayerShapes;
        var ratios = new List<(string Name, int Threads, double Ratio)>();
        var ofPeak = new List<(string Name, int K, double Ratio)>();
        foreach (int m in ms)
            foreach (var (k, n) in shapes)
                foreach (int t in threadCounts)
                {
                    Measure(report, "NN", false, false, m, n, k, t, runs, peak[t], blas, ratios, ofPeak);
                    Measure(report, "NT", false, true, m, n, k, t, runs, peak[t], blas, ratios, ofPeak);
                    // Weight gradient of the same layer: dW(N,K) = dYᵀ(N,M) · X(M,K), reported as (m,n,k) of the product.
                    Measure(report, "TN dW", true, false, n, k, m, t, runs, peak[t], blas, ratios, ofPeak);
                }
        if (blas is not null)
            foreach (int t in threadCounts)
            {
                var r = ratios.Where(x => x.Threads == t).Select(x => x.Ratio).ToList();
                if (r.Count == 0) continue;
                report.Figure($"gemm ours/openblas t{t} min over shapes", r.Min(), "ratio");
                report.Figure($"gemm ours/openblas t{t} geomean over shapes", Math.Exp(r.Average(Math.Log)), "ratio");
                report.Note($"  t{t}: {r.Count(x => x >= 1.0)} of {r.Count} shapes at or above OpenBLAS");
            }

        var deep = ofPeak.Where(x => x.K >= 256 && !double.IsNaN(x.Ratio)).ToList();
        if (deep.Count > 0)
        {
            report.Figure("gemm t1 K>=256 min of adjacent peak", deep.Min(x => x.Ratio), "ratio");
            report.Note($"  t1, K >= 256: {deep.Count(x => x.Ratio >= 0.80)} of {deep.Count} shapes at or above 0.80 of the FMA peak timed beside them"
                + (deep.Any(x => x.Ratio < 0.80) ? $"; below: {string.Join(", ", deep.Where(x => x.Ratio < 0.80).Select(x => $"{x.Name} {x.Ratio:0.000}"))}" : ""));
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
        report.Note($"  load after: {Affinity.LoadAverage()}");
    }

    private static void Measure(BenchReport report, string label, bool ta, bool tb, int m, int n, int k, int threads, int runs,
        (double Wall, double Cpu) peak, OpenBlas? blas, List<(string, int, double)> ratios, List<(string, int, double)> ofPeak)
    {
        var x = Matrices(m, n, k);
        double flops = 2.0 * m * n * k;
        // Repeat small products inside one timed run so each run lasts a few milliseconds.
        int reps = (int)Math.Clamp(4e8 / flops, 1, 1000);
        int lda = ta ? m : k, ldb = tb ? k : n;
        Action ours = () => Gemm.Multiply(ta, tb, m, n, k, x.A, lda, x.B, ldb, x.C, n, threads: threads);
        // A weight operand (NN, NT: B is the layer's weight) packed once, as forward passes over fixed weights use it.
        var packed = ta ? null : PackedMatrix.Pack(tb, k, n, x.B, ldb, threads);
        Action? oursPacked = packed is null ? null : () => Gemm.Multiply(false, m, x.A, lda, packed, x.C, n, threads: threads);
        string name = $"gemm {label} M={m} K={k} N={n} t{threads}";
        Action? theirs = null;
        if (blas is not null)
        {
            var c2 = new float[m * n];
            theirs = () =>
            {
                blas.SetThreads(threads);
                blas.Sgemm(ta, tb, m, n, k, x.A, lda, x.B, ldb, c2, n);
            };
        }
        for (int i = 0; i < 2; i++) { ours(); oursPacked?.Invoke(); theirs?.Invoke(); }
        // One thread: an FMA loop as long as our timed run, timed in every round too (FmaPeak.ProbeOfAbout).
        var probe = threads == 1 ? FmaPeak.ProbeOfAbout(reps * flops / (peak.Wall * 1e9)) : null;
        var oursWall = new double[runs]; var oursCpu = new double[runs]; var packedWall = new double[runs]; var theirsWall = new double[runs];
        var probeGflops = new double[runs];
        for (int r = 0; r < runs; r++)
        {
            // Interleaved (ours, pre-packed, theirs, ...) so all see the same load. OpenBLAS's pthread workers
            // spin for a while after a call; let them go to sleep before timing ours. Each library's timed run
            // follows an untimed call of its own on two threads: a worker whose vCPU sat idle through the pause
            // takes milliseconds to wake on these VMs, which a one-call run (the 128-row products) would time.
            if (threads > 1 && theirs is not null) Thread.Sleep(120);
            if (threads > 1) ours();
            (oursWall[r], oursCpu[r]) = TimeOnce(ours, reps);
            if (oursPacked is not null) packedWall[r] = TimeOnce(oursPacked, reps).Wall;
            if (probe is not null) probeGflops[r] = probe.Gflops();
            if (theirs is null) continue;
            if (threads > 1) theirs();
            theirsWall[r] = TimeOnce(theirs, reps).Wall;
        }
        if (threads > 1 && theirs is not null) Thread.Sleep(120);
        double ow = flops / Timing.Median(oursWall) / 1e9, oc = flops / Timing.Median(oursCpu) / 1e9;
        report.Figure($"{name} wall", ow, "GFLOP/s");
        report.Figure($"{name} cpu", oc, "GFLOP/s");
        double pw = oursPacked is null ? double.NaN : flops / Timing.Median(packedWall) / 1e9;
        if (oursPacked is not null) report.Figure($"{name} prepacked wall", pw, "GFLOP/s");
        if (probe is not null)
        {
            // Per round, a rate ÷ the FMA loop's rate in the same round; the median of those.
            double OfAdjacentPeak(double[] wall) => Timing.Median(Enumerable.Range(0, runs).Select(r => flops / wall[r] / 1e9 / probeGflops[r]).ToArray());
            double adjacent = OfAdjacentPeak(oursWall);
            report.Figure($"{name} of adjacent peak", adjacent, "ratio");
            if (oursPacked is not null) report.Figure($"{name} prepacked of adjacent peak", OfAdjacentPeak(packedWall), "ratio");
            ofPeak.Add((name, k, adjacent));
        }
        if (theirs is null)
        {
            report.Note($"  {"",-60} {100 * ow / peak.Cpu,8:0.0}% / {100 * oc * threads / peak.Cpu:0.0}% of peak (wall / cpu clock); OpenBLAS skipped");
            return;
        }
        double tw = flops / Timing.Median(theirsWall) / 1e9;
        // Ratios per pair of adjacent runs (the same load), then their median: steadier than a ratio of medians.
        double ratio = Timing.Median(Enumerable.Range(0, runs).Select(r => theirsWall[r] / oursWall[r]).ToArray());
        report.Figure($"{name} openblas wall", tw, "GFLOP/s");
        report.Figure($"{name} ours/openblas", ratio, "ratio");
        if (oursPacked is not null)
            report.Figure($"{name} prepacked/openblas", Timing.Median(Enumerable.Range(0, runs).Select(r => theirsWall[r] / packedWall[r]).ToArray()), "ratio");
        report.Note($"  {"",-60} {100 * ow / peak.Cpu,8:0.0}% / {100 * oc * threads / peak.Cpu:0.0}% of peak (wall / cpu clock); OpenBLAS {100 * tw / peak.Cpu:0.0}% (wall)");
        ratios.Add((name, threads, ratio));
    }

    private static (double Wall, double Cpu) TimeOnce(Action action, int reps)
    {
        double c0 = ProcessCpuSeconds();
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < reps; i++) action();
        return (Stopwatch.GetElapsedTime(t0).TotalSeconds / reps, (ProcessCpuSeconds() - c0) / reps);
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

}
