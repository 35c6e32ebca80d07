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
    /// <summary>A setting: its name, what it sets, how to read and write it, and which values it takes.</summary>
    private sealed record Knob(string Name, string Help, Func<string> Get, Action<string> Set, Func<string, bool> Accepts);

    /// <summary>A whole-number setting of at least <paramref name="min"/>.</summary>
    private static Knob Count(string name, string help, Func<int> get, Action<int> set, int min = 1) =>
        new(name, help, () => $"{get()}", v => set(int.Parse(v)), v => int.TryParse(v, out int n) && n >= min);

    /// <summary>A size held in floats, written in KiB (0 and up).</summary>
    private static Knob Kib(string name, string help, Func<long> getFloats, Action<long> setFloats) =>
        Count(name, help, () => (int)(getFloats() / 256), v => setFloats(v * 256L), min: 0);

    /// <summary>An on/off setting, written 1 or 0.</summary>
    private static Knob Switch(string name, string help, Func<bool> get, Action<bool> set) =>
        new(name, help, () => get() ? "1" : "0", v => set(v != "0"), v => v is "0" or "1");

    private static readonly Knob[] Knobs =
    [
        Count("KC", "depth block", () => GemmDriver.KC, v => GemmDriver.KC = v),
        Count("MC", "row block", () => GemmDriver.MC, v => GemmDriver.MC = v),
        Count("NC", "column block", () => GemmDriver.NC, v => GemmDriver.NC = v),
        Kib("FEW_ROWS_BLOCK_KIB", "KiB of B packed at once for a few rows read in place (0: NC columns)", () => GemmDriver.FewRowsBlockFloats, v => GemmDriver.FewRowsBlockFloats = v),
        Kib("MANY_ROWS_BLOCK_KIB", "KiB of B per column block for more rows read in place (0: NC columns)", () => GemmDriver.ManyRowsBlockFloats, v => GemmDriver.ManyRowsBlockFloats = v),
        Switch("ROW_TILES_OUTER", "row tiles outer in the full row blocks of many rows read in place (1/0)", () => GemmDriver.RowTilesOuterOn, v => GemmDriver.RowTilesOuterOn = v),
        Count("MIN_CHUNK_COLUMNS", "narrowest column run of a few-row product", () => GemmDriver.MinChunkColumns, v => GemmDriver.MinChunkColumns = v),
        Count("COLUMN_CHUNK_ROWS", "most rows split by columns alone", () => GemmDriver.ColumnChunkMaxRows, v => GemmDriver.ColumnChunkMaxRows = v),
        Count("CHUNKS_PER_THREAD", "chunks of C per thread in a row/column split", () => GemmDriver.ChunksPerThread, v => GemmDriver.ChunksPerThread = v),
        Switch("ROW_MAJOR_A", "read row-major A in place (1) or pack it (0)", () => GemmDriver.ReadRowMajorA, v => GemmDriver.ReadRowMajorA = v),
        Switch("SPLIT_DEPTH", "depth groups for long products (1/0)", () => GemmDriver.SplitLongDepth, v => GemmDriver.SplitLongDepth = v),
        Count("PACK_ROWS", "band of row-major B packed at once", () => GemmPack.PackRows, v => GemmPack.PackRows = v),
        Count("PREFETCH_BANDS", "bands a (K, M) A pack prefetches ahead", () => GemmPack.PrefetchBands, v => GemmPack.PrefetchBands = v, min: 0),
        Switch("PREFETCH_NEXT_PANEL", "fetch the next B micro-panel into L2 during a panel's tiles (1/0)", () => GemmDriver.PrefetchNextPanel, v => GemmDriver.PrefetchNextPanel = v),
        new("PATH", "kernel path (Auto, Vector512, Vector256, Scalar)", () => $"{Gemm.Path}", v => Gemm.Path = Enum.Parse<GemmPath>(v, ignoreCase: true),
            v => Enum.TryParse<GemmPath>(v, ignoreCase: true, out _)),
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
            if (!knob.Accepts(value)) throw new ArgumentException($"'{value}' is not a value for {knob.Name} ({knob.Help}) in variant '{variant}'");
            yield return (knob, value);
        }
    }

    private static void Set(Knob knob, string value)
    {
        if (!knob.Accepts(value)) throw new ArgumentException($"GEMM_{knob.Name}='{value}' is not a value for {knob.Name} ({knob.Help})");
        knob.Set(value);
    }
}
