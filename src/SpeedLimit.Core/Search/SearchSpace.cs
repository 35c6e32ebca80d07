using System.Text.Json;
using System.Text.Json.Serialization;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

/// <summary>An inclusive integer range with a step: min, min+step, ..., ≤ max.</summary>
public sealed record DimensionRange(int Min, int Max, int Step)
{
    public int Count => (Max - Min) / Step + 1;
    public int this[int index] => Min + index * Step;
    public bool Contains(int value) => value >= Min && value <= Max && (value - Min) % Step == 0;
    public int IndexOf(int value) => Contains(value) ? (value - Min) / Step : -1;
    /// <summary>The largest value on the grid (Max itself only when the step lands on it).</summary>
    public int Last => this[Count - 1];
    public IEnumerable<int> Values() { for (int i = 0; i < Count; i++) yield return this[i]; }
    public override string ToString() => Step == 1 ? $"{Min}..{Max}" : $"{Min}..{Max} step {Step}";
}

/// <summary>
/// The architectures (e, h, f) a search may choose from: a grid per dimension and a fixed head
/// count. The supermodel is the largest point of the grid.
/// </summary>
public sealed record SearchSpace
{
    [JsonConstructor]
    public SearchSpace(DimensionRange layers, DimensionRange hidden, DimensionRange ffn, int heads)
    {
        Validate(layers, "layers");
        Validate(hidden, "hidden");
        Validate(ffn, "ffn");
        if (heads < 1) throw new ArgumentException($"search space: head count {heads} must be positive");
        foreach (var h in hidden.Values())
            if (h % heads != 0)
                throw new ArgumentException($"search space: hidden size {h} is not divisible by {heads} heads; use a hidden min and step that are multiples of the head count");
        Layers = layers; Hidden = hidden; Ffn = ffn; Heads = heads;
    }

    public DimensionRange Layers { get; }
    public DimensionRange Hidden { get; }
    public DimensionRange Ffn { get; }
    public int Heads { get; }

    /// <summary>The paper's Table 1: e 1..5, h 120..528 step 12, f 128..1016 step 12, 12 heads (13,125 architectures).</summary>
    public static SearchSpace Paper { get; } = new(new(1, 5, 1), new(120, 528, 12), new(128, 1016, 12), 12);

    /// <summary>A small space the built-in demo searches in minutes on 2 cores.</summary>
    public static SearchSpace Demo { get; } = new(new(1, 4, 1), new(32, 128, 16), new(32, 256, 32), 4);

    public long Count => (long)Layers.Count * Hidden.Count * Ffn.Count;
    public Architecture Largest => new(Layers.Last, Hidden.Last, Ffn.Last);
    public Architecture Smallest => new(Layers.Min, Hidden.Min, Ffn.Min);

    public bool Contains(Architecture a) => Layers.Contains(a.Layers) && Hidden.Contains(a.Hidden) && Ffn.Contains(a.Ffn);

    /// <summary>Every architecture, layers outermost, in a fixed order.</summary>
    public IEnumerable<Architecture> Enumerate()
    {
        foreach (var e in Layers.Values())
            foreach (var h in Hidden.Values())
                foreach (var f in Ffn.Values())
                    yield return new Architecture(e, h, f);
    }

    /// <summary>A uniformly random architecture of the space.</summary>
    public Architecture Sample(Random random) =>
        new(Layers[random.Next(Layers.Count)], Hidden[random.Next(Hidden.Count)], Ffn[random.Next(Ffn.Count)]);

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    public static SearchSpace FromJson(string json, string source = "search space JSON")
    {
        try
        {
            return JsonSerializer.Deserialize<SearchSpace>(json, JsonOptions)
                ?? throw new ArgumentException($"{source}: empty document");
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"{source}: not a valid search space ({ex.Message}); expected {{\"layers\":{{\"min\":1,\"max\":5,\"step\":1}}, \"hidden\":..., \"ffn\":..., \"heads\":12}}");
        }
    }

    /// <summary>A command-line space: "paper", "demo", a JSON file, or <paramref name="fallback"/> when not given.</summary>
    public static SearchSpace FromOption(string? value, SearchSpace fallback) => value switch
    {
        null => fallback,
        "paper" => Paper,
        "demo" => Demo,
        _ => Load(value),
    };

    public static SearchSpace Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"search space file '{path}' does not exist");
        return FromJson(File.ReadAllText(path), path);
    }

    private static void Validate(DimensionRange? r, string name)
    {
        if (r is null) throw new ArgumentException($"search space: '{name}' range is missing");
        if (r.Step < 1) throw new ArgumentException($"search space: {name} step {r.Step} must be at least 1");
        if (r.Min < 1) throw new ArgumentException($"search space: {name} min {r.Min} must be at least 1");
        if (r.Max < r.Min) throw new ArgumentException($"search space: {name} range {r.Min}..{r.Max} is empty; max must be ≥ min");
    }

    public override string ToString() => $"e {Layers}, h {Hidden}, f {Ffn}, {Heads} heads ({Count:N0} architectures)";
}
