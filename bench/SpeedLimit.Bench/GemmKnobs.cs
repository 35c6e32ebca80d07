using SpeedLimit.Kernels;

namespace SpeedLimit.Bench;

/// <summary>
/// The GEMM driver's tuning settings by name (KC, MC, NC, …), as the tuning sections set them: from GEMM_&lt;NAME&gt;
/// environment variables (<see cref="ApplyEnvironment"/>) or from a variant such as "KC=384,MC=128"
/// (<see cref="ApplyVariant"/>). The settings are process-wide statics, so a variant is applied on top of the
/// defaults captured when this class is first used.
/// </summary>
public static class GemmKnobs
{
    private sealed record Knob(string Name, string Help, Func<string> Get, Action<string> Set);

    private static readonly Knob[] Knobs =
    [
        new("KC", "depth block", () => $"{GemmDriver.KC}", v => GemmDriver.KC = int.Parse(v)),
        new("MC", "row block", () => $"{GemmDriver.MC}", v => GemmDriver.MC = int.Parse(v)),
        new("NC", "column block", () => $"{GemmDriver.NC}", v => GemmDriver.NC = int.Parse(v)),
        new("MIN_CHUNK_COLUMNS", "narrowest column run of a few-row product", () => $"{GemmDriver.MinChunkColumns}", v => GemmDriver.MinChunkColumns = int.Parse(v)),
        new("COLUMN_CHUNK_ROWS", "most rows split by columns alone", () => $"{GemmDriver.ColumnChunkMaxRows}", v => GemmDriver.ColumnChunkMaxRows = int.Parse(v)),
        new("CHUNKS_PER_THREAD", "chunks of C per thread in a row/column split", () => $"{GemmDriver.ChunksPerThread}", v => GemmDriver.ChunksPerThread = int.Parse(v)),
        new("ROW_MAJOR_A", "read row-major A in place (1) or pack it (0)", () => GemmDriver.ReadRowMajorA ? "1" : "0", v => GemmDriver.ReadRowMajorA = v != "0"),
        new("SPLIT_DEPTH", "depth groups for long products (1/0)", () => GemmDriver.SplitLongDepth ? "1" : "0", v => GemmDriver.SplitLongDepth = v != "0"),
        new("PACK_ROWS", "band of row-major B packed at once", () => $"{GemmPack.PackRows}", v => GemmPack.PackRows = int.Parse(v)),
        new("PREFETCH_BANDS", "bands a (K, M) A pack prefetches ahead", () => $"{GemmPack.PrefetchBands}", v => GemmPack.PrefetchBands = int.Parse(v)),
        new("PREFETCH_NEXT_PANEL", "fetch the next B micro-panel into L2 during a panel's tiles (1/0)", () => GemmDriver.PrefetchNextPanel ? "1" : "0", v => GemmDriver.PrefetchNextPanel = v != "0"),
        new("PATH", "kernel path (Auto, Vector512, Vector256, Scalar)", () => $"{Gemm.Path}", v => Gemm.Path = Enum.Parse<GemmPath>(v, ignoreCase: true)),
    ];

    private static readonly Dictionary<string, string> Defaults = Knobs.ToDictionary(k => k.Name, k => k.Get());

    /// <summary>"KC, MC, …" with what each sets, for usage notes.</summary>
    public static string Names => string.Join("; ", Knobs.Select(k => $"{k.Name} ({k.Help})"));

    /// <summary>Sets every knob whose GEMM_&lt;NAME&gt; environment variable is set.</summary>
    public static void ApplyEnvironment()
    {
        foreach (var knob in Knobs)
            if (Environment.GetEnvironmentVariable("GEMM_" + knob.Name) is { Length: > 0 } value) Set(knob, value);
    }

    /// <summary>
    /// Restores the defaults, then sets the variant's knobs: "KC=384,MC=128", or "default" for none.
    /// Throws <see cref="ArgumentException"/> naming an unknown knob or a value it cannot take.
    /// </summary>
    public static void ApplyVariant(string variant)
    {
        foreach (var knob in Knobs) knob.Set(Defaults[knob.Name]);
        foreach (var (knob, value) in Parse(variant)) knob.Set(value); // Parse checked the values
    }

    /// <summary>Checks a variant without applying it (so a typo fails before minutes of timing, not after).</summary>
    public static void Validate(string variant) => _ = Parse(variant).ToList();

    /// <summary>The current settings, e.g. "KC=1024 MC=96 NC=1024".</summary>
    public static string Describe(params string[] names) =>
        string.Join(" ", Knobs.Where(k => names.Length == 0 || names.Contains(k.Name)).Select(k => $"{k.Name}={k.Get()}"));

    private static IEnumerable<(Knob Knob, string Value)> Parse(string variant)
    {
        if (variant.Trim().Equals("default", StringComparison.OrdinalIgnoreCase)) yield break;
        foreach (var part in variant.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('=');
            var knob = eq <= 0 ? null : Knobs.FirstOrDefault(k => k.Name.Equals(part[..eq].Trim(), StringComparison.OrdinalIgnoreCase));
            if (knob is null) throw new ArgumentException($"'{part}' in variant '{variant}' is not NAME=value with NAME one of: {string.Join(", ", Knobs.Select(k => k.Name))}");
            string value = part[(eq + 1)..].Trim();
            if (!Accepts(knob, value)) throw new ArgumentException($"'{value}' is not a value for {knob.Name} ({knob.Help}) in variant '{variant}'");
            yield return (knob, value);
        }
    }

    private static bool Accepts(Knob knob, string value) => knob.Name == "PATH"
        ? Enum.TryParse<GemmPath>(value, ignoreCase: true, out _)
        : knob.Name is "ROW_MAJOR_A" or "SPLIT_DEPTH" or "PREFETCH_NEXT_PANEL" ? value is "0" or "1"
        : int.TryParse(value, out int n) && n >= (knob.Name == "PREFETCH_BANDS" ? 0 : 1);

    private static void Set(Knob knob, string value)
    {
        if (!Accepts(knob, value)) throw new ArgumentException($"GEMM_{knob.Name}='{value}' is not a value for {knob.Name} ({knob.Help})");
        knob.Set(value);
    }
}
