using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace SpeedLimit.Kernels;

/// <summary>A unit of GEMM work split into parts, part i run by one thread.</summary>
internal interface IGemmWork
{
    void Execute(int part);
}

/// <summary>
/// A small pool of dedicated background threads for GEMM parts (and the engine's other parallel
/// loops, so they never compete with a second pool for the same cores). The calling thread runs
/// part 0 and workers 1..parts-1 run the rest, so a 2-thread call wakes exactly one worker (no task
/// scheduling, no allocation per call). One call at a time owns the pool; a concurrent caller
/// (or a nested one) is told to run on its own thread instead.
/// </summary>
/// <remarks>
/// After a part, a worker spins for <see cref="SpinMicroseconds"/> before it blocks: waking a
/// blocked thread costs tens of microseconds (more on a VM, where the idle vCPU has to be
/// rescheduled), which at M = 128 is a large share of a whole product, and with work handed out first
/// come first served the caller used to finish every chunk itself before the worker was awake, so two
/// threads ran at one thread's speed. Back-to-back calls (a forward pass) now find the worker awake.
/// <para>
/// Two things keep this from collapsing on a VM: the spinning yields the CPU now and then, and a worker
/// woken onto its caller's CPU steps off it (<see cref="CpuAffinity.StepOff"/>). Without them, on a
/// 2-vCPU Zen 5 VM, once something had crowded the cores (OpenBLAS's or ONNX Runtime's spinning threads
/// in the same process), the worker was asleep at every post, was woken onto the caller's CPU and the two
/// took turns on one core: 128×256×1024 took 650 µs on two threads against 380 µs on one (190 µs apart),
/// for the rest of the process. Waking a vCPU that has been idle for a while costs milliseconds there.
/// </para>
/// </remarks>
internal static class GemmWorkers
{
    /// <summary>How long an idle worker (and a caller waiting for its workers) spins before blocking.</summary>
    internal static double SpinMicroseconds = 500;

    private static int s_busy; // 1 while a call owns the pool (not a Monitor: that would let a nested call on the same thread re-enter)
    private static Worker[] s_workers = [];
    private static IGemmWork? s_work;
    private static int s_pending;
    private static int s_callerCpu = -1; // the CPU the current call's caller ran on when it posted the parts
    private static Exception? s_error;
    private static readonly ManualResetEventSlim Done = new(false, spinCount: 1);

    /// <summary>Whether a call owns the pool now (a caller seeing this runs on its own thread rather than plan a split).</summary>
    internal static bool Busy => Volatile.Read(ref s_busy) != 0;

    /// <summary>Parts of the last call run by worker threads (diagnostics for tests and benches).</summary>
    internal static long PartsRunByWorkers;

    /// <summary>Times a worker found itself on its caller's CPU and moved (diagnostics for benches).</summary>
    internal static long StepsOffCallerCpu;

    /// <summary>Runs work.Execute(0..parts-1) in parallel and returns true, or returns false at once when the pool is busy.</summary>
    public static bool TryRun(IGemmWork work, int parts)
    {
        if (parts <= 1)
        {
            work.Execute(0);
            return true;
        }
        if (Interlocked.CompareExchange(ref s_busy, 1, 0) != 0) return false;
        try
        {
            EnsureWorkers(parts - 1);
            s_work = work;
            s_error = null;
            Volatile.Write(ref s_pending, parts - 1);
            Done.Reset();
            Volatile.Write(ref s_callerCpu, CpuAffinity.CurrentCpu());
            for (int i = 1; i < parts; i++) s_workers[i - 1].Post();
            try
            {
                work.Execute(0);
            }
            finally
            {
                WaitForWorkers();
                s_work = null;
            }
            if (s_error is { } e) ExceptionDispatchInfo.Capture(e).Throw();
            return true;
        }
        finally
        {
            Volatile.Write(ref s_busy, 0);
        }
    }

    private static void WaitForWorkers()
    {
        long limit = Stopwatch.GetTimestamp() + (long)(SpinMicroseconds * 1e-6 * Stopwatch.Frequency);
        int spins = 0;
        while (Volatile.Read(ref s_pending) != 0)
        {
            if ((++spins & 63) == 0 && Stopwatch.GetTimestamp() > limit)
            {
                // The event can be set already by the last worker of the previous call (it decrements the count,
                // which lets that call return, and sets the event after): returning on that would leave this call's
                // workers running, and its next call would clear the job under them. So wait until the count says so.
                while (Volatile.Read(ref s_pending) != 0)
                {
                    Done.Wait();
                    Done.Reset();
                }
                return;
            }
            if ((spins & 255) == 0) Thread.Yield(); else Thread.SpinWait(8);
        }
    }

    private static void EnsureWorkers(int count)
    {
        if (s_workers.Length >= count) return;
        var grown = new Worker[count];
        Array.Copy(s_workers, grown, s_workers.Length);
        for (int i = s_workers.Length; i < count; i++) grown[i] = new Worker(i + 1);
        s_workers = grown;
    }

    private sealed class Worker
    {
        private readonly ManualResetEventSlim _start = new(false, spinCount: 1);
        private int _sleeping;
        private readonly int _part;
        private long _posted, _seen; // jobs posted to this worker / taken by it

        public Worker(int part)
        {
            _part = part;
            var thread = new Thread(Loop) { IsBackground = true, Name = $"gemm-worker-{part}" };
            thread.Start();
        }

        /// <summary>Hands this worker a part of the current job; sets its event only when it stopped spinning.</summary>
        public void Post()
        {
            Interlocked.Increment(ref _posted); // full fence: the job fields are visible before the post
            if (Volatile.Read(ref _sleeping) == 1) _start.Set();
        }

