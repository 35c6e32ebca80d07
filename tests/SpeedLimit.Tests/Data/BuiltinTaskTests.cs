using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

public class BuiltinTaskTests
{
    private static readonly Lazy<TaskDataset> s_default = new(() => BuiltinTask.Generate());

    private static bool HasNegator(string text) => text.Split(' ').Any(w => BuiltinTask.Negators.Contains(w));

    /// <summary>Positive minus negative words, ignoring negation (what a bag of words sees).</summary>
    private static int Visible(string text) => text.Split(' ').Count(w => BuiltinTask.Positive.Contains(w)) - text.Split(' ').Count(w => BuiltinTask.Negative.Contains(w));

    private static int LabelOf(int a, int b) => a > 0 && b > 0 ? 0 : a < 0 && b < 0 ? 1 : 2;

    [Fact]
    public void DeterministicForASeed()
    {
        var a = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 3, TrainSize = 300, DevSize = 60 });
        var b = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 3, TrainSize = 300, DevSize = 60 });
        var c = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 4, TrainSize = 300, DevSize = 60 });
        Assert.Equal(a.Train, b.Train);
        Assert.Equal(a.Dev, b.Dev);
        Assert.NotEqual(a.Train, c.Train);
        Assert.Equal(BuiltinTask.Name, a.Name);
        Assert.True(a.IsPair);
        Assert.Equal(3, a.NumLabels);
    }

    [Fact]
    public void LabelsFollowTheRuleAndAreBalanced()
    {
        var clean = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 9, LabelNoise = 0, TrainSize = 3000, DevSize = 600 });
        // The generator's intended label is what the written-out rule computes from the text.
        Assert.All(clean.Train.Concat(clean.Dev), e => Assert.Equal(BuiltinTask.TrueLabel(e.TextA, e.TextB!), e.ClassId));
        Assert.Equal([1000, 1000, 1000], Enumerable.Range(0, 3).Select(k => clean.Train.Count(e => e.ClassId == k)));
        Assert.Equal([200, 200, 200], Enumerable.Range(0, 3).Select(k => clean.Dev.Count(e => e.ClassId == k)));
        // "disagree" comes both ways round, so the side of the positive segment is not a shortcut.
        var disagree = clean.Train.Where(e => e.ClassId == 2).ToList();
        Assert.InRange(disagree.Count(e => BuiltinTask.Polarity(e.TextA) > 0) / (double)disagree.Count, 0.44, 0.56);
    }

    [Fact]
    public void TrueLabelAppliesNegationToTheNextWordOnly()
    {
        Assert.Equal(1, BuiltinTask.Polarity("good"));
        Assert.Equal(-1, BuiltinTask.Polarity("not good"));
        Assert.Equal(1, BuiltinTask.Polarity("never bad"));
        Assert.Equal(-1, BuiltinTask.Polarity("not good " + BuiltinTask.Fillers[0] + " good bad"));  // −1 + 1 − 1
        Assert.Equal(1, BuiltinTask.Polarity("not " + BuiltinTask.Fillers[0] + " good"));         // a negator before a filler does nothing
        Assert.Equal(0, BuiltinTask.TrueLabel("good fine", "warm"));
        Assert.Equal(1, BuiltinTask.TrueLabel("not good", "bad"));
        Assert.Equal(2, BuiltinTask.TrueLabel("never bad", "not kind"));
        Assert.Equal(2, BuiltinTask.TrueLabel("bad", "good"));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Polarity("good bad"));
        Assert.Throws<ArgumentException>(() => BuiltinTask.TrueLabel(BuiltinTask.Fillers[1], "good"));
    }

    [Fact]
    public void LabelNoiseAndSizesAreAsConfigured()
    {
        var task = s_default.Value;
        var all = task.Train.Concat(task.Dev).ToList();
        double flipped = all.Count(e => e.ClassId != BuiltinTask.TrueLabel(e.TextA, e.TextB!)) / (double)all.Count;
        Assert.InRange(flipped, 0.012, 0.028); // 2 % by default; every flip goes to a different label
        Assert.Equal(6000, task.Train.Count);
        Assert.Equal(1000, task.Dev.Count);
        foreach (var split in new[] { task.Train, task.Dev })
            for (int k = 0; k < 3; k++)
                Assert.InRange(split.Count(e => e.ClassId == k) / (double)split.Count, 0.31, 0.36);
    }

    [Fact]
    public void ShortInputsOfASmallVocabulary()
    {
        var task = s_default.Value;
        var encoder = task.BuiltinEncoder!;
        Assert.Equal(5 + 2 + 8 + 8 + 32, encoder.VocabSize);
        var encoded = task.Train.Concat(task.Dev).Select(e => encoder.Encode(e.TextA, e.TextB, 512)).ToList();
        Assert.All(encoded, enc => Assert.DoesNotContain(encoder.UnkId, enc.InputIds));
        // [CLS] A [SEP] B [SEP] with 4..12 words a side: 11..27 tokens, so a max length of 32 truncates nothing.
        Assert.Equal(2 * 12 + 3, encoded.Max(x => x.Length));
        Assert.Equal(2 * 4 + 3, encoded.Min(x => x.Length));
    }

    [Fact]
    public void DifficultyIsGraded()
    {
        var task = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 5, LabelNoise = 0, TrainSize = 6000, DevSize = 3 });
        var plain = task.Train.Where(e => !HasNegator(e.TextA) && !HasNegator(e.TextB!)).ToList();
        var negated = task.Train.Where(e => HasNegator(e.TextA) || HasNegator(e.TextB!)).ToList();
        Assert.InRange(plain.Count / (double)task.Train.Count, 0.45, 0.55 + 0.02); // NegationShare 0.5 (a few negation examples draw no negator)

        // Level 2: per-segment bag of words solves every negation-free example...
        Assert.All(plain, e => Assert.Equal(e.ClassId, LabelOf(Visible(e.TextA), Visible(e.TextB!))));
        // ...but sits near chance once phrases may be negated (half of them are, so words alone say nothing).
        double perSegmentOnNegated = negated.Average(e => LabelOf(Visible(e.TextA), Visible(e.TextB!)) == e.ClassId ? 1.0 : 0.0);
        // Level 1: one bag of words over the whole pair (no segments) gets part of the way on plain examples.
        int Guess(int total) => total >= 3 ? 0 : total <= -3 ? 1 : 2;
        double wholePairOnPlain = plain.Average(e => Guess(Visible(e.TextA) + Visible(e.TextB!)) == e.ClassId ? 1.0 : 0.0);
        Console.WriteLine($"builtin shortcuts: per-segment words on negation examples {perSegmentOnNegated:F3}, whole-pair words on plain {wholePairOnPlain:F3}");
        Assert.InRange(perSegmentOnNegated, 0.25, 0.45);
        Assert.InRange(wholePairOnPlain, 0.55, 0.90);
    }

    [Fact]
    public void RejectsBadOptions()
    {
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { LabelNoise = 0.9 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { MaxSegmentWords = 5 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { MinSegmentWords = 8, MaxSegmentWords = 7 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { TrainSize = 1 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { NegationShare = -0.1 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { NegatedPhraseShare = 2 }));
    }
}
