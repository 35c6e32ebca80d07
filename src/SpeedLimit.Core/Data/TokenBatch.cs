using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Data;

/// <summary>
/// One padded batch in the training engine's layout: flat row-major (B,T) arrays. Labels are one
/// of: <see cref="ClassLabels"/> (B), <see cref="Targets"/> (B), <see cref="TokenLabels"/> (B,T,
/// -100 = ignore) for masked LM, or none for unlabeled data.
/// </summary>
public sealed class TokenBatch
{
    public const int IgnoreLabel = -100;

    public TokenBatch(int batchSize, int seqLength, int[] inputIds, int[] tokenTypeIds, int[] attentionMask,
        int[] exampleIndices, int[]? classLabels = null, float[]? targets = null, int[]? tokenLabels = null)
    {
        if (batchSize <= 0 || seqLength <= 0) throw new ArgumentException($"batch shape ({batchSize},{seqLength}) must be positive");
        int n = batchSize * seqLength;
        if (inputIds.Length != n || tokenTypeIds.Length != n || attentionMask.Length != n)
            throw new ArgumentException($"token arrays must hold B*T = {n} entries");
        if (exampleIndices.Length != batchSize) throw new ArgumentException($"exampleIndices must hold B = {batchSize} entries");
        if (classLabels is not null && classLabels.Length != batchSize) throw new ArgumentException($"classLabels must hold B = {batchSize} entries");
        if (targets is not null && targets.Length != batchSize) throw new ArgumentException($"targets must hold B = {batchSize} entries");
        if (tokenLabels is not null && tokenLabels.Length != n) throw new ArgumentException($"tokenLabels must hold B*T = {n} entries");
        BatchSize = batchSize;
        SeqLength = seqLength;
        InputIds = inputIds;
        TokenTypeIds = tokenTypeIds;
        AttentionMask = attentionMask;
        ExampleIndices = exampleIndices;
        ClassLabels = classLabels;
        Targets = targets;
        TokenLabels = tokenLabels;
    }

    /// <summary>B.</summary>
    public int BatchSize { get; }
    /// <summary>T: the longest example in this batch (dynamic padding).</summary>
    public int SeqLength { get; }
    /// <summary>(B,T) token ids, padded with the encoder's [PAD].</summary>
    public int[] InputIds { get; }
    /// <summary>(B,T) 0 for the first text, 1 for the second; 0 on padding.</summary>
    public int[] TokenTypeIds { get; }
    /// <summary>(B,T) 1 = real token, 0 = padding.</summary>
    public int[] AttentionMask { get; }
    /// <summary>(B) index of each row's example in the dataset it came from, to map predictions back.</summary>
    public int[] ExampleIndices { get; }
    public int[]? ClassLabels { get; }
    public float[]? Targets { get; }
    public int[]? TokenLabels { get; }

    /// <summary>Number of real (unpadded) tokens.</summary>
    public int TokenCount => AttentionMask.Sum();

    /// <summary>The encoder's input view of this batch (shares the arrays).</summary>
    public EncoderInput ToEncoderInput() => new(BatchSize, SeqLength, InputIds, TokenTypeIds, AttentionMask);

    /// <summary>For <see cref="Trainer.Step(LabeledBatch, float[], float, float)"/>: class ids or regression targets.</summary>
    public LabeledBatch ToLabeledBatch() => ClassLabels is null && Targets is null
        ? throw new InvalidOperationException("this batch has no labels (test data); it can be scored but not trained on")
        : new LabeledBatch(ToEncoderInput(), ClassLabels, Targets);

    /// <summary>For masked-LM training: the flat (b·T + t) positions whose label is not -100, and those labels.</summary>
    public MaskedLmBatch ToMaskedLmBatch()
    {
        if (TokenLabels is null) throw new InvalidOperationException("this batch has no masked-LM labels; build it with MaskedLmCorpus");
        var positions = new List<int>();
        var labels = new List<int>();
        for (int i = 0; i < TokenLabels.Length; i++)
            if (TokenLabels[i] != IgnoreLabel) { positions.Add(i); labels.Add(TokenLabels[i]); }
        return new MaskedLmBatch(ToEncoderInput(), [.. positions], [.. labels]);
    }
}

/// <summary>An encoded example with its label (ClassId -1 / Score NaN when unlabeled).</summary>
public sealed record EncodedExample(int[] InputIds, int[] TokenTypeIds, int ClassId, float Score)
{
    public int Length => InputIds.Length;
}

