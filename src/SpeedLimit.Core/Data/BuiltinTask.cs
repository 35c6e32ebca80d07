namespace SpeedLimit.Data;

/// <summary>Size and difficulty of the built-in task.</summary>
public sealed class BuiltinTaskOptions
{
    public int Seed { get; set; } = 1234;
    public int TrainSize { get; set; } = 4000;
    public int DevSize { get; set; } = 1000;
    /// <summary>Share of labels replaced by a different random label (train and dev), so accuracy saturates below 100 %.</summary>
    public double LabelNoise { get; set; } = 0.05;
    /// <summary>Words per segment body (the query prefix comes on top); the longest encoding is 2·max + 6 tokens.</summary>
    public int MinSegmentWords { get; set; } = 6;
    public int MaxSegmentWords { get; set; } = 24;
    /// <summary>Share of examples under the "more X" rule (query matching); the rest use the "score" rule.</summary>
    public double MoreRuleShare { get; set; } = 0.2;
    /// <summary>
    /// Share of examples that contain negators at all. The rest are solvable from token counts per
    /// segment, which is what lets a small model trained from scratch leave the chance plateau.
    /// </summary>
    public double NegationShare { get; set; } = 0.3;
    /// <summary>Share of non-tie comparisons that differ by exactly one (the hardest to tell from a tie); the rest differ by 2–3.</summary>
    public double CloseCallShare { get; set; } = 0.4;
}

/// <summary>
/// The built-in demo task "compare": a 3-way pair classification generated from a seed, with its
/// own ~270-word vocabulary and word-level tokenizer (no files needed), at most 54 tokens.
/// <para>
/// Each example compares segment A's body with segment B under one of two rules, named by the first
/// word of A; labels are 0 = "A wins", 1 = "B wins", 2 = "tie":
/// <list type="bullet">
/// <item><c>score : …</c> (80 %) — who has the larger sentiment sum: positive words +1, negative −1,
/// each directly preceding negator flips the sign (<c>not not good</c> = +1). Entities and
/// pseudo-word fillers are noise.</item>
/// <item><c>more X : …</c> (20 %) — who has more occurrences of the query entity X. An occurrence
/// right after one negator (<c>not X</c>) does not count; after two it counts again. A decoy entity
/// is placed so that counting it would give a different answer.</item>
/// </list>
/// Only 30 % of examples contain negators; in the rest the answer follows from token counts per
/// segment, which gives a model trained from scratch a signal to leave the chance plateau.
/// </para>
/// <para>
/// Intended difficulty ladder: counts per segment (one attention layer averaging token values by
/// segment) solve the negation-free score examples; resolving negation needs attention to the
/// previous token and composing it with the sum (depth); the "more" rule needs the query token's
/// identity carried to the aggregation (depth again); exact ties and differences of one among ~50
/// tokens reward width. Chance is 33 %; with label noise p the ceiling is 1 − p. Balanced labels,
/// deterministic for a seed. See the report of the data branch for measured learning curves.
/// </para>
/// </summary>
public static class BuiltinTask
{
    public const string Name = "builtin";
    public static readonly string[] LabelNames = ["a_wins", "b_wins", "tie"];

    public static readonly string[] Entities = ["fox", "owl", "cat", "dog", "elk", "yak", "bee", "ant"];
    public static readonly string[] Positive = ["good", "fine", "glad", "kind", "warm", "calm", "brave", "bright", "fair", "neat", "rich", "wise", "bold", "keen", "sweet", "true"];
    public static readonly string[] Negative = ["bad", "sad", "cruel", "cold", "weak", "dull", "grim", "poor", "rude", "vain", "harsh", "sour", "false", "mean", "sick", "lazy"];
    public static readonly string[] Negators = ["not", "never"];
    public static readonly string[] Fillers = MakeFillers(240);
    public const string RuleMore = "more";
    public const string RuleScore = "score";
    public const string Colon = ":";

    private static WordLevelEncoder? s_encoder;

    /// <summary>The task's tokenizer (fixed vocabulary, independent of the seed).</summary>
    public static WordLevelEncoder Encoder => s_encoder ??= new WordLevelEncoder(
        [RuleMore, RuleScore, Colon, .. Negators, .. Entities, .. Positive, .. Negative, .. Fillers]);

