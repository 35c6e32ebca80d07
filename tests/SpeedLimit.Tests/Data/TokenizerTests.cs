using System.Text;
using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

public class TokenizerTests
{
    private static readonly Lazy<string[]> s_vocab = new(() => File.ReadAllLines(SharedData.BertVocab));
    private static readonly Lazy<BertTextEncoder> s_encoder = new(() => BertTextEncoder.FromVocabFile(SharedData.BertVocab));

    /// <summary>Id of a token = its 0-based line in vocab.txt (the reference, read independently of the tokenizer).</summary>
    private static int Id(string token)
    {
        int i = Array.IndexOf(s_vocab.Value, token);
        Assert.True(i >= 0, $"'{token}' is not a line of vocab.txt");
        return i;
    }

    private static int[] Ids(params string[] tokens) => tokens.Select(Id).ToArray();

    [SharedDataFact]
    public void SpecialTokensHaveBertBaseUncasedIds()
    {
        var e = s_encoder.Value;
        Assert.Equal((0, 100, 101, 102, 103, 30522), (e.PadId, e.UnkId, e.ClsId, e.SepId, e.MaskId, e.VocabSize));
    }

    [SharedDataTheory]
    [InlineData("Hello, my dog is cute", new[] { "hello", ",", "my", "dog", "is", "cute" })]
    [InlineData("Here is the sentence I want embeddings for.", new[] { "here", "is", "the", "sentence", "i", "want", "em", "##bed", "##ding", "##s", "for", "." })]
    [InlineData("unaffable", new[] { "una", "##ffa", "##ble" })]
    [InlineData("Café NAÏVE", new[] { "cafe", "naive" })] // uncased strips accents
    [InlineData("Zürich résumé", new[] { "zurich", "resume" })]
    [InlineData("It costs $1.8 billion (€2)", new[] { "it", "costs", "$", "1", ".", "8", "billion", "(", "€", "##2", ")" })]
    [InlineData("x^2 + y = z", new[] { "x", "^", "2", "+", "y", "=", "z" })] // ASCII symbols are split off, not dropped
    [InlineData("北京 x", new[] { "北", "京", "x" })] // CJK ideographs one by one
    [InlineData("tab\tand\u00A0space\u200B", new[] { "tab", "and", "space" })] // whitespace kinds; zero-width (Cf) dropped
    [InlineData("it 's a charming and often affecting journey . ", new[] { "it", "'", "s", "a", "charming", "and", "often", "affecting", "journey", "." })]
    public void SingleSentencesMatchBertBaseUncased(string text, string[] tokens)
    {
        var enc = s_encoder.Value.Encode(text, null, 128);
        Assert.Equal([101, .. Ids(tokens), 102], enc.InputIds);
        Assert.All(enc.TokenTypeIds, t => Assert.Equal(0, t));
    }

    [SharedDataFact]
    public void KnownIdsFromThePublishedExample()
    {
        // The widely published ids of this sentence under bert-base-uncased.
        int[] expected = [101, 2182, 2003, 1996, 6251, 1045, 2215, 7861, 8270, 4667, 2015, 2005, 1012, 102];
        Assert.Equal(expected, s_encoder.Value.Encode("Here is the sentence I want embeddings for.", null, 512).InputIds);
    }

    [SharedDataFact]
    public void PairsGetSeparatorsAndTokenTypes()
    {
        var enc = s_encoder.Value.Encode("The quick brown fox.", "It jumps!", 128);
        int[] ids = [101, .. Ids("the", "quick", "brown", "fox", "."), 102, .. Ids("it", "jumps", "!"), 102];
        Assert.Equal(ids, enc.InputIds);
        Assert.Equal([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1], enc.TokenTypeIds);
    }

