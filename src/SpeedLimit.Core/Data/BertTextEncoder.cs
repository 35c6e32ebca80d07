using Microsoft.ML.Tokenizers;

namespace SpeedLimit.Data;

/// <summary>
/// BERT WordPiece over a <c>vocab.txt</c> (one token per line, id = line index), via
/// Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/>. Uncased by default, which also strips
/// accents, as bert-base-uncased does.
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
    }

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

    public IReadOnlyList<int> Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _tokenizer.EncodeToIds(text, addSpecialTokens: false, considerPreTokenization: true, considerNormalization: true);
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