    public static TaskDataset Generate(BuiltinTaskOptions? options = null)
    {
        options ??= new BuiltinTaskOptions();
        if (options.TrainSize < 3 || options.DevSize < 3) throw new ArgumentException("the built-in task needs at least 3 train and 3 dev examples");
        if (options.LabelNoise < 0 || options.LabelNoise >= 2.0 / 3) throw new ArgumentException($"label noise {options.LabelNoise} must be in [0, 2/3)");
        if (options.MoreRuleShare is < 0 or > 1) throw new ArgumentException($"'more' rule share {options.MoreRuleShare} must be in [0, 1]");
        if (options.NegationShare is < 0 or > 1) throw new ArgumentException($"negation share {options.NegationShare} must be in [0, 1]");
        if (options.CloseCallShare is < 0 or > 1) throw new ArgumentException($"close-call share {options.CloseCallShare} must be in [0, 1]");
        // 24 words hold the worst case of the required units (4 counted "not not X", 2 "not X", 3 decoys; 7 three-word sentiment units).
        if (options.MinSegmentWords < 1 || options.MaxSegmentWords < Math.Max(24, options.MinSegmentWords))
            throw new ArgumentException($"segment words [{options.MinSegmentWords}, {options.MaxSegmentWords}]: need 1 ≤ min ≤ max and max ≥ 24");
        var rng = new Random(options.Seed);
        var train = MakeSplit(rng, options.TrainSize, options);
        var dev = MakeSplit(rng, options.DevSize, options);
        return new TaskDataset(Name, TaskKind.Classification, LabelNames, PrimaryMetric.Accuracy, train, dev, builtinEncoder: Encoder);
    }

    /// <summary>The noise-free label of an example, computed from its text alone (the task's definition).</summary>
    public static int TrueLabel(string textA, string textB)
    {
        var a = textA.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var b = textB.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int colon = Array.IndexOf(a, Colon);
        if (colon < 0) throw new ArgumentException($"not a built-in task example (no '{Colon}'): {textA}");
        var bodyA = a.AsSpan(colon + 1);
        long va, vb;
        if (a[0] == RuleMore) { va = CountQuery(bodyA, a[1]); vb = CountQuery(b, a[1]); }
        else if (a[0] == RuleScore) { va = SentimentSum(bodyA); vb = SentimentSum(b); }
        else throw new ArgumentException($"unknown rule '{a[0]}'");
        return va > vb ? 0 : va < vb ? 1 : 2;
    }

    private static int NegationsBefore(ReadOnlySpan<string> words, int i)
    {
        int n = 0;
        while (i - 1 - n >= 0 && Array.IndexOf(Negators, words[i - 1 - n]) >= 0) n++;
        return n;
    }

    private static int CountQuery(ReadOnlySpan<string> words, string query)
    {
        int count = 0;
        for (int i = 0; i < words.Length; i++)
            if (words[i] == query && NegationsBefore(words, i) % 2 == 0) count++;
        return count;
    }

    private static int SentimentSum(ReadOnlySpan<string> words)
    {
        int sum = 0;
        for (int i = 0; i < words.Length; i++)
        {
            int v = Array.IndexOf(Positive, words[i]) >= 0 ? 1 : Array.IndexOf(Negative, words[i]) >= 0 ? -1 : 0;
            if (v != 0) sum += NegationsBefore(words, i) % 2 == 0 ? v : -v;
        }
        return sum;
    }

    private static List<TaskExample> MakeSplit(Random rng, int count, BuiltinTaskOptions o)
    {
        // Exactly balanced clean labels, in random order.
        var labels = new int[count];
        for (int i = 0; i < count; i++) labels[i] = i % 3;
        rng.Shuffle(labels);
        var list = new List<TaskExample>(count);
        foreach (var clean in labels)
        {
            bool negation = rng.NextDouble() < o.NegationShare;
            var (a, b) = rng.NextDouble() < o.MoreRuleShare ? MakeMore(rng, clean, negation, o) : MakeScore(rng, clean, negation, o);
            int label = clean;
            if (rng.NextDouble() < o.LabelNoise) label = (clean + 1 + rng.Next(2)) % 3;
            list.Add(new TaskExample(a, b, ClassId: label));
        }
        return list;
    }

    /// <summary>Two values with the wanted relation; differences are mostly small (hard cases).</summary>
    private static (int A, int B) Pair(Random rng, int label, int lo, int hi, double closeCallShare)
    {
        if (label == 2) { int v = rng.Next(lo, hi + 1); return (v, v); }
        int diff = rng.NextDouble() < closeCallShare ? 1 : rng.Next(2, 4);
        diff = Math.Min(diff, hi - lo);
        int small = rng.Next(lo, hi - diff + 1);
        return label == 0 ? (small + diff, small) : (small, small + diff);
    }

    private static (string A, string B) MakeMore(Random rng, int label, bool negation, BuiltinTaskOptions o)
    {
        var query = Entities[rng.Next(Entities.Length)];
        var (ca, cb) = Pair(rng, label, 0, 4, o.CloseCallShare);
        // A distractor entity whose counts point the other way (or break a tie).
        string decoy;
        do decoy = Entities[rng.Next(Entities.Length)]; while (decoy == query);
        var (da, db) = label switch { 0 => (rng.Next(0, 2), rng.Next(2, 4)), 1 => (rng.Next(2, 4), rng.Next(0, 2)), _ => Pair(rng, rng.Next(2), 0, 3, 0.5) };
        var bodyA = MoreBody(rng, query, ca, decoy, da, negation, o);
        var bodyB = MoreBody(rng, query, cb, decoy, db, negation, o);
        return ($"{RuleMore} {query} {Colon} {bodyA}", bodyB);
    }