    [SharedDataFact]
    public void MatchesReferenceWordPieceOnGlueSentences()
    {
        // An independent greedy longest-match WordPiece (below) on real sentences from two tasks.
        var vocab = s_vocab.Value.Select((t, i) => (t, i)).ToDictionary(x => x.t, x => x.i);
        var rte = GlueTasks.ReadSplit("rte", Path.Combine(SharedData.Glue("RTE"), "dev.tsv"), isTest: false);
        var mrpc = GlueTasks.ReadSplit("mrpc", Path.Combine(SharedData.Glue("MRPC"), "dev.tsv"), isTest: false);
        var sst = GlueTasks.ReadSplit("sst2", Path.Combine(SharedData.Glue("SST-2"), "dev.tsv"), isTest: false);
        // ASCII only: the reference has no accent table (string.Normalize is a no-op under InvariantGlobalization);
        // accents are covered by the hand-written cases above.
        var texts = rte.SelectMany(e => new[] { e.TextA, e.TextB! }).Concat(mrpc.SelectMany(e => new[] { e.TextA, e.TextB! }))
            .Concat(sst.Select(e => e.TextA)).Where(t => t.All(char.IsAscii)).ToList();
        Assert.True(texts.Count > 2000);
        foreach (var text in texts)
            Assert.Equal(ReferenceWordPiece(text, vocab), s_encoder.Value.Tokenize(text));
    }

    private static List<int> ReferenceWordPiece(string text, Dictionary<string, int> vocab)
    {
        // Basic tokenizer: clean, lower-case, strip accents, split on whitespace and punctuation.
        var sb = new StringBuilder();
        foreach (var ch in text.ToLowerInvariant())
        {
            if (ch == 0 || (char.IsControl(ch) && !char.IsWhiteSpace(ch))) continue;
            bool punct = (ch >= 33 && ch <= 47) || (ch >= 58 && ch <= 64) || (ch >= 91 && ch <= 96) || (ch >= 123 && ch <= 126);
            if (punct) sb.Append(' ').Append(ch).Append(' ');
            else sb.Append(char.IsWhiteSpace(ch) ? ' ' : ch);
        }
        var ids = new List<int>();
        foreach (var word in sb.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var pieces = new List<int>();
            int start = 0;
            bool bad = false;
            while (start < word.Length)
            {
                int end = word.Length, found = -1;
                for (; end > start; end--)
                {
                    var sub = (start > 0 ? "##" : "") + word[start..end];
                    if (vocab.TryGetValue(sub, out found)) break;
                }
                if (end == start) { bad = true; break; }
                pieces.Add(found);
                start = end;
            }
            if (bad || word.Length > 100) ids.Add(100); else ids.AddRange(pieces);
        }
        return ids;
    }

    // The expected lengths are the table of tokenizers' own unit test (utils/truncation.rs, max length 7,
    // parts of 0, 2, 4 and 8 tokens), plus ties and a longer second part at odd budgets.
    [Theory]
    [InlineData(0, 8, 7, 0, 7)]
    [InlineData(2, 8, 7, 2, 5)]
    [InlineData(4, 4, 7, 3, 4)]
    [InlineData(4, 8, 7, 3, 4)]
    [InlineData(8, 2, 7, 5, 2)]
    [InlineData(8, 4, 7, 4, 3)]
    [InlineData(8, 8, 7, 3, 4)]
    [InlineData(4, 2, 7, 4, 2)]
    [InlineData(5, 5, 9, 4, 5)]   // tie: the second part gets the odd token
    [InlineData(5, 10, 9, 4, 5)]  // the shorter part is over half the budget: it keeps ⌊9/2⌋
    [InlineData(26, 23, 27, 14, 13)]
    public void LongestFirstKeepsWhatTokenizersKeeps(int lenA, int lenB, int budget, int keepA, int keepB)
    {
        Assert.Equal((keepA, keepB), EncodedText.LongestFirst(lenA, lenB, budget));
        var encoder = new WordLevelEncoder(Enumerable.Range(0, 40).Select(i => $"w{i}"));
        var enc = EncodedText.Build(encoder, Enumerable.Range(10, lenA).ToList(), Enumerable.Range(25, lenB).ToList(), budget + 3);
        Assert.Equal([encoder.ClsId, .. Enumerable.Range(10, keepA), encoder.SepId, .. Enumerable.Range(25, keepB), encoder.SepId], enc.InputIds);
        Assert.Equal(Enumerable.Repeat(0, keepA + 2).Concat(Enumerable.Repeat(1, keepB + 1)), enc.TokenTypeIds);
    }

