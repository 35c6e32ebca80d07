using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

public class BatcherTests
{
    private static List<EncodedExample> Examples(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(i =>
        {
            int len = rng.Next(3, 60);
            var ids = Enumerable.Range(0, len).Select(j => 5 + (i * 7 + j) % 50).ToArray();
            var types = Enumerable.Range(0, len).Select(j => j >= len / 2 ? 1 : 0).ToArray();
            return new EncodedExample(ids, types, i % 3, float.NaN);
        }).ToList();
    }

    [Fact]
    public void CollatePadsRowMajorWithMaskAndLabels()
    {
        var xs = new List<EncodedExample>
        {
            new([2, 7, 8, 3], [0, 0, 0, 0], 1, float.NaN),
            new([2, 9, 3], [0, 0, 0], 0, float.NaN),
            new([2, 5, 3, 6, 6, 3], [0, 0, 0, 1, 1, 1], 2, float.NaN),
        };
        var batch = TokenBatcher.Collate(xs, [1, 2, 0], padId: 0);
        Assert.Equal((3, 6), (batch.BatchSize, batch.SeqLength));
        Assert.Equal([2, 9, 3, 0, 0, 0, 2, 5, 3, 6, 6, 3, 2, 7, 8, 3, 0, 0], batch.InputIds);
        Assert.Equal([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], batch.TokenTypeIds);
        Assert.Equal([1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], batch.AttentionMask);
        Assert.Equal([0, 2, 1], batch.ClassLabels!);
        Assert.Equal([1, 2, 0], batch.ExampleIndices);
        Assert.Null(batch.Targets);
        Assert.Equal(13, batch.TokenCount);
        var padded = TokenBatcher.Collate(xs, [1, 0], padId: 99);
        Assert.Equal([2, 9, 3, 99, 2, 7, 8, 3], padded.InputIds);
    }

    [Fact]
    public void RegressionTargetsAndMixedLabelsRejected()
    {
        var xs = new List<EncodedExample> { new([2, 3], [0, 0], -1, 1.5f), new([2, 4, 3], [0, 0, 0], -1, 4f), new([2, 3], [0, 0], -1, float.NaN) };
        Assert.Equal([1.5f, 4f], TokenBatcher.Collate(xs, [0, 1], 0).Targets!);
        Assert.Null(TokenBatcher.Collate(xs, [2], 0).Targets);
        Assert.Throws<ArgumentException>(() => TokenBatcher.Collate(xs, [0, 2], 0));
    }

    [Fact]
    public void EveryExampleOncePerEpochSeededAndBucketed()
    {
        var xs = Examples(1000, 1);
        var options = new BatchOptions { BatchSize = 16, Seed = 42, BucketPoolBatches = 20 };
        var plan = TokenBatcher.Plan(xs, options, epoch: 0);
        Assert.Equal(Enumerable.Range(0, 1000), plan.SelectMany(b => b).Order());
        Assert.Equal(63, plan.Count); // ceil(1000/16): nothing dropped
        Assert.Equal(plan, TokenBatcher.Plan(xs, options, epoch: 0)); // deterministic
        Assert.NotEqual(plan, TokenBatcher.Plan(xs, options, epoch: 1));
        Assert.NotEqual(plan, TokenBatcher.Plan(xs, new BatchOptions { BatchSize = 16, Seed = 43, BucketPoolBatches = 20 }));

        // Bucketing cuts padding against a plain shuffle.
        int Padding(List<int[]> p) => p.Sum(b => b.Length * b.Max(i => xs[i].Length) - b.Sum(i => xs[i].Length));
        var plain = TokenBatcher.Plan(xs, new BatchOptions { BatchSize = 16, Seed = 42, BucketPoolBatches = 1 });
        Assert.True(Padding(plan) * 3 < Padding(plain), $"bucketed padding {Padding(plan)} vs plain {Padding(plain)}");

        var batches = TokenBatcher.Batches(xs, options, padId: 0).ToList();
        Assert.Equal(xs.Sum(x => x.Length), batches.Sum(b => b.TokenCount));
        foreach (var b in batches)
            for (int r = 0; r < b.BatchSize; r++)
                Assert.Equal(xs[b.ExampleIndices[r]].InputIds, b.InputIds.AsSpan(r * b.SeqLength, xs[b.ExampleIndices[r]].Length).ToArray());
    }

    [Fact]
    public void EvaluationOrderIsLengthSorted()
    {
        var xs = Examples(100, 2);
        var plan = TokenBatcher.Plan(xs, new BatchOptions { BatchSize = 8, Shuffle = false });
        var lengths = plan.SelectMany(b => b).Select(i => xs[i].Length).ToList();
        Assert.Equal(lengths.Order(), lengths);
        Assert.Equal(100, lengths.Count);
    }

    [Fact]
    public void EncodeKeepsLabels()
    {
        var enc = new WordLevelEncoder(["a", "b"]);
        var xs = TokenBatcher.Encode([new TaskExample("a b", "b", ClassId: 1), new TaskExample("b", null, Score: 2.5f)], enc, 16);
        Assert.Equal([enc.ClsId, enc.IdOf("a"), enc.IdOf("b"), enc.SepId, enc.IdOf("b"), enc.SepId], xs[0].InputIds);
        Assert.Equal((1, 2.5f), (xs[0].ClassId, xs[1].Score));
    }

    [Fact]
    public void AdaptsToTheEngineBatches()
    {
        var xs = new List<EncodedExample> { new([2, 7, 3], [0, 0, 0], 1, float.NaN), new([2, 3], [0, 0], 0, float.NaN) };
        var batch = TokenBatcher.Collate(xs, [0, 1], 0);
        var labeled = batch.ToLabeledBatch();
        Assert.Same(batch.InputIds, labeled.Input.InputIds);
        Assert.Equal((2, 3), (labeled.Input.Batch, labeled.Input.SequenceLength));
        Assert.Equal([1, 0], labeled.Labels!);
        labeled.Validate(new SpeedLimit.Model.BertConfig(new SpeedLimit.Architecture(1, 8, 8), 2, 10, SpeedLimit.Model.HeadKind.Classification, 2, maxPositions: 8));
        Assert.Throws<InvalidOperationException>(() => batch.ToMaskedLmBatch());

        var mlm = new TokenBatch(2, 3, [2, 4, 3, 2, 9, 4], new int[6], [1, 1, 1, 1, 1, 1], [0, 1],
            tokenLabels: [-100, 8, -100, -100, -100, 5]);
        var m = mlm.ToMaskedLmBatch();
        Assert.Equal([1, 5], m.Positions);
        Assert.Equal([8, 5], m.Labels);
    }
}