/// <summary>Options for turning encoded examples into batches.</summary>
internal sealed class BatchOptions
{
    public int BatchSize { get; set; } = 32;
    /// <summary>Shuffle (training) or keep a deterministic length-sorted order (evaluation).</summary>
    public bool Shuffle { get; set; } = true;
    public int Seed { get; set; } = 1234;
    /// <summary>
    /// Shuffled examples are sorted by length within pools of this many batches, so a batch holds
    /// similar lengths (little padding) while the batch order stays random. 1 turns bucketing off.
    /// </summary>
    public int BucketPoolBatches { get; set; } = 50;
}

/// <summary>Encodes task examples and cuts them into length-bucketed, padded batches; drops nothing.</summary>
internal static class TokenBatcher
{
    public static List<EncodedExample> Encode(IReadOnlyList<TaskExample> examples, ITextEncoder encoder, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(encoder);
        var result = new List<EncodedExample>(examples.Count);
        foreach (var e in examples)
        {
            var enc = encoder.Encode(e.TextA, e.TextB, maxLength);
            result.Add(new EncodedExample(enc.InputIds, enc.TokenTypeIds, e.ClassId, e.Score));
        }
        return result;
    }

    /// <summary>
    /// Batches for one epoch. Shuffled: a seeded permutation (seed and epoch mixed), sorted by length
    /// inside pools of <see cref="BatchOptions.BucketPoolBatches"/> batches, then the batch order
    /// shuffled. Not shuffled: sorted by length (stable), in order. Every example appears exactly once.
    /// </summary>
    public static IEnumerable<TokenBatch> Batches(IReadOnlyList<EncodedExample> examples, BatchOptions options, int padId, int epoch = 0)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(options);
        if (options.BatchSize <= 0) throw new ArgumentException($"batch size {options.BatchSize} must be positive");
        if (options.BucketPoolBatches <= 0) throw new ArgumentException($"bucket pool {options.BucketPoolBatches} must be at least 1 batch");
        var batches = Plan(examples, options, epoch);
        foreach (var batch in batches) yield return Collate(examples, batch, padId);
    }

    /// <summary>The example indices of each batch for one epoch (what <see cref="Batches"/> collates).</summary>
    public static List<int[]> Plan(IReadOnlyList<EncodedExample> examples, BatchOptions options, int epoch = 0)
    {
        int n = examples.Count;
        var order = Enumerable.Range(0, n).ToArray();
        var batches = new List<int[]>();
        if (!options.Shuffle)
        {
            var sorted = order.OrderBy(i => examples[i].Length).ToArray(); // stable
            for (int s = 0; s < n; s += options.BatchSize) batches.Add(sorted[s..Math.Min(n, s + options.BatchSize)]);
            return batches;
        }
        var rng = new Random(Seeds.Combine(options.Seed, epoch, 0x5eed));
        rng.Shuffle(order);
        int pool = options.BatchSize * options.BucketPoolBatches;
        for (int p = 0; p < n; p += pool)
        {
            var chunk = order[p..Math.Min(n, p + pool)].OrderBy(i => examples[i].Length).ToArray();
            for (int s = 0; s < chunk.Length; s += options.BatchSize) batches.Add(chunk[s..Math.Min(chunk.Length, s + options.BatchSize)]);
        }
        var shuffled = batches.ToArray();
        rng.Shuffle(shuffled);
        return [.. shuffled];
    }

    /// <summary>Pads the given examples to their longest length. Labels: all or none of them must have one.</summary>
    public static TokenBatch Collate(IReadOnlyList<EncodedExample> examples, IReadOnlyList<int> indices, int padId)
    {
        int b = indices.Count;
        if (b == 0) throw new ArgumentException("cannot collate an empty batch");
        int t = 0;
        foreach (var i in indices) t = Math.Max(t, examples[i].Length);
        var ids = new int[b * t];
        var types = new int[b * t];
        var mask = new int[b * t];
        if (padId != 0) ids.AsSpan().Fill(padId);
        int labeledClass = 0, labeledScore = 0;
        var classes = new int[b];
        var scores = new float[b];
        for (int r = 0; r < b; r++)
        {
            var e = examples[indices[r]];
            e.InputIds.CopyTo(ids, r * t);           // row r of (B,T)
            e.TokenTypeIds.CopyTo(types, r * t);
            mask.AsSpan(r * t, e.Length).Fill(1);
            classes[r] = e.ClassId;
            scores[r] = e.Score;
            if (e.ClassId >= 0) labeledClass++;
            if (!float.IsNaN(e.Score)) labeledScore++;
        }
        if ((labeledClass != 0 && labeledClass != b) || (labeledScore != 0 && labeledScore != b))
            throw new ArgumentException("a batch mixes labeled and unlabeled examples; batch train/dev and test separately");
        return new TokenBatch(b, t, ids, types, mask, [.. indices],
            labeledClass == b ? classes : null, labeledScore == b ? scores : null);
    }
}
