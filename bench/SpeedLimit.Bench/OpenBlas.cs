using System.Diagnostics;
using System.Runtime.InteropServices;

namespace SpeedLimit.Bench;

/// <summary>
/// OpenBLAS's <c>cblas_sgemm</c>, loaded at run time from <c>libopenblas.so.0</c> when the machine
/// has it, as the reference the bench measures our GEMM beside. Neither the project nor its tests
/// need it. OpenBLAS reads <c>OPENBLAS_CORETYPE</c> once, when it loads, so the core it would pick is
/// first asked of a child process (<c>--openblas-probe</c>); when that is a generic or SSE-only
/// kernel (Debian's 0.3.21 does not know recent Xeons and falls back to an SSE3 one), this process
/// sets <c>OPENBLAS_CORETYPE=SkylakeX</c> (AVX-512) or <c>Haswell</c> (AVX2) in its own environment
/// before it loads the library. The variable is set for the bench process only. A value already in
/// the environment is kept: on a Zen 5 (family 26) Debian's 0.3.21 picks its AVX2 Haswell kernel, at
/// half its AVX-512 speed, so run the bench with OPENBLAS_CORETYPE=SkylakeX there for the stronger reference.
/// </summary>
public sealed unsafe class OpenBlas
{
    public const string LibraryName = "libopenblas.so.0";
    public const string ProbeArgument = "--openblas-probe";

    private readonly delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> _sgemm;
    private readonly delegate* unmanaged<int, void> _setThreads;

    private OpenBlas(nint handle, string probedCore, string core, string? coreTypeSet)
    {
        _sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)NativeLibrary.GetExport(handle, "cblas_sgemm");
        _setThreads = NativeLibrary.TryGetExport(handle, "openblas_set_num_threads", out var st) ? (delegate* unmanaged<int, void>)st : null;
        ProbedCore = probedCore;
        Core = core;
        CoreTypeSet = coreTypeSet;
    }

    /// <summary>The core OpenBLAS picked by itself (in the probe child).</summary>
    public string ProbedCore { get; }
    /// <summary>The core it runs in this process.</summary>
    public string Core { get; }
    /// <summary>The OPENBLAS_CORETYPE value this process set, or null when none was needed.</summary>
    public string? CoreTypeSet { get; }

    private static OpenBlas? s_loaded;
    private static string? s_reason;

    /// <summary>Loads OpenBLAS once; null (with the reason) when the library is absent or cannot be probed.</summary>
    public static OpenBlas? TryLoad(out string reason)
    {
        if (s_loaded is not null || s_reason is not null)
        {
            reason = s_reason ?? "";
            return s_loaded;
        }
        s_loaded = Load(out reason);
        s_reason = reason;
        return s_loaded;
    }

    private static OpenBlas? Load(out string reason)
    {
        if (!OperatingSystem.IsLinux())
        {
            reason = "not Linux";
            return null;
        }
        // Not loaded here before the probe: loading fixes the core type for the process.
        string? probed = ProbeInChild(out reason);
        if (probed is null) return null;
        string? coreType = null;
        string? preset = Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE");
        if (preset is null && IsGeneric(probed))
        {
            coreType = System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "SkylakeX" : "Haswell";
            SetEnv("OPENBLAS_CORETYPE", coreType);
        }
        if (!NativeLibrary.TryLoad(LibraryName, out var handle))
        {
            reason = $"{LibraryName} could not be loaded";
            return null;
        }
        string core = CoreName(handle);
        reason = "";
        return new OpenBlas(handle, probed, core, coreType);
    }

    /// <summary>Generic or SSE-only kernels (the fallback of a release that does not know the CPU).</summary>
    internal static bool IsGeneric(string core)
    {
        var c = core.ToLowerInvariant();
        return c.Contains("generic") || c.Contains("prescott") || c.Contains("nehalem") || c.Contains("core2")
            || c.Contains("penryn") || c.Contains("dunnington") || c.Contains("atom") || c.Contains("katmai")
            || c.Contains("northwood") || c.Contains("banias") || c.Contains("sandybridge") || c.Length == 0;
    }

    private static string CoreName(nint handle)
    {
        if (!NativeLibrary.TryGetExport(handle, "openblas_get_corename", out var f)) return "unknown";
        var p = ((delegate* unmanaged<nint>)f)();
        return p == 0 ? "unknown" : Marshal.PtrToStringAnsi(p) ?? "unknown";
    }

    /// <summary>Entry point of the probe child: loads the library as it would load by itself and prints its core name.</summary>
    public static int RunProbe()
    {
        if (!NativeLibrary.TryLoad(LibraryName, out var handle))
        {
            Console.WriteLine("absent");
            return 3;
        }
        Console.WriteLine("core=" + CoreName(handle));
        return 0;
    }

    private static string? ProbeInChild(out string reason)
    {
        var self = Environment.ProcessPath;
        var entry = System.Reflection.Assembly.GetEntryAssembly()?.Location;
        if (self is null || entry is null)
        {
            reason = "cannot start the probe child";
            return null;
        }
        var info = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // Run through the muxer when the bench runs as `dotnet speedlimit-bench.dll`.
        if (Path.GetFileNameWithoutExtension(self).Equals("dotnet", StringComparison.OrdinalIgnoreCase)) info.ArgumentList.Add(entry);
        info.ArgumentList.Add(ProbeArgument);
        info.Environment.Remove("OPENBLAS_CORETYPE");
        try
        {
            using var child = Process.Start(info)!;
            string output = child.StandardOutput.ReadToEnd();
            child.WaitForExit();
            var line = output.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("core=", StringComparison.Ordinal) || l == "absent");
            if (line is null || line == "absent")
            {
                reason = $"{LibraryName} not found";
                return null;
            }
            reason = "";
            return line["core=".Length..];
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            reason = $"probe child failed: {e.Message}";
            return null;
        }
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnvNative([MarshalAs(UnmanagedType.LPStr)] string name, [MarshalAs(UnmanagedType.LPStr)] string value, int overwrite);

    /// <summary>Sets a variable in the native environment (what the C library's getenv sees) and the managed one.</summary>
    private static void SetEnv(string name, string value)
    {
        SetEnvNative(name, value, 1);
        Environment.SetEnvironmentVariable(name, value);
    }

    public void SetThreads(int threads)
    {
        if (_setThreads != null) _setThreads(threads);
    }

    /// <summary>Row-major C = op(A)·op(B) (beta 0), as <see cref="Kernels.Gemm.Multiply(bool, bool, int, int, int, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, Span{float}, int, bool, int)"/>.</summary>
    public void Sgemm(bool transA, bool transB, int m, int n, int k, float[] a, int lda, float[] b, int ldb, float[] c, int ldc)
    {
        const int rowMajor = 101, noTrans = 111, trans = 112;
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
            _sgemm(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans, m, n, k, 1f, pa, lda, pb, ldb, 0f, pc, ldc);
    }
}
