using System.Runtime.InteropServices;

namespace SpeedLimit.Latency;

/// <summary>
/// Where a latency was measured: enough to tell whether a predictor or a dataset still applies.
/// A VM's CPU name is often generic ("Intel(R) Xeon(R) Processor"), so the ISA flags that decide
/// which int8 kernels ONNX Runtime picks (avx512_vnni, avx_vnni, amx_int8, …), the core and
/// logical-processor counts, the runtime version and the OS are part of it. Fields written by
/// older builds are empty / 0 and are then not compared.
/// </summary>
/// <param name="Threads">Intra-op threads the model ran with.</param>
/// <param name="Isa">The performance-relevant ISA flags, sorted, space-separated.</param>
/// <param name="Cores">Physical cores (0: unknown).</param>
/// <param name="LogicalProcessors">Logical processors the OS reports (0: unknown).</param>
public sealed record DeviceFingerprint(string CpuModel, int Threads, string RuntimeVersion,
    string Isa = "", int Cores = 0, int LogicalProcessors = 0, string Os = "")
{
    /// <summary>The /proc/cpuinfo flags that change int8/fp32 inference speed.</summary>
    public static readonly IReadOnlyList<string> RelevantFlags =
    [
        "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16", "avx512_fp16",
        "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve",
    ];

    public override string ToString()
    {
        var parts = new List<string> { CpuModel };
        if (Isa.Length > 0) parts.Add($"[{Isa}]");
        if (Cores > 0 || LogicalProcessors > 0) parts.Add($"{Cores} core(s) / {LogicalProcessors} logical");
        parts.Add($"{Threads} thread(s)");
        parts.Add($"ONNX Runtime {RuntimeVersion}");
        if (Os.Length > 0) parts.Add(Os);
        return string.Join(", ", parts);
    }

    /// <summary>A short stable key (for file names and grouping) over every field.</summary>
    public string Key()
    {
        var text = $"{CpuModel}|{Threads}|{RuntimeVersion}|{Isa}|{Cores}|{LogicalProcessors}|{Os}";
        var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text));
        return Convert.ToHexString(hash, 0, 6).ToLowerInvariant();
    }

    /// <summary>What differs between two fingerprints; fields unknown on either side are not compared.</summary>
    public IReadOnlyList<string> Differences(DeviceFingerprint other)
    {
        var diffs = new List<string>();
        if (!string.Equals(CpuModel.Trim(), other.CpuModel.Trim(), StringComparison.Ordinal)) diffs.Add($"CPU '{CpuModel}' vs '{other.CpuModel}'");
        if (Isa.Length > 0 && other.Isa.Length > 0 && Isa != other.Isa) diffs.Add($"ISA [{Isa}] vs [{other.Isa}]");
        if (Cores > 0 && other.Cores > 0 && Cores != other.Cores) diffs.Add($"{Cores} vs {other.Cores} core(s)");
        if (LogicalProcessors > 0 && other.LogicalProcessors > 0 && LogicalProcessors != other.LogicalProcessors)
            diffs.Add($"{LogicalProcessors} vs {other.LogicalProcessors} logical processor(s)");
        if (Threads != other.Threads) diffs.Add($"{Threads} vs {other.Threads} thread(s)");
        if (!string.Equals(RuntimeVersion, other.RuntimeVersion, StringComparison.Ordinal)) diffs.Add($"ONNX Runtime {RuntimeVersion} vs {other.RuntimeVersion}");
        if (Os.Length > 0 && other.Os.Length > 0 && Os != other.Os) diffs.Add($"OS '{Os}' vs '{other.Os}'");
        return diffs;
    }

    /// <summary>Same machine and runtime: every known field but the thread count agrees (thread counts are compared per record by whoever filters them).</summary>
    public bool SameDeviceAs(DeviceFingerprint other) => (this with { Threads = 0 }).Matches(other with { Threads = 0 });

    /// <summary>True when no known field differs.</summary>
    public bool Matches(DeviceFingerprint other) => Differences(other).Count == 0;

    private static (string Model, string Isa, int Cores)? _cpu;

    /// <summary>This machine at <paramref name="threads"/> intra-op threads.</summary>
    public static DeviceFingerprint Current(int threads)
    {
        var (model, isa, cores) = _cpu ??= ReadCpu();
        return new DeviceFingerprint(model, threads, SpeedLimit.Onnx.OnnxRunner.RuntimeVersion, isa, cores, Environment.ProcessorCount,
            RuntimeInformation.OSDescription.Trim());
    }

    /// <summary>Model name, relevant flags and physical cores from /proc/cpuinfo text (Linux); the OS description elsewhere.</summary>
    internal static (string Model, string Isa, int Cores) ParseCpuInfo(string? cpuinfo)
    {
        string model = RuntimeInformation.OSDescription;
        if (cpuinfo is null) return (model, "", 0);
        var flags = new HashSet<string>(StringComparer.Ordinal);
        var physical = new HashSet<(string, string)>();
        string physId = "0";
        bool flagsSeen = false;
        foreach (var raw in cpuinfo.Split('\n'))
        {
            int colon = raw.IndexOf(':');
            if (colon < 0) continue;
            var key = raw[..colon].Trim();
            var value = raw[(colon + 1)..].Trim();
            switch (key)
            {
                case "model name" when model == RuntimeInformation.OSDescription: model = value; break;
                case "physical id": physId = value; break;
                case "core id": physical.Add((physId, value)); break;
                case "flags" or "Features" when !flagsSeen:
                    flagsSeen = true;
                    foreach (var f in value.Split(' ', StringSplitOptions.RemoveEmptyEntries)) flags.Add(f);
                    break;
            }
        }
        var isa = string.Join(' ', RelevantFlags.Where(flags.Contains).Order(StringComparer.Ordinal));
        return (model, isa, physical.Count);
    }

    private static (string, string, int) ReadCpu()
    {
        try
        {
            return ParseCpuInfo(File.Exists("/proc/cpuinfo") ? File.ReadAllText("/proc/cpuinfo") : null);
        }
        catch (IOException)
        {
            return ParseCpuInfo(null);
        }
    }
}
