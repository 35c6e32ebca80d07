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

    [SharedDataFact]
    public void EveryFixtureCaseMatchesHuggingFaceFastTokenizer()
    {
        var fixture = Load();
        var lines = File.ReadAllLines(SharedData.BertVocab);
        var sha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n', lines))));
        Assert.Equal(fixture.VocabSha256, sha); // the fixture was generated with this vocabulary
        var encoder = BertTextEncoder.FromVocabFile(SharedData.BertVocab);
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
