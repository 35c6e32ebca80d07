using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using SpeedLimit.Latency;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

/// <summary>JSON settings shared by study definitions, the study store and results.json.</summary>
public static class SearchJson
{
    /// <summary>Compact form: the canonical text two definitions are compared by.</summary>
    public static readonly JsonSerializerOptions Compact = Create(indented: false);
    public static readonly JsonSerializerOptions Indented = Create(indented: true);

    private static JsonSerializerOptions Create(bool indented) => new()
    {
        WriteIndented = indented,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        // A NaN (e.g. "no best yet") must not make a whole results file unwritable.
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>"a.b: stored X, now Y" for each leaf that differs (at most a few, for one error line).</summary>
    internal static List<string> Differences(string storedJson, string givenJson)
    {
        var diffs = new List<string>();
        Walk(JsonNode.Parse(storedJson), JsonNode.Parse(givenJson), "", diffs);
        return diffs;
    }

    private static void Walk(JsonNode? a, JsonNode? b, string path, List<string> diffs)
    {
        if (a is JsonObject oa && b is JsonObject ob)
        {
            foreach (var key in oa.Select(p => p.Key).Union(ob.Select(p => p.Key)))
                Walk(oa[key], ob[key], path.Length == 0 ? key : $"{path}.{key}", diffs);
            return;
        }
        var sa = a?.ToJsonString() ?? "null";
        var sb = b?.ToJsonString() ?? "null";
        if (sa != sb) diffs.Add($"{path}: stored {sa}, now {sb}");
    }
}

/// <summary>
/// Everything that fixes a search's path: task, precision, space, bounds, seed, fine-tuning
/// budget and options. A study resumes only under an identical definition.
/// </summary>
public sealed record SearchDefinition
{
    [JsonConstructor]
    public SearchDefinition(string task, Precision precision, SearchSpace space, IReadOnlyList<double> boundsMs,
        int seed, string budget, SearchOptions options)
    {
        if (string.IsNullOrWhiteSpace(task)) throw new ArgumentException("search definition: task name is empty; name the task (for example sst2)");
        ArgumentNullException.ThrowIfNull(space);
        ArgumentNullException.ThrowIfNull(options);
        if (boundsMs is null || boundsMs.Count == 0) throw new ArgumentException("search definition: no latency bound given; give at least one bound in ms");
        foreach (var b in boundsMs)
            if (!double.IsFinite(b) || b <= 0) throw new ArgumentException($"search definition: latency bound {b} ms must be a positive number of milliseconds");
        options.Validate();
        Task = task;
        Precision = precision;
        Space = space;
        // Sorted and distinct so that the same set of bounds is the same study.
        BoundsMs = boundsMs.Distinct().Order().ToArray();
        Seed = seed;
        Budget = budget ?? "";
        Options = options; // an immutable record
    }

    public string Task { get; }
    public Precision Precision { get; }
    public SearchSpace Space { get; }
    /// <summary>Latency bounds in ms, ascending; each gets its own search over one shared evaluation cache.</summary>
    public IReadOnlyList<double> BoundsMs { get; }
    public int Seed { get; }
    /// <summary>What one candidate evaluation costs (e.g. "2 epochs, 4k examples"); recorded with every candidate.</summary>
    public string Budget { get; }
    public SearchOptions Options { get; }

    public string ToJson(bool indented = false) => JsonSerializer.Serialize(this, indented ? SearchJson.Indented : SearchJson.Compact);

    public static SearchDefinition FromJson(string json) =>
        JsonSerializer.Deserialize<SearchDefinition>(json, SearchJson.Compact) ?? throw new InvalidDataException("search definition JSON is empty");

    /// <summary>Equal when every setting is (compared through the canonical JSON, lists and options included).</summary>
    public bool Equals(SearchDefinition? other) => other is not null && ToJson() == other.ToJson();
    public override int GetHashCode() => ToJson().GetHashCode(StringComparison.Ordinal);
}

/// <summary>A named fixed architecture evaluated as a baseline (e.g. a uniform BERT size).</summary>
public sealed record BaselineArchitecture(string Name, Architecture Arch);

/// <summary>Fixed architectures to evaluate and measure at one precision, for comparison with searches.</summary>
public sealed record BaselineDefinition
{
    [JsonConstructor]
    public BaselineDefinition(string task, Precision precision, IReadOnlyList<BaselineArchitecture> architectures, int seed, string budget)
    {
        if (string.IsNullOrWhiteSpace(task)) throw new ArgumentException("baseline definition: task name is empty; name the task (for example sst2)");
        if (architectures is null || architectures.Count == 0) throw new ArgumentException("baseline definition: no architectures given; list at least one e,h,f");
        var dup = architectures.GroupBy(a => a.Arch).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"baseline definition: architecture {dup.Key} is listed more than once");
        Task = task;
        Precision = precision;
        Architectures = architectures.ToArray();
        Seed = seed;
        Budget = budget ?? "";
    }

    public string Task { get; }
    public Precision Precision { get; }
    public IReadOnlyList<BaselineArchitecture> Architectures { get; }
    public int Seed { get; }
    public string Budget { get; }

    public string ToJson(bool indented = false) => JsonSerializer.Serialize(this, indented ? SearchJson.Indented : SearchJson.Compact);

    public static BaselineDefinition FromJson(string json) =>
        JsonSerializer.Deserialize<BaselineDefinition>(json, SearchJson.Compact) ?? throw new InvalidDataException("baseline definition JSON is empty");

    public bool Equals(BaselineDefinition? other) => other is not null && ToJson() == other.ToJson();
    public override int GetHashCode() => ToJson().GetHashCode(StringComparison.Ordinal);
}
