using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SpeedLimit.Bench;

/// <summary>The FMA peak measured on N threads: wall-clock GFLOP/s of all threads together and per second of thread CPU time.</summary>
/// <param name="WallGflops">Total flops ÷ the wall time from the common start to the last thread's finish (median of runs).</param>
/// <param name="CpuGflops">Total flops ÷ the summed CPU time of the threads, × threads (what N cores do while they run; median).</param>
/// <param name="PerThreadGflops">Per thread: its flops ÷ its own wall time from the common start (median over runs).</param>
public sealed record FmaPeakResult(int Threads, double WallGflops, double CpuGflops, double[] PerThreadGflops, string Isa);

/// <summary>
/// Measures the machine's fp32 FMA peak on 1, 2 … N threads. Each thread is a dedicated thread
/// (not the thread pool), pinned to its own CPU where the OS allows it, runs its own independent
/// accumulator chains on registers only (no memory traffic, no shared cache lines), and all
/// threads are released together by a barrier before the clock starts, so the N-thread figure is
/// N cores working at once rather than one core doing N loops in turn (the earlier measurement ran
/// the loops through <c>Parallel.For</c>, whose two iterations often ran one after the other on one
/// thread). The loop uses the widest FMA the GEMM uses (Vector512, else Vector256) with 12
/// independent chains (≥ latency × FMA ports on every x86 core in use: 4 × 2).
/// </summary>
public static class FmaPeak
{
    /// <summary>Flops per loop iteration: 12 FMAs of the vector width, 2 flops per lane.</summary>
    private static double FlopsPerIteration => 12.0 * 2 * (Avx512F.IsSupported ? 16 : 8);

    public static string Isa => Avx512F.IsSupported ? "Vector512 FMA" : Fma.IsSupported ? "Vector256 FMA" : "none";

