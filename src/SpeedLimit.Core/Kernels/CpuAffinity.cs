using System.Runtime.InteropServices;

namespace SpeedLimit.Kernels;

/// <summary>
/// Where threads run (Linux sched_getcpu / sched_setaffinity; elsewhere every call is a no-op that says so):
/// the latency worker pins its measuring thread, and the GEMM pool moves a worker off its caller's CPU.
/// </summary>
internal static partial class CpuAffinity
{
    private const int MaskBytes = 128; // cpu_set_t: 1,024 CPUs

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nint size, byte[] mask);

    [LibraryImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetAffinity(int pid, nint size, byte[] mask);

    [LibraryImport("libc", EntryPoint = "sched_getcpu")]
    private static partial int SchedGetCpu();

    private static readonly bool Available = OperatingSystem.IsLinux() && Probe();

    private static bool Probe()
    {
        try { return SchedGetCpu() >= 0; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    /// <summary>The CPU the calling thread runs on now (vDSO, tens of nanoseconds), or −1 where unknown.</summary>
    public static int CurrentCpu() => Available ? SchedGetCpu() : -1;

    /// <summary>Pins the calling thread to the highest CPU the process may run on; returns "pinned to cpu N" or why not.</summary>
    public static string PinCurrentThreadToLastCpu()
    {
        if (!Available) return "not pinned (no sched_setaffinity here)";
        var mask = new byte[MaskBytes];
        if (SchedGetAffinity(0, mask.Length, mask) != 0) return "not pinned (sched_getaffinity failed)";
        int last = -1;
        for (int cpu = mask.Length * 8 - 1; cpu >= 0 && last < 0; cpu--)
            if (IsSet(mask, cpu)) last = cpu;
        if (last < 0) return "not pinned (no CPU in the affinity mask)";
        var one = new byte[MaskBytes];
        one[last / 8] = (byte)(1 << (last % 8));
        return SchedSetAffinity(0, one.Length, one) == 0 ? $"pinned to cpu {last}" : "not pinned (sched_setaffinity refused)";
    }

    /// <summary>
    /// Moves the calling thread to another CPU it may run on, then gives it its whole mask back (it stays
    /// where it was moved until the scheduler moves it). False when there is no other CPU or no API.
    /// </summary>
    public static bool StepOff(int cpu)
    {
        if (!Available || cpu < 0 || cpu >= MaskBytes * 8) return false;
        try { return StepOffCore(cpu); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; } // a worker thread must not die of it
    }

    private static bool StepOffCore(int cpu)
    {
        var mask = new byte[MaskBytes];
        if (SchedGetAffinity(0, mask.Length, mask) != 0 || !IsSet(mask, cpu)) return false;
        var others = (byte[])mask.Clone();
        others[cpu / 8] &= (byte)~(1 << (cpu % 8));
        if (others.All(b => b == 0)) return false;
        if (SchedSetAffinity(0, others.Length, others) != 0) return false;
        SchedSetAffinity(0, mask.Length, mask);
        return true;
    }

    /// <summary>The CPUs the calling thread may run on, or empty where unknown.</summary>
    public static IReadOnlyList<int> AllowedCpus()
    {
        if (!Available) return [];
        var mask = new byte[MaskBytes];
        if (SchedGetAffinity(0, mask.Length, mask) != 0) return [];
        return Enumerable.Range(0, MaskBytes * 8).Where(cpu => IsSet(mask, cpu)).ToList();
    }

    private static bool IsSet(byte[] mask, int cpu) => (mask[cpu / 8] & (1 << (cpu % 8))) != 0;
}
