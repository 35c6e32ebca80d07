using System.Diagnostics;
using System.Runtime.InteropServices;

namespace SpeedLimit.Latency;

/// <summary>What the profiler times.</summary>
public enum LatencyClock
{
    /// <summary>Elapsed wall time: the latency a user sees, but it includes time other processes took the core.</summary>
    Wall,
    /// <summary>
    /// CPU time of the calling thread (Linux CLOCK_THREAD_CPUTIME_ID). With one intra-op thread ONNX
    /// Runtime runs the whole inference on the caller, so this is the inference's compute time without
    /// the periods the thread was descheduled: the robust choice on a machine shared with other work.
    /// </summary>
    ThreadCpu,
}

/// <summary>Reads the profiler's clocks.</summary>
public static partial class LatencyProfilerClock
{
    public static string Name(LatencyClock clock) => clock == LatencyClock.ThreadCpu ? "thread-cpu" : "wall";

    public static LatencyClock Parse(string text) => text?.Trim().ToLowerInvariant() switch
    {
        "wall" => LatencyClock.Wall,
        "thread-cpu" or "cpu" => LatencyClock.ThreadCpu,
        _ => throw new UserInputException($"unknown clock '{text}'; use wall or thread-cpu"),
    };

    public static bool ThreadCpuSupported => OperatingSystem.IsLinux();

    /// <summary>Milliseconds <paramref name="run"/> took on <paramref name="clock"/>.</summary>
    public static double TimeMs(Action run, LatencyClock clock)
    {
        if (clock == LatencyClock.ThreadCpu)
        {
            long c0 = ThreadCpuNanoseconds();
            run();
            return (ThreadCpuNanoseconds() - c0) / 1e6;
        }
        long t0 = Stopwatch.GetTimestamp();
        run();
        return Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
    }

    private const int ClockThreadCpuTimeId = 3; // CLOCK_THREAD_CPUTIME_ID on Linux

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clockId, out TimeSpec time);

    private static long ThreadCpuNanoseconds()
    {
        if (!ThreadCpuSupported) throw new PlatformNotSupportedException("thread CPU time is read from Linux's CLOCK_THREAD_CPUTIME_ID; use the wall clock on this OS");
        if (ClockGetTime(ClockThreadCpuTimeId, out var t) != 0) throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        return t.Seconds * 1_000_000_000L + t.Nanoseconds;
    }
}
