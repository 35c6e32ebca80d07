using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

/// <summary>
/// <see cref="BertTextEncoder"/> against Hugging Face's Rust tokenizer: the fixture holds the ids and
/// token types that the npm package <c>tokenizers</c> produced, configured as BertTokenizerFast for
/// bert-base-uncased (scripts/tokenizer-fixtures/generate.mjs), for single texts, pairs truncated
/// longest-first at max length 64 and shorter, and the special cases (İ, U+2028/U+2029, typed
/// special tokens, control characters, over-long words).
/// </summary>
public class TokenizerParityTests
{
    private sealed record Case(string A, string? B, int MaxLength, int[] Ids, int[] TypeIds);
    private sealed record Fixture(string Tokenizers, string VocabSha256, int VocabSize, Case[] Cases);

    private static Fixture Load()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Data", "Fixtures", "hf-tokenizer.json");
        return JsonSerializer.Deserialize<Fixture>(File.ReadAllText(path), new JsonSerializerOptions(JsonSerializerDefaults.Web))!;
    }

    /// <summary>
    /// The bert-base-uncased vocabulary: the copy the project ships inside the built-in MiniLM package
    /// (the same 30,522 lines), or shared/data's. Written to a temp file for <see cref="BertTextEncoder.FromVocabFile"/>.
    /// </summary>
    internal static string? VocabPath()
    {
        if (SpeedLimit.Pretrained.MiniLmResources.IsAvailable)
        {
            var path = Path.Combine(Path.GetTempPath(), $"sl-minilm-vocab-{Environment.ProcessId}.txt");
            if (!File.Exists(path)) File.WriteAllLines(path, SpeedLimit.Pretrained.MiniLmResources.ReadVocab());
            return path;
        }
        return SharedData.Root is null ? null : SharedData.BertVocab;
    }

    [VocabFact]
    public void EveryFixtureCaseMatchesHuggingFaceFastTokenizer()
    {
        var fixture = Load();
        var vocabPath = VocabPath()!;
        var lines = File.ReadAllLines(vocabPath);
        var sha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n', lines))));
        Assert.Equal(fixture.VocabSha256, sha); // the fixture was generated with this vocabulary
        var encoder = BertTextEncoder.FromVocabFile(vocabPath);
        Assert.True(fixture.Cases.Length >= 300, $"fixture has only {fixture.Cases.Length} cases");
        var failures = new List<string>();
        foreach (var c in fixture.Cases)
        {
            var enc = encoder.Encode(c.A, c.B, c.MaxLength);
            if (!enc.InputIds.SequenceEqual(c.Ids) || !enc.TokenTypeIds.SequenceEqual(c.TypeIds))
                failures.Add($"{JsonSerializer.Serialize(c.A)} / {JsonSerializer.Serialize(c.B)} @ {c.MaxLength}: ours [{string.Join(",", enc.InputIds)}] types [{string.Join(",", enc.TokenTypeIds)}], HF [{string.Join(",", c.Ids)}] types [{string.Join(",", c.TypeIds)}]");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {fixture.Cases.Length} cases differ from tokenizers {fixture.Tokenizers}:\n" + string.Join("\n", failures.Take(15)));
    }
}

/// <summary>A fact skipped, with the reason, when no bert-base-uncased vocabulary is at hand (neither the built-in MiniLM package nor shared/data).</summary>
public sealed class VocabFactAttribute : FactAttribute
{
    public VocabFactAttribute()
    {
        if (TokenizerParityTests.VocabPath() is null)
            Skip = "no bert-base-uncased vocab: the built-in MiniLM package is not beside the tests and shared/data is absent";
    }
}