        private void Loop()
        {
            while (true)
            {
                AwaitPost();
                _seen++;
                int callerCpu = Volatile.Read(ref s_callerCpu);
                if (callerCpu >= 0 && CpuAffinity.CurrentCpu() == callerCpu && CpuAffinity.StepOff(callerCpu))
                    Interlocked.Increment(ref StepsOffCallerCpu);
                try
                {
                    s_work!.Execute(_part);
                    Interlocked.Increment(ref PartsRunByWorkers);
                }
                catch (Exception e)
                {
                    s_error = e;
                }
                if (Interlocked.Decrement(ref s_pending) == 0) Done.Set();
            }
        }

        private void AwaitPost()
        {
            while (true)
            {
                long limit = Stopwatch.GetTimestamp() + (long)(SpinMicroseconds * 1e-6 * Stopwatch.Frequency);
                int spins = 0;
                while (Volatile.Read(ref _posted) == _seen)
                {
                    if ((++spins & 63) == 0 && Stopwatch.GetTimestamp() > limit) break;
                    if ((spins & 255) == 0) Thread.Yield(); else Thread.SpinWait(8);
                }
                if (Volatile.Read(ref _posted) != _seen) return;
                // Block: announce it, then re-check so a post made meanwhile is not missed.
                _start.Reset();
                Interlocked.Exchange(ref _sleeping, 1);
                if (Volatile.Read(ref _posted) == _seen) _start.Wait();
                Interlocked.Exchange(ref _sleeping, 0);
                if (Volatile.Read(ref _posted) != _seen) return;
            }
        }
    }
}

/// <summary>
/// Parallel loops of the engine's layers (attention heads, GELU chunks) on the GEMM worker pool,
/// so layers and products share one set of threads instead of two pools competing for the cores.
/// </summary>
internal static class EngineParallel
{
    /// <summary>Runs body(i) for i in [0, count) on up to <paramref name="threads"/> threads, items first come first served.</summary>
    public static void For(int count, int threads, Action<int> body)
    {
        int parts = Math.Min(threads, count);
        if (parts > 1)
        {
            var job = Interlocked.Exchange(ref s_spare, null) ?? new ForJob();
            job.Body = body;
            job.Count = count;
            job.Next = 0;
            bool ran = GemmWorkers.TryRun(job, parts);
            job.Body = null;
            s_spare = job;
            if (ran) return;
        }
        for (int i = 0; i < count; i++) body(i);
    }

    /// <summary>Elements a part must hold before a second thread pays for itself (a pass over 128 KiB).</summary>
    public const int MinElementsPerPart = 32 * 1024;

    /// <summary>
    /// Runs body over row ranges [r0, r1) of a (rows, cols) tensor, one contiguous range per thread, when the
    /// tensor is worth more than one thread (<see cref="MinElementsPerPart"/> elements a part).
    /// </summary>
    public static void SplitRows(int rows, int cols, int threads, Action<int, int> body) =>
        Split(rows, Math.Max(1, MinElementsPerPart / Math.Max(1, cols)), threads, body);

    /// <summary>Threads worth using on a (rows, cols) tensor: one per <see cref="MinElementsPerPart"/> elements, at most <paramref name="threads"/>.</summary>
    public static int Parts(int rows, int cols, int threads) =>
        (int)Math.Clamp((long)rows * cols / MinElementsPerPart, 1, Math.Max(1, threads));

    /// <summary>
    /// Columns [c0, c1) of part <paramref name="part"/> of <paramref name="parts"/>: runs of 16 (a Vector512 of floats), so a
    /// sum down the rows splits by column and every column is still summed row after row by one thread.
    /// </summary>
    public static (int C0, int C1) ColumnRange(int cols, int part, int parts)
    {
        int units = (cols + 15) / 16;
        return ((int)((long)units * part / parts) * 16, Math.Min(cols, (int)((long)units * (part + 1) / parts) * 16));
    }

    /// <summary>Runs body over column ranges [c0, c1) of a (rows, cols) tensor (<see cref="ColumnRange"/>), one per thread when it is worth more than one.</summary>
    public static void SplitColumns(int rows, int cols, int threads, Action<int, int> body)
    {
        int parts = Math.Min(Parts(rows, cols, threads), (cols + 15) / 16);
        if (parts <= 1) { if (cols > 0) body(0, cols); return; }
        For(parts, parts, i =>
        {
            var (c0, c1) = ColumnRange(cols, i, parts);
            body(c0, c1);
        });
    }

    /// <summary>Zeroes a[0..count), split over threads when large.</summary>
    public static void Clear(float[] a, int count, int threads) =>
        Split(count, MinElementsPerPart, threads, (start, end) => Array.Clear(a, start, end - start));

    /// <summary>Runs body over contiguous ranges [start, end) of [0, count), one per thread, each at least <paramref name="minPerPart"/> long.</summary>
    public static void Split(int count, int minPerPart, int threads, Action<int, int> body)
    {
        int parts = Math.Clamp(Math.Min(threads, count / Math.Max(1, minPerPart)), 1, 64);
        if (parts == 1) { if (count > 0) body(0, count); return; }
        For(parts, parts, i => body((int)((long)count * i / parts), (int)((long)count * (i + 1) / parts)));
    }

    private static ForJob? s_spare;

    private sealed class ForJob : IGemmWork
    {
        public Action<int>? Body;
        public int Count, Next;

        public void Execute(int part)
        {
            var body = Body!;
            int i;
            while ((i = Interlocked.Increment(ref Next) - 1) < Count) body(i);
        }
    }
}