    [Fact]
    public void OverLongPartsCountAsTheMaxLengthWhenTruncating()
    {
        // tokenizers ≥ 0.23 stops tokenizing a part once it has max-length tokens, so parts of 26 and 23
        // words at max length 16 both count as 16: a tie, and the second part gets the odd token.
        var encoder = new WordLevelEncoder(Enumerable.Range(0, 40).Select(i => $"w{i}"));
        string Words(int n) => string.Join(' ', Enumerable.Range(0, n).Select(i => $"w{i}"));
        var enc = encoder.Encode(Words(26), Words(23), 16);
        Assert.Equal(6 + 2, enc.TokenTypeIds.Count(t => t == 0));
        Assert.Equal(7 + 1, enc.TokenTypeIds.Count(t => t == 1));
    }

    /// <summary>A tiny WordPiece vocabulary (no shared data needed).</summary>
    private static BertTextEncoder TinyEncoder(TempDir dir) => BertTextEncoder.FromVocabFile(dir.File("vocab.txt",
        string.Join("\n", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "istanbul", "line", "one", "two", "[", "]", "cls", "sep", "mask", "##s", "x") + "\n"));

    [Fact]
    public void SpecialTokensTypedInTextStayOneToken()
    {
        using var dir = new TempDir();
        var e = TinyEncoder(dir);
        int Id(string t) => Enumerable.Range(0, e.VocabSize).First(i => e.IdToToken(i) == t);
        Assert.Equal([e.ClsId, Id("one"), e.SepId, Id("two"), e.MaskId, e.PadId, e.UnkId, e.SepId], e.Encode("one [SEP]two[MASK] [PAD][UNK]", null, 64).InputIds);
        // Matched as written, before lower-casing: "[cls]" is ordinary text.
        Assert.Equal([Id("["), Id("cls"), Id("]"), e.ClsId], e.Tokenize("[cls][CLS]"));
    }

    [Fact]
    public void DottedCapitalIAndLineSeparatorsAsHuggingFace()
    {
        using var dir = new TempDir();
        var e = TinyEncoder(dir);
        int Id(string t) => Enumerable.Range(0, e.VocabSize).First(i => e.IdToToken(i) == t);
        Assert.Equal([Id("istanbul"), Id("i")], e.Tokenize("İstanbul İ"));             // İ → I (accent stripped) → i
        Assert.Equal([Id("line"), Id("one"), Id("line"), Id("two")], e.Tokenize("line\u2028one line\u2029two")); // U+2028/U+2029 separate words
    }

    [Fact]
    public void SingleTruncationKeepsSpecialTokensAndRejectsTooShortMax()
    {
        var encoder = new WordLevelEncoder(["a", "b", "c"]);
        var enc = encoder.Encode("a b c a b c", null, 4);
        Assert.Equal([encoder.ClsId, encoder.IdOf("a"), encoder.IdOf("b"), encoder.SepId], enc.InputIds);
        Assert.Throws<ArgumentException>(() => encoder.Encode("a", "b", 2));
        Assert.Equal([encoder.ClsId, encoder.UnkId, encoder.SepId], encoder.Encode("zzz", null, 8).InputIds);
    }

    [Fact]
    public void MissingVocabFileNamesThePath()
    {
        var ex = Assert.Throws<FileNotFoundException>(() => BertTextEncoder.FromVocabFile("/no/such/vocab.txt"));
        Assert.Contains("/no/such/vocab.txt", ex.Message);
    }
}
