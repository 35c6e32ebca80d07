using SpeedLimit.Model;
using SpeedLimit.Training;
using static SpeedLimit.Tests.Model.FiniteDifference;

namespace SpeedLimit.Tests.Training;

/// <summary>
/// Skipping the word-embedding rows no batch looked up (their gradient is exactly zero) in the gradient check and in
/// AdamW: the same bits as the dense passes, on 1–3 threads, for single passes and for whole training steps.
/// </summary>
public class TouchedEmbeddingRowsTests
{
    // a table of 3000 rows of 96 floats (rows straddle the check's chunks and AdamW's blocks) after 1234 other floats
    private const int Offset = 1234, Rows = 3000, Width = 96, Total = Offset + Rows * Width + 20_011;

    /// <summary>A small classifier over a 3000-word table, for the training-step tests.</summary>
    private static readonly BertConfig Classifier = new(new Architecture(2, 96, 192), 4, Rows, HeadKind.Classification, labels: 2, maxPositions: 32);

    [Fact]
    public void IsZero_OnlyForRangesInsideTheTableThatMissEveryTouchedRow()
    {
        var rows = new TouchedEmbeddingRows(new ParameterRange(Offset, Rows * Width), Width);
        rows.Mark([5, 7, 5, -1, Rows]); // repeats and ids outside the table are ignored
        Assert.True(rows.IsZero(Offset, 5 * Width));
        Assert.False(rows.IsZero(Offset, 5 * Width + 1)); // reaches row 5
        Assert.True(rows.IsZero(Offset + 6 * Width, Width));
        Assert.False(rows.IsZero(Offset + 7 * Width + Width - 1, 1));
        Assert.False(rows.IsZero(Offset - 1, 2)); // partly outside: nothing is known there
        Assert.False(rows.IsZero(Offset + Rows * Width - 1, 2));
        rows.Clear();
        Assert.True(rows.IsZero(Offset, Rows * Width));
        Assert.Throws<ArgumentException>(() => new TouchedEmbeddingRows(new ParameterRange(0, 100), 96));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void InspectAndAdamW_SkippingUntouchedRows_GiveTheDenseBits(int threads)
    {
        var rng = new Random(20 + threads);
        var rows = new TouchedEmbeddingRows(new ParameterRange(Offset, Rows * Width), Width);
        var options = new TrainingOptions { Beta1 = 0.9f, Beta2 = 0.98f, Epsilon = 1e-6f, WeightDecay = 0.1f };
        ParameterRange[] decayed = [new(Offset, Rows * Width)];
        var sparse = new AdamW(Total, decayed, options);
        var dense = new AdamW(Total, decayed, options);
        var pSparse = RandomArray(rng, Total, 1f);
        var pDense = (float[])pSparse.Clone();
        for (int step = 1; step <= 4; step++)
        {
            var ids = Enumerable.Range(0, 40).Select(_ => rng.Next(Rows)).ToArray();
            rows.Mark(ids);
            var g = GradientWithRows(rng, ids);
            var gDense = (float[])g.Clone();
            var (_, norm) = GradientUtilities.Inspect(g, null, threads, rows);
            var (_, denseNorm) = GradientUtilities.Inspect(gDense, null, threads);
            Assert.Equal(denseNorm, norm);
            float clip = GradientUtilities.ClipFactor(norm, 5.0);
            sparse.Step(pSparse, g, 1e-2f, clip, clearGradients: true, threads, rows);
            dense.Step(pDense, gDense, 1e-2f, clip, clearGradients: true, threads);
            Assert.Equal(pDense, pSparse);
            Assert.All(g, v => Assert.Equal(0f, v));
            rows.Clear();
        }
        Assert.Equal(dense.FirstMoment.ToArray(), sparse.FirstMoment.ToArray());
        Assert.Equal(dense.SecondMoment.ToArray(), sparse.SecondMoment.ToArray());

        // the skip is real: a value in a row nobody marked is not seen
        var stray = GradientWithRows(rng, [3]);
        rows.Mark([3]);
        stray[Offset + 2000 * Width + 1] = 100f;
        Assert.NotEqual(GradientUtilities.Inspect(stray, null, threads).Norm, GradientUtilities.Inspect(stray, null, threads, rows).Norm);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    public void TrainingSteps_SkippingUntouchedRows_GiveTheDenseBits(int threads, int accumulation)
    {
        // few distinct words in a 3000-word table; clipping on, so the norm's bits reach every parameter
        var rng = new Random(9);
        LabeledBatch Batch() => new(EncoderInput.Unpadded(8, 32, Enumerable.Range(0, 8 * 32).Select(_ => rng.Next(1, 400)).ToArray()),
            Enumerable.Range(0, 8).Select(i => i % 2).ToArray());
        var batches = Enumerable.Range(0, 4 * accumulation).Select(_ => Batch()).ToArray();
        float[] Train(bool skip)
        {
            var model = BertModel.CreateRandom(Classifier, 3);
            var options = new TrainingOptions { LearningRate = 1e-3f, Seed = 4, Threads = threads, MaxGradNorm = 0.5f, AccumulationSteps = accumulation };
            var trainer = new Trainer(model, options, 10, dropout: 0.1f) { SkipUntouchedEmbeddingRows = skip };
            foreach (var b in batches) trainer.Step(b);
            Assert.Equal(4, trainer.OptimizerSteps);
            return model.Parameters;
        }
        Assert.Equal(Train(skip: false), Train(skip: true));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    public void TrainingSteps_DeferringUntouchedRows_GiveTheEagerBitsOnceSettled(int threads, int accumulation)
    {
        // Each batch brings words no earlier batch used, so rows wake after several deferred steps and then wait again while
        // later batches use other words; padding (id 0, whose gradient is zero) is read by every forward pass while it stays dormant.
        var rng = new Random(11);
        int step = 0;
        LabeledBatch Batch()
        {
            int from = 1 + 150 * step++;
            var ids = Enumerable.Range(0, 8 * 32).Select(i => i % 32 >= 28 ? 0 : rng.Next(from, from + 200)).ToArray();
            var mask = ids.Select(id => id == 0 ? 0 : 1).ToArray();
            return new(new EncoderInput(8, 32, ids, new int[ids.Length], mask), Enumerable.Range(0, 8).Select(i => i % 2).ToArray());
        }
        var batches = Enumerable.Range(0, 6 * accumulation).Select(_ => Batch()).ToArray();
        var options = new TrainingOptions { LearningRate = 1e-2f, WeightDecay = 0.1f, Seed = 4, Threads = threads, MaxGradNorm = 0.5f, AccumulationSteps = accumulation };

        var eagerModel = BertModel.CreateRandom(Classifier, 3);
        var eager = new Trainer(eagerModel, options, 10, dropout: 0.1f);
        var lazyModel = BertModel.CreateRandom(Classifier, 3);
        var lazy = new Trainer(lazyModel, options, 10, dropout: 0.1f);
        lazy.DeferUntouchedEmbeddingRows();
        for (int part = 0; part < 2; part++) // settling mid-way, then deferring again, changes nothing either
        {
            foreach (var b in batches.Skip(part * 3 * accumulation).Take(3 * accumulation))
            {
                eager.Step(b);
                lazy.Step(b);
            }
            Assert.True(lazy.Optimizer.HasDeferredUpdates);
            Assert.NotEqual(eagerModel.Parameters, lazyModel.Parameters); // the untouched rows still wait
            lazy.SettleParameters();
            Assert.False(lazy.Optimizer.HasDeferredUpdates);
            Assert.Equal(eagerModel.Parameters, lazyModel.Parameters);
            Assert.Equal(eager.Optimizer.FirstMoment.ToArray(), lazy.Optimizer.FirstMoment.ToArray());
            Assert.Equal(eager.Optimizer.SecondMoment.ToArray(), lazy.Optimizer.SecondMoment.ToArray());
        }
        Assert.Equal(6, lazy.OptimizerSteps);
    }

    [Fact]
    public void DeferredRows_NeedATableWhoseRangeStartsOnABlock()
    {
        var options = new TrainingOptions();
        var aligned = new AdamW(10_000, [new ParameterRange(0, 5000)], options);
        Assert.True(aligned.DeferUntouchedRows(new ParameterRange(0, 40 * 96)));
        var shifted = new AdamW(10_000, [new ParameterRange(100, 5000)], options); // a piece could split a block
        Assert.False(shifted.DeferUntouchedRows(new ParameterRange(100, 40 * 96)));
        Assert.Throws<ArgumentException>(() => aligned.DeferUntouchedRows(new ParameterRange(4000, 2000))); // not inside the decayed range
    }

    /// <summary>A gradient that is dense outside the table and non-zero inside it only at the rows of <paramref name="ids"/>.</summary>
    private static float[] GradientWithRows(Random rng, int[] ids)
    {
        var g = RandomArray(rng, Total, 0.5f);
        g.AsSpan(Offset, Rows * Width).Clear();
        foreach (int id in ids)
            for (int c = 0; c < Width; c++) g[Offset + id * Width + c] = (float)(rng.NextDouble() - 0.5);
        return g;
    }
}
