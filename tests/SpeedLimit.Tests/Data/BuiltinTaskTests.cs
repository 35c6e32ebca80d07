using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

public class BuiltinTaskTests
{
    private static readonly Lazy<TaskDataset> s_default = new(() => BuiltinTask.Generate());

    [Fact]
    public void DeterministicForASeed()
    {
        var a = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 3, TrainSize = 300, DevSize = 60 });
        var b = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 3, TrainSize = 300, DevSize = 60 });
        var c = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 4, TrainSize = 300, DevSize = 60 });
        Assert.Equal(a.Train, b.Train);
        Assert.Equal(a.Dev, b.Dev);
        Assert.NotEqual(a.Train, c.Train);
        Assert.Empty(a.Train.Select(e => (e.TextA, e.TextB)).Intersect(a.Dev.Select(e => (e.TextA, e.TextB)))); // no dev example copied from train
    }

    [Fact]
    public void LabelsFollowTheRulesAndAreBalanced()
    {
        var clean = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 9, LabelNoise = 0, TrainSize = 3000, DevSize = 600 });
        // The generator's intended label is what the written-out rule computes from the text.
        Assert.All(clean.Train.Concat(clean.Dev), e => Assert.Equal(BuiltinTask.TrueLabel(e.TextA, e.TextB!), e.ClassId));
        Assert.Equal([1000, 1000, 1000], Enumerable.Range(0, 3).Select(k => clean.Train.Count(e => e.ClassId == k)));
        Assert.Equal([200, 200, 200], Enumerable.Range(0, 3).Select(k => clean.Dev.Count(e => e.ClassId == k)));
        int more = clean.Train.Count(e => e.TextA.StartsWith(BuiltinTask.RuleMore + " "));
        Assert.InRange(more, 520, 680); // a fifth "more", the rest "score"
    }

    [Fact]
    public void LabelNoiseIsAsConfigured()
    {
        var task = s_default.Value;
        var all = task.Train.Concat(task.Dev).ToList();
        double flipped = all.Count(e => e.ClassId != BuiltinTask.TrueLabel(e.TextA, e.TextB!)) / (double)all.Count;
        Assert.InRange(flipped, 0.04, 0.06); // 5 % by default; every flip goes to a different label
        Assert.Equal(4000, task.Train.Count);
        Assert.Equal(1000, task.Dev.Count);
        foreach (var split in new[] { task.Train, task.Dev })
            for (int k = 0; k < 3; k++)
                Assert.InRange(split.Count(e => e.ClassId == k) / (double)split.Count, 0.30, 0.37);
    }

    [Fact]
    public void FitsIn64TokensOfASmallVocabulary()
    {
        var task = s_default.Value;
        var encoder = task.BuiltinEncoder!;
        Assert.InRange(encoder.VocabSize, 200, 400);
        var lengths = task.Train.Concat(task.Dev).Select(e => encoder.Encode(e.TextA, e.TextB, 512)).ToList();
        Assert.All(lengths, enc => Assert.DoesNotContain(encoder.UnkId, enc.InputIds));
        Assert.True(lengths.Max(x => x.Length) <= 2 * 24 + 6, $"longest {lengths.Max(x => x.Length)}");
        Assert.True(lengths.Min(x => x.Length) >= 15, $"shortest {lengths.Min(x => x.Length)}");
        Assert.True(task.IsPair);
    }

    [Fact]
    public void ShallowShortcutsFallWellShortOfTheRule()
    {
        // Heuristics a small model could latch onto must be clearly worse than the rule itself.
        // Measured where the hard parts live: every example has negation, half use the "more" rule.
        var task = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 5, LabelNoise = 0, TrainSize = 3000, DevSize = 3, MoreRuleShare = 0.5, NegationShare = 1 });
        int Cmp(int a, int b) => a > b ? 0 : a < b ? 1 : 2;
        string[] Body(string t) => t.Split(' ') is var w && Array.IndexOf(w, ":") is var c and >= 0 ? w[(c + 1)..] : w;
        var more = task.Train.Where(e => e.TextA.StartsWith("more ")).ToList();
        var score = task.Train.Where(e => e.TextA.StartsWith("score ")).ToList();
        // "more": count the query ignoring negation.
        double ignoreNegation = more.Average(e =>
        {
            var q = e.TextA.Split(' ')[1];
            return Cmp(Body(e.TextA).Count(w => w == q), e.TextB!.Split(' ').Count(w => w == q)) == e.ClassId ? 1.0 : 0.0;
        });
        // "score": positive minus negative words ignoring negation.
        int Naive(string[] w) => w.Count(x => BuiltinTask.Positive.Contains(x)) - w.Count(x => BuiltinTask.Negative.Contains(x));
        double naiveSentiment = score.Average(e => Cmp(Naive(Body(e.TextA)), Naive(e.TextB!.Split(' '))) == e.ClassId ? 1.0 : 0.0);
        // Whole-pair token count ("longer side wins").
        double longer = task.Train.Average(e => Cmp(Body(e.TextA).Length, e.TextB!.Split(' ').Length) == e.ClassId ? 1.0 : 0.0);
        Console.WriteLine($"builtin shortcuts: ignore-negation {ignoreNegation:F3}, naive sentiment {naiveSentiment:F3}, longer-wins {longer:F3}");
        Assert.InRange(ignoreNegation, 0.0, 0.80);
        Assert.InRange(naiveSentiment, 0.0, 0.70);
        Assert.InRange(longer, 0.0, 0.45);
    }

    [Fact]
    public void NegationFreeExamplesAreSolvableFromCounts()
    {
        var task = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 6, LabelNoise = 0, TrainSize = 3000, DevSize = 3 });
        bool HasNegator(TaskExample e) => $"{e.TextA} {e.TextB}".Split(' ').Any(w => BuiltinTask.Negators.Contains(w));
        double negShare = task.Train.Count(HasNegator) / (double)task.Train.Count;
        Assert.InRange(negShare, 0.25, 0.35); // NegationShare 0.3 (a few negation examples draw no negator)
        int Cmp(int a, int b) => a > b ? 0 : a < b ? 1 : 2;
        int Naive(IEnumerable<string> w) => w.Count(x => BuiltinTask.Positive.Contains(x)) - w.Count(x => BuiltinTask.Negative.Contains(x));
        var plainScore = task.Train.Where(e => e.TextA.StartsWith("score ") && !HasNegator(e)).ToList();
        Assert.True(plainScore.Count > 1500);
        Assert.All(plainScore, e => Assert.Equal(e.ClassId, Cmp(Naive(e.TextA.Split(' ')), Naive(e.TextB!.Split(' ')))));
        int Gap(TaskExample e) => Math.Abs(Naive(e.TextA.Split(' ')) - Naive(e.TextB!.Split(' ')));
        double close = plainScore.Where(e => e.ClassId != 2).Average(e => Gap(e) == 1 ? 1.0 : 0.0);
        Assert.InRange(close, 0.33, 0.47); // CloseCallShare 0.4

        var wide = BuiltinTask.Generate(new BuiltinTaskOptions { Seed = 6, LabelNoise = 0, TrainSize = 600, DevSize = 3, NegationShare = 0, MoreRuleShare = 0, CloseCallShare = 0 });
        Assert.All(wide.Train.Where(e => e.ClassId != 2), e => Assert.InRange(Gap(e), 2, 3));
    }

    [Fact]
    public void RejectsBadOptions()
    {
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { LabelNoise = 0.9 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { MaxSegmentWords = 10 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { TrainSize = 1 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { MoreRuleShare = 1.5 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { NegationShare = -0.1 }));
        Assert.Throws<ArgumentException>(() => BuiltinTask.Generate(new BuiltinTaskOptions { CloseCallShare = 2 }));
    }
}
