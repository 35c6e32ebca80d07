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
    /// Assembles special tokens around already tokenized parts. Truncation is longest-first (as
    /// Hugging Face's default): drop the last token of the longer part until it fits, taking from b
    /// when the parts are equally long.
    /// </summary>
    public static EncodedText Build(ITextEncoder encoder, IReadOnlyList<int> a, IReadOnlyList<int>? b, int maxLength)
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
                // Closed form of "remove one token from the longer side (ties: from b) until it fits".
                int excess = lenA + lenB - budget;
                int gap = Math.Abs(lenA - lenB);
                int fromLonger = Math.Min(excess, gap);
                if (lenA > lenB) lenA -= fromLonger; else lenB -= fromLonger;
                int rest = excess - fromLonger; // now equal lengths: b loses first, then they alternate
                lenB -= (rest + 1) / 2;
                lenA -= rest / 2;
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
}
