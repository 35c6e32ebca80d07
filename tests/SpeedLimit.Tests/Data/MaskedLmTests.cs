using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

public class MaskedLmTests
{
    private static readonly WordLevelEncoder s_encoder = new(Enumerable.Range(0, 200).Select(i => $"w{i}"));

    private static string WriteCorpus(TempDir dir, string name, int words, int seed)
    {
        var rng = new Random(seed);
        var lines = new List<string>();
        for (int written = 0; written < words;)
        {
            int n = rng.Next(0, 25); // blank lines included
            lines.Add(string.Join(' ', Enumerable.Range(0, n).Select(_ => $"w{rng.Next(200)}")));
            written += n;
        }
        return dir.File(name, string.Join('\n', lines) + "\n");
    }

    [Fact]
    public void SegmentsPackTheTokenStreamAcrossLinesFilesAndChunks()
    {
        using var dir = new TempDir();
        var f1 = WriteCorpus(dir, "a.txt", 3000, 1);
        var f2 = WriteCorpus(dir, "b.txt", 1000, 2);
        var expected = s_encoder.Tokenize(File.ReadAllText(f1)).Concat(s_encoder.Tokenize(File.ReadAllText(f2))).ToList();
        foreach (int chunk in new[] { 16, 61, 1 << 16 })
        {
            var corpus = new MaskedLmCorpus([f1, f2], s_encoder, new MaskedLmOptions { SegmentLength = 32, ReadChunkChars = chunk });
            var segments = corpus.Segments().ToList();
            Assert.All(segments, s => { Assert.Equal(s_encoder.ClsId, s[0]); Assert.Equal(s_encoder.SepId, s[^1]); });
            Assert.All(segments[..^1], s => Assert.Equal(32, s.Length));
            Assert.Equal(expected, segments.SelectMany(s => s[1..^1]));
        }
    }

    [Fact]
    public void MaskingIs15PercentWith80_10_10()
    {
        using var dir = new TempDir();
        var f = WriteCorpus(dir, "c.txt", 200_000, 3);
        var options = new MaskedLmOptions { SegmentLength = 64, Seed = 11, ShuffleBufferSegments = 64 };
        var corpus = new MaskedLmCorpus([f], s_encoder, options);
        long candidates = 0, selected = 0, masked = 0, random = 0, kept = 0;
        var originals = corpus.Segments().ToList();
        var maskedSegments = corpus.MaskedSegments().ToList();
        Assert.Equal(originals.Count, maskedSegments.Count);
        foreach (var m in maskedSegments)
        {
            for (int i = 0; i < m.InputIds.Length; i++)
            {
                bool special = i == 0 || i == m.InputIds.Length - 1;
                if (special)
                {
                    Assert.Equal(TokenBatch.IgnoreLabel, m.Labels[i]); // [CLS]/[SEP] never masked
                    continue;
                }
                candidates++;
                if (m.Labels[i] == TokenBatch.IgnoreLabel) continue;
                selected++;
                if (m.InputIds[i] == s_encoder.MaskId) masked++;
                else if (m.InputIds[i] == m.Labels[i]) kept++;
                else { random++; Assert.False(s_encoder.IsSpecial(m.InputIds[i])); }
            }
        }
        Assert.InRange(candidates, 190_000, 210_000);
        Assert.InRange((double)selected / candidates, 0.145, 0.155);
        Assert.InRange((double)masked / selected, 0.79, 0.81);
        // A random draw equals the original 1 time in ~200: "random" slightly under 10 %, "kept" slightly over.
        Assert.InRange((double)random / selected, 0.09, 0.105);
        Assert.InRange((double)kept / selected, 0.095, 0.11);
        // Unmasked positions are untouched: the multiset of segments is the original's (shuffled).
        var restored = maskedSegments.Select(m => m.InputIds.Select((id, i) => m.Labels[i] == TokenBatch.IgnoreLabel ? id : m.Labels[i]).ToArray());
        Assert.Equal(originals.Select(s => string.Join(',', s)).Order(), restored.Select(s => string.Join(',', s)).Order());
    }

    [Fact]
    public void BatchesAreDeterministicPerSeedAndEpoch()
    {
        using var dir = new TempDir();
        var f = WriteCorpus(dir, "d.txt", 5000, 4);
        MaskedLmCorpus Make(int seed) => new([f], s_encoder, new MaskedLmOptions { SegmentLength = 24, Seed = seed, ShuffleBufferSegments = 16 });
        string Fingerprint(IEnumerable<TokenBatch> bs) => string.Join('|', bs.Select(b => string.Join(',', b.InputIds) + ";" + string.Join(',', b.TokenLabels!)));
        var a = Fingerprint(Make(5).Batches(8));
        Assert.Equal(a, Fingerprint(Make(5).Batches(8)));
        Assert.NotEqual(a, Fingerprint(Make(6).Batches(8)));
        Assert.NotEqual(a, Fingerprint(Make(5).Batches(8, epoch: 1)));
        var batches = Make(5).Batches(8).ToList();
        var last = batches[^1];
        Assert.Equal(batches.Sum(b => b.BatchSize), Make(5).Segments().Count());
        // Padding (the short final segment) is masked out and ignored by the loss.
        for (int i = 0; i < last.InputIds.Length; i++)
            if (last.AttentionMask[i] == 0) Assert.Equal((0, TokenBatch.IgnoreLabel), (last.InputIds[i], last.TokenLabels![i]));
    }

    [Fact]
    public void BadCorpusInputFails()
    {
        using var dir = new TempDir();
        var empty = dir.File("e.txt", "");
        Assert.Contains(empty, Assert.Throws<InvalidDataException>(() => new MaskedLmCorpus([empty], s_encoder, new MaskedLmOptions())).Message);
        Assert.Throws<FileNotFoundException>(() => new MaskedLmCorpus([Path.Combine(dir.Path, "none.txt")], s_encoder, new MaskedLmOptions()));
        Assert.Throws<ArgumentException>(() => new MaskedLmCorpus([], s_encoder, new MaskedLmOptions()));
        Assert.Throws<ArgumentException>(() => new MaskedLmCorpus([empty], s_encoder, new MaskedLmOptions { MaskProbability = 0 }));
    }

    [SharedDataFact]
    public void WikiTextStreamsThroughWordPiece()
    {
        var encoder = BertTextEncoder.FromVocabFile(SharedData.BertVocab);
        var file = SharedData.Combine("corpus", "wikitext-2", "valid.txt");
        var corpus = new MaskedLmCorpus([file], encoder, new MaskedLmOptions { SegmentLength = 128, Seed = 1 });
        int n = 0, unk = 0, tokens = 0;
        foreach (var s in corpus.Segments().Take(200))
        {
            Assert.Equal(128, s.Length);
            Assert.Equal((101, 102), (s[0], s[^1]));
            tokens += s.Length - 2;
            unk += s.Count(id => id == encoder.UnkId);
            n++;
        }
        Assert.Equal(200, n);
        // WikiText's "<unk>" is split into '<', 'un', '##k', '>' by WordPiece: no [UNK] ids expected.
        Assert.True(unk < tokens / 100, $"{unk} [UNK] of {tokens}");
    }
}
