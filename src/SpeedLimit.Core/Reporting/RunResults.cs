using System.Text.Json;
using SpeedLimit.Search;

namespace SpeedLimit.Reporting;

/// <summary>
/// Everything a run folder's results.json holds: the searches (one per precision, e.g. an int8
/// SpeedLimit search and an fp32 AutoTinyBERT-style search), with winners per bound, every
/// candidate, fronts, options and timings, and any baseline sets.
/// </summary>
public sealed record RunResults(string Title, DateTimeOffset CreatedAt, IReadOnlyList<SearchResult> Searches, IReadOnlyList<BaselineResult> Baselines)
{
    public string ToJson() => JsonSerializer.Serialize(this, SearchJson.Indented);

    public static RunResults FromJson(string json, string source = "results JSON")
    {
        try
        {
            return JsonSerializer.Deserialize<RunResults>(json, SearchJson.Indented)
                ?? throw new InvalidDataException($"{source}: empty document");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{source}: not a SpeedLimit results file ({ex.Message})");
        }
    }

    public static RunResults Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"results file '{path}' does not exist");
        return FromJson(File.ReadAllText(path), path);
    }
}
