namespace SpeedLimit.Data;

/// <summary>Size and difficulty of the built-in task.</summary>
public sealed class BuiltinTaskOptions
{
    public int Seed { get; set; } = 1234;
    public int TrainSize { get; set; } = 6000;
    public int DevSize { get; set; } = 1000;
    /// <summary>Share of labels replaced by a different random label (train and dev), so accuracy saturates below 100 %.</summary>
    public double LabelNoise { get; set; } = 0.02;
    /// <summary>Words per segment (fillers pad the sentiment phrases up to a random length in this range).</summary>
    public int MinSegmentWords { get; set; } = 4;
    public int MaxSegmentWords { get; set; } = 12;
    /// <summary>
    /// Share of examples whose sentiment phrases may be negated (<c>not good</c> counts as negative).
    /// The rest are solvable from which sentiment words each segment contains.
    /// </summary>
    public double NegationShare { get; set; } = 0.5;
    /// <summary>In negation examples, the chance that a sentiment phrase is negated.</summary>
    public double NegatedPhraseShare { get; set; } = 0.5;
}

/// <summary>
/// The built-in demo task "agree": a 3-way sentence-pair classification generated from a seed, with
/// its own 50-word vocabulary and word-level tokenizer (no files needed), short inputs (≤ 2·12 + 3 tokens).
/// <para>
/// Each segment is a tiny review: one to three sentiment phrases among filler pseudo-words. A phrase is a
/// positive or negative word, optionally negated by a directly preceding <c>not</c>/<c>never</c>
/// (<c>not good</c> counts −1, <c>never bad</c> +1). A segment's polarity is the sign of its phrase sum
/// (never zero). Labels: 0 = both segments positive, 1 = both negative, 2 = they disagree.
/// </para>
/// <para>
/// Difficulty is graded on purpose, so bigger encoders score measurably higher:
/// <list type="number">
/// <item>Bag of words over the whole pair (what a model's first steps learn, no attention needed):
/// the overall balance of positive and negative words separates most "both positive" from "both
/// negative" pairs.</item>
/// <item>Per-segment polarity (attention that splits [CLS]'s view by segment): needed to tell
/// "disagree" from "agree", e.g. (+3, −1) against (+1, +1).</item>
/// <item>Negation (in <see cref="BuiltinTaskOptions.NegationShare"/> of the examples): a word's value
/// depends on its left neighbour, which one attention layer cannot see from [CLS] — it takes a layer
/// that attends to the previous token, then one that aggregates (depth). With half the phrases negated
/// the visible words carry no information about the polarity, so these examples stay at chance
/// without it.</item>
/// </list>
/// Balanced labels, deterministic for a seed; chance is 1/3, the ceiling is 1 − <see cref="BuiltinTaskOptions.LabelNoise"/> (0.98).
/// See docs/builtin-task.md for measured accuracies per model size.
/// </para>
/// </summary>
internal static class BuiltinTask
{
    public const string Name = "builtin";
    public static readonly string[] LabelNames = ["both_positive", "both_negative", "disagree"];

    public static readonly string[] Positive = ["good", "fine", "glad", "kind", "warm", "calm", "brave", "bright"];
    public static readonly string[] Negative = ["bad", "sad", "cruel", "cold", "weak", "dull", "grim", "poor"];
    public static readonly string[] Negators = ["not", "never"];
    public static readonly string[] Fillers = MakeFillers(32);

    private static WordLevelEncoder? s_encoder;

    /// <summary>The task's tokenizer (fixed vocabulary, independent of the seed).</summary>
    public static WordLevelEncoder Encoder => s_encoder ??= new WordLevelEncoder([.. Negators, .. Positive, .. Negative, .. Fillers]);

    public static TaskDataset Generate(BuiltinTaskOptions? options = null)
    {
        options ??= new BuiltinTaskOptions();
        if (options.TrainSize < 3 || options.DevSize < 3) throw new ArgumentException("the built-in task needs at least 3 train and 3 dev examples");
        if (options.LabelNoise < 0 || options.LabelNoise >= 2.0 / 3) throw new ArgumentException($"label noise {options.LabelNoise} must be in [0, 2/3)");
        if (options.NegationShare is < 0 or > 1) throw new ArgumentException($"negation share {options.NegationShare} must be in [0, 1]");
        if (options.NegatedPhraseShare is < 0 or > 1) throw new ArgumentException($"negated phrase share {options.NegatedPhraseShare} must be in [0, 1]");
        // 6 words hold the longest set of phrases (three negated ones).
        if (options.MinSegmentWords < 1 || options.MaxSegmentWords < Math.Max(6, options.MinSegmentWords))
            throw new ArgumentException($"segment words [{options.MinSegmentWords}, {options.MaxSegmentWords}]: need 1 ≤ min ≤ max and max ≥ 6");
        var rng = new Random(options.Seed);
        var train = MakeSplit(rng, options.TrainSize, options);
        var dev = MakeSplit(rng, options.DevSize, options);
        return new TaskDataset(Name, TaskKind.Classification, LabelNames, PrimaryMetric.Accuracy, train, dev, builtinEncoder: Encoder);
    }

