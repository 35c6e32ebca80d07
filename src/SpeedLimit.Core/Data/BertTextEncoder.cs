using System.Text;
using Microsoft.ML.Tokenizers;

namespace SpeedLimit.Data;

/// <summary>
/// BERT WordPiece over a <c>vocab.txt</c> (one token per line, id = line index). Uncased by default,
/// which also strips accents, as bert-base-uncased does.
/// <para>
/// The word splitting (BERT's "basic tokenizer") is ours and the WordPiece step is
/// Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/>, applied per word. Reason: in 2.0.1 the
/// library's own pre-tokenizer silently drops ASCII symbols such as <c>$ + = ^ | ~ `</c> (Hugging Face
/// keeps them as tokens) and its accent stripping relies on <see cref="string.Normalize()"/>, which
/// does nothing under this project's InvariantGlobalization ("café" became [UNK]).
/// </para>
/// </summary>
public sealed class BertTextEncoder : ITextEncoder
{
    private readonly BertTokenizer _tokenizer;
    private readonly string[] _vocab;

    private BertTextEncoder(BertTokenizer tokenizer, string[] vocab)
    {
        _tokenizer = tokenizer;
        _vocab = vocab;
        PadId = RequireId(tokenizer.PaddingToken);
        ClsId = RequireId(tokenizer.ClassificationToken);
        SepId = RequireId(tokenizer.SeparatorToken);
        MaskId = RequireId(tokenizer.MaskingToken);
        UnkId = RequireId(tokenizer.UnknownToken);
        _specials = [(tokenizer.PaddingToken, PadId), (tokenizer.UnknownToken, UnkId), (tokenizer.ClassificationToken, ClsId),
            (tokenizer.SeparatorToken, SepId), (tokenizer.MaskingToken, MaskId)];
    }

    private readonly (string Text, int Id)[] _specials;

    public int VocabSize => _vocab.Length;
    public int PadId { get; }
    public int ClsId { get; }
    public int SepId { get; }
    public int MaskId { get; }
    public int UnkId { get; }
    public bool LowerCase => _tokenizer.LowerCaseBeforeTokenization;

    /// <summary>Loads a WordPiece vocabulary; fails with the path when it is missing or lacks BERT's special tokens.</summary>
    public static BertTextEncoder FromVocabFile(string vocabPath, bool lowerCase = true)
    {
        if (!File.Exists(vocabPath))
            throw new FileNotFoundException($"vocabulary '{vocabPath}' does not exist; pass the vocab.txt of a BERT model (one token per line)", vocabPath);
        var vocab = File.ReadAllLines(vocabPath);
        if (vocab.Length == 0) throw new InvalidDataException($"{vocabPath}: empty vocabulary; pass a BERT vocab.txt");
        foreach (var special in new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" })
            if (Array.IndexOf(vocab, special) < 0)
                throw new InvalidDataException($"{vocabPath}: no {special} line; a BERT vocab.txt needs [PAD], [UNK], [CLS], [SEP] and [MASK]");
        var options = new BertOptions
        {
            LowerCaseBeforeTokenization = lowerCase,
            RemoveNonSpacingMarks = lowerCase, // HF: strip_accents follows do_lower_case
        };
        var tokenizer = BertTokenizer.Create(vocabPath, options);
        return new BertTextEncoder(tokenizer, vocab);
    }

    public IReadOnlyList<int> Tokenize(string text) => TokenizeCounted(text, int.MaxValue).Ids;

    /// <summary>
    /// Token ids of <paramref name="text"/>, and the count Hugging Face's <c>tokenizers</c> (≥ 0.23)
    /// compares when truncating a pair: it stops tokenizing at the first word whose end brings the
    /// count to <paramref name="cap"/> or more. The special tokens ([CLS], [SEP], [MASK], [PAD],
    /// [UNK]) typed in the text are matched as written, before normalization, and stay one token.
    /// </summary>
    private (List<int> Ids, int Counted) TokenizeCounted(string text, int cap)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        int counted = -1;
        void WordDone() { if (counted < 0 && ids.Count >= cap) counted = ids.Count; }
        int start = 0;
        while (start <= text.Length)
        {
            var (at, special) = NextSpecial(text, start);
            foreach (var word in SplitWords(text[start..at], LowerCase))
            {
                if (word.Length > MaxCharsPerWord) ids.Add(UnkId); // as BERT: over-long words are unknown
                else ids.AddRange(_tokenizer.EncodeToIds(word, addSpecialTokens: false, considerPreTokenization: false, considerNormalization: false));
                WordDone();
            }
            if (special is null) break;
            ids.Add(special.Value.Id);
            WordDone();
            start = at + special.Value.Text.Length;
        }
        return (ids, counted < 0 ? ids.Count : counted);
    }

