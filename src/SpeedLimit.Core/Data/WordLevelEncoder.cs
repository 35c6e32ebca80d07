namespace SpeedLimit.Data;

/// <summary>
/// A whitespace word-level encoder over a fixed word list: what the built-in synthetic task uses,
/// so it needs no vocabulary file. Ids 0..4 are [PAD], [UNK], [CLS], [SEP], [MASK]; words follow
/// in the order given. Unknown words map to [UNK].
/// </summary>
public sealed class WordLevelEncoder : ITextEncoder
{
    public static readonly string[] SpecialTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

    private readonly string[] _vocab;
    private readonly Dictionary<string, int> _ids;

    public WordLevelEncoder(IEnumerable<string> words)
    {
        ArgumentNullException.ThrowIfNull(words);
        _vocab = [.. SpecialTokens, .. words];
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < _vocab.Length; i++)
        {
            var w = _vocab[i];
            if (string.IsNullOrWhiteSpace(w) || w.Any(char.IsWhiteSpace))
                throw new ArgumentException($"vocabulary entry {i} ('{w}') is empty or contains whitespace; word-level tokens are single words");
            if (!_ids.TryAdd(w, i)) throw new ArgumentException($"vocabulary entry '{w}' appears twice; words must be unique");
        }
    }

    public int VocabSize => _vocab.Length;
    public int PadId => 0;
    public int UnkId => 1;
    public int ClsId => 2;
    public int SepId => 3;
    public int MaskId => 4;
    public IReadOnlyList<string> Vocabulary => _vocab;

    public int IdOf(string word) => _ids.TryGetValue(word, out var id) ? id : UnkId;

    public IReadOnlyList<int> Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var ids = new int[words.Length];
        for (int i = 0; i < words.Length; i++) ids[i] = IdOf(words[i]);
        return ids;
    }

    public bool IsSpecial(int id) => id == PadId || id == ClsId || id == SepId || id == MaskId || id == UnkId;

    /// <summary>One token per word, so the length Hugging Face's truncation compares is the word count capped at the max length.</summary>
    public EncodedText Encode(string textA, string? textB, int maxLength)
    {
        var a = Tokenize(textA);
        var b = textB is null ? null : Tokenize(textB);
        return EncodedText.Build(this, a, b, maxLength, Math.Min(a.Count, maxLength), b is null ? null : Math.Min(b.Count, maxLength));
    }

    public string IdToToken(int id) => (uint)id < (uint)_vocab.Length
        ? _vocab[id]
        : throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary of {_vocab.Length}");
}
