using SpeedLimit.Kernels;

namespace SpeedLimit.Tests.Kernels;

public class GemmWorkersTests
{
    /// <summary>
    /// A call returns only when every part of it has run, even when the caller stops spinning at once and blocks: the
    /// last worker of the previous call sets the completion event after it lets that call return, and a call that took
    /// that late signal for its own returned with its worker still running (seen as a worker reading a job the caller
    /// had already cleared).
    /// </summary>
    [Fact]
    public void EveryPartHasRunWhenACallReturns()
    {
        double saved = GemmWorkers.SpinMicroseconds;
        // Busy threads crowd the cores, so a worker is often preempted between counting down and signalling.
        using var stop = new CancellationTokenSource();
        var crowd = Enumerable.Range(0, Environment.ProcessorCount).Select(_ => new Thread(() =>
        {
            while (!stop.IsCancellationRequested) Thread.SpinWait(1000);
        }) { IsBackground = true }).ToList();
        crowd.ForEach(t => t.Start());
        try
        {
            GemmWorkers.SpinMicroseconds = 0; // block at once: the path the late signal could fool
            var done = new int[2];
            for (int call = 1; call <= 20_000; call++)
            {
                int stamp = call;
                EngineParallel.For(2, 2, i => Volatile.Write(ref done[i], stamp));
                // Run on one thread when another test holds the pool; either way both items ran before the return.
                Assert.Equal(stamp, Volatile.Read(ref done[0]));
                Assert.Equal(stamp, Volatile.Read(ref done[1]));
            }
        }
        finally
        {
            GemmWorkers.SpinMicroseconds = saved;
            stop.Cancel();
            crowd.ForEach(t => t.Join());
        }
    }
}