    /// <summary>The first special token written in <paramref name="text"/> at or after <paramref name="from"/> (the text's end when none).</summary>
    private (int At, (string Text, int Id)? Special) NextSpecial(string text, int from)
    {
        int best = text.Length;
        (string, int)? found = null;
        foreach (var (token, id) in _specials)
        {
            int i = text.IndexOf(token, from, StringComparison.Ordinal);
            if (i >= 0 && (i < best || (i == best && found is { } f && token.Length > f.Item1.Length))) { best = i; found = (token, id); }
        }
        return (best, found);
    }

    private const int MaxCharsPerWord = 100;

    /// <summary>
    /// BERT's basic tokenizer: drop NUL, U+FFFD and control characters; whitespace separates words;
    /// CJK ideographs and punctuation (ASCII symbols included) become words of their own; when uncased,
    /// strip accents, then lower-case (Hugging Face's order, so İ becomes i). Whitespace is Unicode's
    /// (U+2028 and U+2029 included), after control characters are dropped.
    /// </summary>
    public static List<string> SplitWords(string text, bool lowerCase)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        var stripped = new StringBuilder();
        void Flush() { if (word.Length > 0) { words.Add(word.ToString()); word.Clear(); } }
        foreach (var rune in text.EnumerateRunes())
        {
            int cp = rune.Value;
            if (cp == 0 || cp == 0xFFFD) continue;
            if (IsWhitespace(rune)) { Flush(); continue; }
            if (IsControl(rune)) continue;
            if (IsCjk(cp)) { Flush(); words.Add(rune.ToString()); continue; }
            // Hugging Face's BertNormalizer strips accents (NFD, drop marks) before lower-casing: İ → I → i.
            stripped.Clear();
            if (lowerCase && rune.IsBmp) AccentStripping.AppendStripped(stripped, (char)rune.Value);
            else stripped.Append((lowerCase ? Rune.ToLowerInvariant(rune) : rune).ToString());
            for (int i = 0; i < stripped.Length; i++)
            {
                char c = lowerCase && rune.IsBmp ? char.ToLowerInvariant(stripped[i]) : stripped[i];
                if (IsPunctuation(c)) { Flush(); words.Add(c.ToString()); }
                else word.Append(c);
            }
        }
        Flush();
        return words;
    }

    /// <summary>Unicode White_Space that is not a control character (those are dropped first): spaces, U+2028 and U+2029 included.</summary>
    private static bool IsWhitespace(Rune r) => r.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(r)
        is System.Globalization.UnicodeCategory.SpaceSeparator or System.Globalization.UnicodeCategory.LineSeparator or System.Globalization.UnicodeCategory.ParagraphSeparator;

    private static bool IsControl(Rune r) => Rune.GetUnicodeCategory(r) is System.Globalization.UnicodeCategory.Control
        or System.Globalization.UnicodeCategory.Format or System.Globalization.UnicodeCategory.OtherNotAssigned
        or System.Globalization.UnicodeCategory.PrivateUse;

    /// <summary>BERT's notion: ASCII non-alphanumeric symbols plus every Unicode punctuation category.</summary>
    private static bool IsPunctuation(char c) =>
        c is >= '!' and <= '/' or >= ':' and <= '@' or >= '[' and <= '`' or >= '{' and <= '~' || char.IsPunctuation(c);

    /// <summary>The CJK Unified Ideograph blocks BERT splits character by character.</summary>
    private static bool IsCjk(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;

    public bool IsSpecial(int id) => id == PadId || id == ClsId || id == SepId || id == MaskId || id == UnkId;

    public EncodedText Encode(string textA, string? textB, int maxLength)
    {
        var a = TokenizeCounted(textA, maxLength);
        if (textB is null) return EncodedText.Build(this, a.Ids, null, maxLength);
        var b = TokenizeCounted(textB, maxLength);
        return EncodedText.Build(this, a.Ids, b.Ids, maxLength, a.Counted, b.Counted);
    }

    public string IdToToken(int id) => (uint)id < (uint)_vocab.Length
        ? _vocab[id]
        : throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary of {_vocab.Length}");

    private int RequireId(string token)
    {
        int id = Array.IndexOf(_vocab, token);
        return id >= 0 ? id : throw new InvalidDataException($"vocabulary lacks {token}");
    }
}