    /// <summary>The noise-free label of an example, computed from its text alone (the task's definition).</summary>
    public static int TrueLabel(string textA, string textB)
    {
        int a = Polarity(textA), b = Polarity(textB);
        return a > 0 && b > 0 ? 0 : a < 0 && b < 0 ? 1 : 2;
    }

    /// <summary>The sign of a segment's phrase sum (+1 or −1); throws for a segment whose sum is zero, which the task never writes.</summary>
    public static int Polarity(string segment)
    {
        var words = segment.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int sum = 0;
        for (int i = 0; i < words.Length; i++)
        {
            int v = Array.IndexOf(Positive, words[i]) >= 0 ? 1 : Array.IndexOf(Negative, words[i]) >= 0 ? -1 : 0;
            if (v != 0) sum += i > 0 && Array.IndexOf(Negators, words[i - 1]) >= 0 ? -v : v;
        }
        return sum != 0 ? Math.Sign(sum) : throw new ArgumentException($"not a built-in task segment (sentiment sums to zero): {segment}");
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
            var (pa, pb) = clean switch { 0 => (1, 1), 1 => (-1, -1), _ => rng.Next(2) == 0 ? (1, -1) : (-1, 1) };
            double negated = rng.NextDouble() < o.NegationShare ? o.NegatedPhraseShare : 0;
            var a = Segment(rng, pa, negated, o);
            var b = Segment(rng, pb, negated, o);
            int label = clean;
            if (rng.NextDouble() < o.LabelNoise) label = (clean + 1 + rng.Next(2)) % 3;
            list.Add(new TaskExample(a, b, ClassId: label));
        }
        return list;
    }

    /// <summary>One to three sentiment phrases with the given overall sign, padded with fillers and shuffled.</summary>
    private static string Segment(Random rng, int polarity, double negatedShare, BuiltinTaskOptions o)
    {
        // Phrase values: +, ++, +++ or ++− (times the polarity); the mixed one keeps bag-of-words counting honest.
        int[] values = rng.Next(4) switch { 0 => [1], 1 => [1, 1], 2 => [1, 1, 1], _ => [1, 1, -1] };
        var units = new List<string[]>();
        foreach (var v in values)
        {
            int value = v * polarity;
            units.Add(rng.NextDouble() < negatedShare
                ? [Negators[rng.Next(Negators.Length)], Word(rng, -value)]
                : [Word(rng, value)]);
        }
        int used = units.Sum(u => u.Length);
        int target = Math.Max(used, rng.Next(o.MinSegmentWords, o.MaxSegmentWords + 1));
        for (; used < target; used++) units.Add([Fillers[rng.Next(Fillers.Length)]]);
        var arr = units.ToArray();
        rng.Shuffle(arr);
        return string.Join(' ', arr.SelectMany(u => u));
    }

    private static string Word(Random rng, int value) => value > 0 ? Positive[rng.Next(Positive.Length)] : Negative[rng.Next(Negative.Length)];

    /// <summary>Pronounceable pseudo-words (consonant-vowel-consonant-vowel), a fixed list.</summary>
    private static string[] MakeFillers(int count)
    {
        const string consonants = "bdfgklmnprstvz", vowels = "aeiou";
        var words = new List<string>(count);
        // Stride through the CVCV space with a step coprime to its size for variety; fixed, not seeded.
        int space = consonants.Length * vowels.Length * consonants.Length * vowels.Length;
        for (int i = 0; words.Count < count; i = (i + 7919) % space)
        {
            int c1 = i % consonants.Length, v1 = i / consonants.Length % vowels.Length;
            int c2 = i / (consonants.Length * vowels.Length) % consonants.Length, v2 = i / (consonants.Length * vowels.Length * consonants.Length);
            var w = $"{consonants[c1]}{vowels[v1]}{consonants[c2]}{vowels[v2]}";
            if (!words.Contains(w)) words.Add(w);
        }
        return [.. words];
    }
}