    /// <summary>Measures the peak on <paramref name="threads"/> threads; each run lasts about <paramref name="runMs"/> ms.</summary>
    public static FmaPeakResult Measure(int threads, int runs, double runMs = 150)
    {
        if (!Fma.IsSupported) return new FmaPeakResult(threads, double.NaN, double.NaN, new double[threads], Isa);
        // Calibrate the iteration count on one thread so a run lasts about runMs.
        Loop(100_000);
        long t0 = Stopwatch.GetTimestamp();
        Loop(2_000_000);
        double perIter = Stopwatch.GetElapsedTime(t0).TotalSeconds / 2_000_000;
        long iterations = Math.Max(100_000, (long)(runMs / 1000 / perIter));
        double flopsPerThread = iterations * FlopsPerIteration;

        var wall = new double[runs];
        var cpu = new double[runs];
        var perThread = new double[threads][];
        for (int i = 0; i < threads; i++) perThread[i] = new double[runs];

        var start = new Barrier(threads + 1);
        var finished = new Barrier(threads + 1);
        var endTicks = new long[threads];
        var cpuSeconds = new double[threads];
        long startTicks = 0;
        int run = -1; // -1: warm-up
        bool stop = false;
        var workers = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            int id = i;
            workers[i] = new Thread(() =>
            {
                Affinity.PinCurrentThread(id % Environment.ProcessorCount);
                while (true)
                {
                    start.SignalAndWait();
                    if (Volatile.Read(ref stop)) return;
                    double c0 = Affinity.ThreadCpuSeconds();
                    Loop(iterations);
                    endTicks[id] = Stopwatch.GetTimestamp();
                    cpuSeconds[id] = Affinity.ThreadCpuSeconds() - c0;
                    finished.SignalAndWait();
                }
            }) { IsBackground = true, Name = $"fma-peak-{i}", Priority = ThreadPriority.Highest };
            workers[i].Start();
        }
        for (run = -1; run < runs; run++)
        {
            startTicks = Stopwatch.GetTimestamp();
            start.SignalAndWait(); // all threads leave the barrier together
            finished.SignalAndWait();
            if (run < 0) continue;
            double last = 0, cpuSum = 0;
            for (int i = 0; i < threads; i++)
            {
                double s = (endTicks[i] - startTicks) / (double)Stopwatch.Frequency;
                last = Math.Max(last, s);
                perThread[i][run] = flopsPerThread / s / 1e9;
                cpuSum += cpuSeconds[i];
            }
            wall[run] = threads * flopsPerThread / last / 1e9;
            cpu[run] = cpuSum > 0 ? (double)threads * threads * flopsPerThread / cpuSum / 1e9 : double.NaN; // N cores × per-core rate
        }
        Volatile.Write(ref stop, true);
        start.SignalAndWait();
        foreach (var w in workers) w.Join();
        return new FmaPeakResult(threads, Timing.Median(wall), Timing.Median(cpu),
            perThread.Select(p => Timing.Median(p)).ToArray(), Isa);
    }

    /// <summary>
    /// A one-thread FMA loop of about <paramref name="seconds"/> on the calling thread, to time beside a measured call
    /// (<see cref="Probe.Gflops"/>): the clock of these VMs moves by several percent from minute to minute (the
    /// start-of-run peak read 207 and 222 GFLOP/s on one machine an hour apart), so a ratio to a peak timed in the same
    /// moment, like the ratios to OpenBLAS, says more about the kernel than one to a peak timed minutes before.
    /// </summary>
    public static Probe ProbeOfAbout(double seconds)
    {
        if (!Fma.IsSupported) return new Probe(0);
        Loop(100_000);
        long t0 = Stopwatch.GetTimestamp();
        Loop(1_000_000);
        double perIter = Stopwatch.GetElapsedTime(t0).TotalSeconds / 1_000_000;
        return new Probe(Math.Max(10_000, (long)(seconds / perIter)));
    }

    /// <summary>A calibrated FMA loop; <see cref="Gflops"/> runs it once and returns its rate (NaN without FMA).</summary>
    public sealed class Probe(long iterations)
    {
        public double Gflops()
        {
            if (iterations == 0) return double.NaN;
            long t0 = Stopwatch.GetTimestamp();
            Loop(iterations);
            return iterations * FlopsPerIteration / Stopwatch.GetElapsedTime(t0).TotalSeconds / 1e9;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Loop(long iterations)
    {
        if (Avx512F.IsSupported) Loop512(iterations);
        else Loop256(iterations);
    }

    private static readonly float[] Sink = new float[16];

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Loop512(long iterations)
    {
        var m = Vector512.Create(0.999999f);
        var d = Vector512.Create(1e-7f);
        var a0 = Vector512<float>.Zero; var a1 = Vector512<float>.Zero; var a2 = Vector512<float>.Zero;
        var a3 = Vector512<float>.Zero; var a4 = Vector512<float>.Zero; var a5 = Vector512<float>.Zero;
        var a6 = Vector512<float>.Zero; var a7 = Vector512<float>.Zero; var a8 = Vector512<float>.Zero;
        var a9 = Vector512<float>.Zero; var a10 = Vector512<float>.Zero; var a11 = Vector512<float>.Zero;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Avx512F.FusedMultiplyAdd(a0, m, d); a1 = Avx512F.FusedMultiplyAdd(a1, m, d);
            a2 = Avx512F.FusedMultiplyAdd(a2, m, d); a3 = Avx512F.FusedMultiplyAdd(a3, m, d);
            a4 = Avx512F.FusedMultiplyAdd(a4, m, d); a5 = Avx512F.FusedMultiplyAdd(a5, m, d);
            a6 = Avx512F.FusedMultiplyAdd(a6, m, d); a7 = Avx512F.FusedMultiplyAdd(a7, m, d);
            a8 = Avx512F.FusedMultiplyAdd(a8, m, d); a9 = Avx512F.FusedMultiplyAdd(a9, m, d);
            a10 = Avx512F.FusedMultiplyAdd(a10, m, d); a11 = Avx512F.FusedMultiplyAdd(a11, m, d);
        }
        var sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
        sum.CopyTo(Sink); // keeps the chains live
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Loop256(long iterations)
    {
        var m = Vector256.Create(0.999999f);
        var d = Vector256.Create(1e-7f);
        var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero; var a2 = Vector256<float>.Zero;
        var a3 = Vector256<float>.Zero; var a4 = Vector256<float>.Zero; var a5 = Vector256<float>.Zero;
        var a6 = Vector256<float>.Zero; var a7 = Vector256<float>.Zero; var a8 = Vector256<float>.Zero;
        var a9 = Vector256<float>.Zero; var a10 = Vector256<float>.Zero; var a11 = Vector256<float>.Zero;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Fma.MultiplyAdd(a0, m, d); a1 = Fma.MultiplyAdd(a1, m, d);
            a2 = Fma.MultiplyAdd(a2, m, d); a3 = Fma.MultiplyAdd(a3, m, d);
            a4 = Fma.MultiplyAdd(a4, m, d); a5 = Fma.MultiplyAdd(a5, m, d);
            a6 = Fma.MultiplyAdd(a6, m, d); a7 = Fma.MultiplyAdd(a7, m, d);
            a8 = Fma.MultiplyAdd(a8, m, d); a9 = Fma.MultiplyAdd(a9, m, d);
            a10 = Fma.MultiplyAdd(a10, m, d); a11 = Fma.MultiplyAdd(a11, m, d);
        }
        var sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
        sum.CopyTo(Sink);
    }
}

/// <summary>Thread pinning and per-thread CPU clocks (Linux; no-ops elsewhere).</summary>
internal static class Affinity
{
    [DllImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static extern int SchedSetAffinity(int pid, nint size, ref ulong mask);

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec ts);

    private struct TimeSpec
    {
        public long Seconds, Nanoseconds;
    }

    /// <summary>Pins the calling thread to one CPU (pid 0 = the calling thread on Linux); returns false where it cannot.</summary>
    public static bool PinCurrentThread(int cpu)
    {
        if (!OperatingSystem.IsLinux() || cpu >= 64) return false;
        ulong mask = 1UL << cpu;
        try { return SchedSetAffinity(0, sizeof(ulong), ref mask) == 0; }
        catch (EntryPointNotFoundException) { return false; }
    }

    /// <summary>CPU seconds of the calling thread (CLOCK_THREAD_CPUTIME_ID).</summary>
    public static double ThreadCpuSeconds() =>
        OperatingSystem.IsLinux() && ClockGetTime(3, out var ts) == 0 ? ts.Seconds + ts.Nanoseconds * 1e-9 : double.NaN;

    /// <summary>The 1/5/15-minute load averages as /proc/loadavg prints them, or "n/a".</summary>
    public static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Trim(); }
        catch (IOException) { return "n/a"; }
        catch (UnauthorizedAccessException) { return "n/a"; }
    }
}