    private static string MoreBody(Random rng, string query, int counted, string decoy, int decoyCount, bool negation, BuiltinTaskOptions o)
    {
        var units = new List<string[]>();
        for (int i = 0; i < counted; i++)
            units.Add(negation && rng.NextDouble() < 0.2 ? [Neg(rng), Neg(rng), query] : [query]);
        int negated = negation ? rng.Next(1, 3) : 0; // look like occurrences, do not count
        for (int i = 0; i < negated; i++) units.Add([Neg(rng), query]);
        for (int i = 0; i < decoyCount; i++) units.Add([decoy]);
        int sentiment = rng.Next(0, 4), used = units.Sum(u => u.Length);
        for (int i = 0; i < sentiment; i++)
        {
            var unit = SentimentUnit(rng, rng.Next(2) == 0 ? 1 : -1, negation);
            if (used + unit.Length > o.MaxSegmentWords) break; // optional noise, only within the length budget
            units.Add(unit);
            used += unit.Length;
        }
        return Assemble(rng, units, o);
    }

    private static (string A, string B) MakeScore(Random rng, int label, bool negation, BuiltinTaskOptions o)
    {
        var (sa, sb) = Pair(rng, label, -3, 3, o.CloseCallShare);
        return ($"{RuleScore} {Colon} {ScoreBody(rng, sa, negation, o)}", ScoreBody(rng, sb, negation, o));
    }

    private static string ScoreBody(Random rng, int score, bool negation, BuiltinTaskOptions o)
    {
        // n sentiment units summing to score: (n+s)/2 of +1 and (n-s)/2 of -1.
        int n = Math.Abs(score) + 2 * rng.Next(0, 3);
        var units = new List<string[]>();
        for (int i = 0; i < (n + score) / 2; i++) units.Add(SentimentUnit(rng, 1, negation));
        for (int i = 0; i < (n - score) / 2; i++) units.Add(SentimentUnit(rng, -1, negation));
        int entities = rng.Next(0, 4), used = units.Sum(u => u.Length);
        for (int i = 0; i < entities; i++)
        {
            string[] unit = negation && rng.NextDouble() < 0.3 ? [Neg(rng), Entities[rng.Next(Entities.Length)]] : [Entities[rng.Next(Entities.Length)]];
            if (used + unit.Length > o.MaxSegmentWords) break;
            units.Add(unit);
            used += unit.Length;
        }
        return Assemble(rng, units, o);
    }

    /// <summary>A sentiment phrase with the given effective value: plain, or (in negation examples) negated opposite or doubly negated.</summary>
    private static string[] SentimentUnit(Random rng, int value, bool negation)
    {
        string Word(int v) => v > 0 ? Positive[rng.Next(Positive.Length)] : Negative[rng.Next(Negative.Length)];
        double u = negation ? rng.NextDouble() : 0;
        return u < 0.5 ? [Word(value)] : u < 0.85 ? [Neg(rng), Word(-value)] : [Neg(rng), Neg(rng), Word(value)];
    }

    private static string Neg(Random rng) => Negators[rng.Next(Negators.Length)];

    /// <summary>Shuffles the units and pads with fillers to a random length; units never end in a negator, so they cannot negate each other.</summary>
    private static string Assemble(Random rng, List<string[]> units, BuiltinTaskOptions o)
    {
        int used = units.Sum(u => u.Length);
        int target = Math.Max(used, rng.Next(o.MinSegmentWords, o.MaxSegmentWords + 1));
        while (used < target) { units.Add([Fillers[rng.Next(Fillers.Length)]]); used++; }
        var arr = units.ToArray();
        rng.Shuffle(arr);
        return string.Join(' ', arr.SelectMany(u => u));
    }

    /// <summary>Pronounceable pseudo-words (consonant-vowel-consonant-vowel), a fixed list.</summary>
    private static string[] MakeFillers(int count)
    {
        const string consonants = "bdfgklmnprstvz", vowels = "aeiou";
        var words = new List<string>(count);
        // Stride through the CVCV space with a step coprime to its size for variety; fixed, not seeded.
        int space = consonants.Length * vowels.Length * consonants.Length * vowels.Length;
        for (int k = 0, i = 0; words.Count < count; k++, i = (i + 7919) % space)
        {
            int c1 = i % consonants.Length, v1 = i / consonants.Length % vowels.Length;
            int c2 = i / (consonants.Length * vowels.Length) % consonants.Length, v2 = i / (consonants.Length * vowels.Length * consonants.Length);
            var w = $"{consonants[c1]}{vowels[v1]}{consonants[c2]}{vowels[v2]}";
            if (!words.Contains(w)) words.Add(w);
        }
        return [.. words];
    }
}
