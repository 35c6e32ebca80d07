using System.Runtime.ExceptionServices;

namespace SpeedLimit.Kernels;

/// <summary>A unit of GEMM work split into parts, part i run by one thread.</summary>
internal interface IGemmWork
{
    void Execute(int part);
}

/// <summary>
/// A small pool of dedicated background threads for GEMM parts. The calling thread runs part 0
/// and workers 1..parts-1 run the rest, so a 2-thread call wakes exactly one worker (no task
/// scheduling, no allocation per call). One call at a time owns the pool; a concurrent caller
/// (or a nested one) is told to run on its own thread instead.
/// </summary>
internal static class GemmWorkers
{
    private static int s_busy; // 1 while a call owns the pool (not a Monitor: that would let a nested call on the same thread re-enter)
    private static Worker[] s_workers = [];
    private static IGemmWork? s_work;
    private static int s_pending;
    private static Exception? s_error;
    private static readonly ManualResetEventSlim Done = new(false, spinCount: 200);

    /// <summary>Runs work.Execute(0..parts-1) in parallel and returns true, or returns false at once when the pool is busy.</summary>
    public static bool TryRun(IGemmWork work, int parts)
    {
        if (Interlocked.CompareExchange(ref s_busy, 1, 0) != 0) return false;
        try
        {
            EnsureWorkers(parts - 1);
            s_work = work;
            s_error = null;
            Volatile.Write(ref s_pending, parts - 1);
            Done.Reset();
            for (int i = 1; i < parts; i++) s_workers[i - 1].Start.Set();
            try
            {
                work.Execute(0);
            }
            finally
            {
                Done.Wait();
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
        public readonly ManualResetEventSlim Start = new(false, spinCount: 200);

        public Worker(int part)
        {
            var thread = new Thread(() => Loop(part)) { IsBackground = true, Name = $"gemm-worker-{part}" };
            thread.Start();
        }

        private void Loop(int part)
        {
            while (true)
            {
                Start.Wait();
                Start.Reset();
                try
                {
                    s_work!.Execute(part);
                }
                catch (Exception e)
                {
                    s_error = e;
                }
                if (Interlocked.Decrement(ref s_pending) == 0) Done.Set();
            }
        }
    }
}
