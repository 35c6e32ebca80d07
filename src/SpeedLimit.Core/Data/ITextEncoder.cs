namespace SpeedLimit.Data;

/// <summary>
/// Turns text into BERT-style token ids. Both the WordPiece encoder (<see cref="BertTextEncoder"/>)
/// and the built-in task's word-level encoder (<see cref="WordLevelEncoder"/>) implement it, so
/// batching, masking and the CLI never care which one they were given.
/// </summary>
public interface ITextEncoder
{
    int VocabSize { get; }
    int PadId { get; }
    int ClsId { get; }
    int SepId { get; }
    int MaskId { get; }
    int UnkId { get; }

    /// <summary>Token ids of one text, without special tokens and without truncation.</summary>
    IReadOnlyList<int> Tokenize(string text);

    /// <summary>The vocabulary entry of an id (for display and debugging).</summary>
    string IdToToken(int id);

    /// <summary>True for ids that must never be masked or sampled as random replacements.</summary>
    bool IsSpecial(int id);

    /// <summary>
    /// <c>[CLS] a [SEP]</c> or <c>[CLS] a [SEP] b [SEP]</c>, token type ids 0 for the first part and
    /// 1 for b (and its closing [SEP]), truncated longest-first to at most <paramref name="maxLength"/>.
    /// </summary>
    EncodedText Encode(string textA, string? textB, int maxLength);
}

/// <summary>One encoded input: ids and token types of equal length, no padding.</summary>
public sealed record EncodedText(int[] InputIds, int[] TokenTypeIds)
{
    public int Length => InputIds.Length;

    /// <summary>
    /// Assembles special tokens around already tokenized parts, truncating longest-first as Hugging
    /// Face's fast tokenizer (<c>tokenizers</c>) does: with a budget of <paramref name="maxLength"/>
    /// minus the special tokens, a shorter part that fits in half the budget is kept whole and the
    /// longer one gets the rest; otherwise both get half and the longer one the odd token (the
    /// second part when they are equally long). See <see cref="LongestFirst"/>.
    /// </summary>
    /// <param name="countedA">The length of <paramref name="a"/> that the rule compares (default: its length).
    /// <c>tokenizers</c> ≥ 0.23 stops tokenizing a part at the first word boundary at or past the max
    /// length, so an over-long part counts as that many tokens; encoders pass that count here.</param>
    /// <param name="countedB">The same for <paramref name="b"/>.</param>
    public static EncodedText Build(ITextEncoder encoder, IReadOnlyList<int> a, IReadOnlyList<int>? b, int maxLength,
        int? countedA = null, int? countedB = null)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(a);
        int specials = b is null ? 2 : 3;
        if (maxLength < specials)
            throw new ArgumentException($"maxLength {maxLength} cannot hold the {specials} special tokens of a {(b is null ? "single" : "pair")} input; use at least {specials}", nameof(maxLength));
        int lenA = a.Count, lenB = b?.Count ?? 0;
        int budget = maxLength - specials;
        if (lenA + lenB > budget)
        {
            if (b is null) lenA = budget;
            else
            {
                var (keepA, keepB) = LongestFirst(Math.Min(lenA, countedA ?? lenA), Math.Min(lenB, countedB ?? lenB), budget);
                lenA = Math.Min(lenA, keepA);
                lenB = Math.Min(lenB, keepB);
            }
        }
        int total = lenA + lenB + specials;
        var ids = new int[total];
        var types = new int[total];
        int p = 0;
        ids[p++] = encoder.ClsId;
        for (int i = 0; i < lenA; i++) ids[p++] = a[i];
        ids[p++] = encoder.SepId;
        if (b is not null)
        {
            int startB = p;
            for (int i = 0; i < lenB; i++) ids[p++] = b[i];
            ids[p++] = encoder.SepId;
            types.AsSpan(startB).Fill(1);
        }
        return new EncodedText(ids, types);
    }

    /// <summary>
    /// How many tokens of each part a pair keeps within <paramref name="budget"/> (tokens left after
    /// the special ones), as <c>tokenizers</c>' longest-first rule: nothing is cut when both fit; a
    /// shorter part of at most half the budget stays whole and the longer one is cut to the rest;
    /// otherwise the shorter part keeps ⌊budget/2⌋ and the longer one ⌈budget/2⌉ (on a tie, the
    /// second part is the longer one).
    /// </summary>
    public static (int KeepA, int KeepB) LongestFirst(int lenA, int lenB, int budget)
    {
        if (lenA < 0 || lenB < 0 || budget < 0) throw new ArgumentException($"lengths {lenA}, {lenB} and budget {budget} must not be negative");
        if (lenA + lenB <= budget) return (lenA, lenB);
        bool aLonger = lenA > lenB;
        int shorter = Math.Min(lenA, lenB);
        int keepShorter, keepLonger;
        if (2 * shorter <= budget) (keepShorter, keepLonger) = (shorter, budget - shorter);
        else (keepShorter, keepLonger) = (budget / 2, budget / 2 + budget % 2);
        return aLonger ? (keepLonger, keepShorter) : (keepShorter, keepLonger);
    }
}
