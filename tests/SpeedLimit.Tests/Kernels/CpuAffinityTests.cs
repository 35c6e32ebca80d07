using SpeedLimit.Kernels;

namespace SpeedLimit.Tests.Kernels;

public class CpuAffinityTests
{
    [Fact]
    public void StepOffMovesTheThreadAndGivesItsMaskBack()
    {
        var result = RunOnOwnThread(() =>
        {
            var before = CpuAffinity.AllowedCpus();
            int cpu = CpuAffinity.CurrentCpu();
            if (cpu < 0 || before.Count < 2) return (Skipped: true, Moved: false, Cpu: cpu, After: -1, Same: true);
            bool moved = CpuAffinity.StepOff(cpu);
            int after = CpuAffinity.CurrentCpu();
            return (Skipped: false, Moved: moved, Cpu: cpu, After: after, Same: before.SequenceEqual(CpuAffinity.AllowedCpus()));
        });
        if (result.Skipped) return; // one CPU, or no sched_getcpu on this OS: nothing to step off to
        // A sandbox may refuse sched_setaffinity (seccomp): then StepOff must say so rather than pretend.
        bool canSetAffinity = RunOnOwnThread(() => CpuAffinity.PinCurrentThreadToLastCpu().StartsWith("pinned", StringComparison.Ordinal));
        if (!canSetAffinity)
        {
            Assert.False(result.Moved);
            return;
        }
        Assert.True(result.Moved);
        Assert.NotEqual(result.Cpu, result.After); // sched_setaffinity migrates the caller before it returns
        Assert.True(result.Same, "the thread's affinity mask is restored after the move");
    }

    [Fact]
    public void StepOffRefusesACpuOutsideTheMask()
    {
        Assert.False(CpuAffinity.StepOff(-1));
        Assert.False(CpuAffinity.StepOff(100_000));
    }

    // A thread of its own, so the test runner's thread keeps its placement.
    private static T RunOnOwnThread<T>(Func<T> body)
    {
        T result = default!;
        var thread = new Thread(() => result = body());
        thread.Start();
        thread.Join();
        return result;
    }
}
