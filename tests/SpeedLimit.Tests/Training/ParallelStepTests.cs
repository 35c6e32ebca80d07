using SpeedLimit.Model;
using SpeedLimit.Training;
using static SpeedLimit.Tests.Model.FiniteDifference;

namespace SpeedLimit.Tests.Training;

/// <summary>
/// The trainer's fused, threaded passes over the whole parameter buffer (gradient inspection, clipped AdamW that
/// clears the gradients) against the separate passes they replace, bit for bit, on 1–3 threads; and a whole
/// training step that gives the same bits on every thread count.
/// </summary>
public class ParallelStepTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void FusedClippedStep_IsScaleThenStepThenClear_BitForBit(int threads)
    {
        const int n = 400_003; // several pieces per thread, an odd tail
        var rng = new Random(threads);
        ParameterRange[] decayed = [new(0, n / 3), new(n / 2, n / 5)];
        var options = new TrainingOptions { Beta1 = 0.9f, Beta2 = 0.98f, Epsilon = 1e-6f, WeightDecay = 0.1f };
        var pFused = RandomArray(rng, n, 1f);
        var pReference = (float[])pFused.Clone();
        var fused = new AdamW(n, decayed, options);
        var reference = new AdamW(n, decayed, options);
        for (int step = 0; step < 3; step++)
        {
            var g = RandomArray(rng, n, 0.5f);
            float scale = step == 1 ? 1f : 0.37f; // a clipped step and an unclipped one
            var gReference = (float[])g.Clone();
            if (scale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(gReference, scale, gReference);
            reference.Step(pReference, gReference, 1e-2f);
            fused.Step(pFused, g, 1e-2f, scale, clearGradients: true, threads);
            Assert.All(g, v => Assert.Equal(0f, v));
        }
        Assert.Equal(pReference, pFused);
        Assert.Equal(reference.FirstMoment.ToArray(), fused.FirstMoment.ToArray());
        Assert.Equal(reference.SecondMoment.ToArray(), fused.SecondMoment.ToArray());
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 3)]
    [InlineData(true, 1)]
    public void DormantBlocks_GetTheBitsOfTheFullUpdate(bool scalar, int threads)
    {
        // Blocks whose gradient has always been zero take the short path (p·decay); the reference runs the full
        // update on every element, whatever its state.
        int n = 12 * AdamW.BlockLength + 77, block = AdamW.BlockLength;
        var rng = new Random(40 + threads);
        var options = new TrainingOptions { Beta1 = 0.9f, Beta2 = 0.98f, Epsilon = 1e-6f, WeightDecay = 0.1f };
        ParameterRange[] decayed = [new(0, n / 2 + 5)]; // a segment boundary inside a block
        var adam = new AdamW(n, decayed, options) { ForceScalar = scalar };
        var p = RandomArray(rng, n, 1f);
        var pRef = (float[])p.Clone();
        var mRef = new float[n]; var vRef = new float[n];
        for (int step = 1; step <= 5; step++)
        {
            var g = RandomArray(rng, n, 0.5f);
            for (int b = 0; b * block < n; b++)
            {
                bool zero = b % 4 == 3 || (b + step) % 3 != 0; // some blocks never live, others waking up at different steps
                if (zero) g.AsSpan(b * block, Math.Min(block, n - b * block)).Fill(b % 2 == 0 ? 0f : -0f);
            }
            float lr = 1e-2f * step;
            var k = new AdamW.Coefficients(adam, lr, step);
            var gRef = (float[])g.Clone();
            foreach (var (start, length, decay) in new[] { (0, n / 2 + 5, k.DecayFactor), (n / 2 + 5, n - (n / 2 + 5), 1f) })
                AdamW.UpdateScalar(pRef.AsSpan(start, length), gRef.AsSpan(start, length), mRef.AsSpan(start, length), vRef.AsSpan(start, length), k, decay);
            adam.Step(p, g, lr, 1f, clearGradients: true, threads);
        }
        Assert.Equal(pRef, p);
        Assert.Equal(mRef, adam.FirstMoment.ToArray());
        Assert.Equal(vRef, adam.SecondMoment.ToArray());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Inspect_GivesTheNormAndTheFirstNonFiniteValueOfTheSeparatePasses(int threads)
    {
        var rng = new Random(10 + threads);
        var g = RandomArray(rng, 1_000_003, 2f);
        g[123_456] = 3e20f; // a chunk whose float squares overflow: summed in double
        var (bad, norm) = GradientUtilities.Inspect(g, null, threads);
        Assert.Null(bad);
        Assert.Equal(GradientUtilities.GlobalL2Norm(g), norm); // the same bits
        g[700_001] = float.NegativeInfinity;
        g[500_002] = float.NaN; // the first one is reported, whichever thread finds it
        (bad, _) = GradientUtilities.Inspect(g, null, threads);
        Assert.Equal(GradientUtilities.FindNonFinite(g), bad);
        Assert.Equal(500_002, bad!.FlatIndex);
    }

    [Fact]
    public void ClipFactor_IsWhatClipGlobalNormApplies()
    {
        var g = RandomArray(new Random(5), 10_000, 1f);
        var clipped = (float[])g.Clone();
        double norm = GradientUtilities.ClipGlobalNorm(clipped, 1.0);
        float factor = GradientUtilities.ClipFactor(norm, 1.0);
        Assert.True(factor < 1f);
        Assert.Equal(clipped, g.Select(v => v * factor).ToArray());
        Assert.Equal(1f, GradientUtilities.ClipFactor(0.5, 1.0));
        Assert.Equal(1f, GradientUtilities.ClipFactor(double.NaN, 1.0));
    }

    [Fact]
    public void TrainingSteps_GiveTheSameBitsOnOneTwoAndThreeThreads()
    {
        // Large enough that every split in the step engages: rows of LayerNorm and GELU, bias and embedding
        // columns, the optimizer's pieces and the gradient inspection's chunks.
        var config = new BertConfig(new Architecture(2, 128, 256), 4, 3000, HeadKind.Classification, labels: 2, maxPositions: 64);
        const int batch = 16, T = 64;
        var rng = new Random(7);
        var ids = Enumerable.Range(0, batch * T).Select(_ => rng.Next(1, 300)).ToArray(); // repeated words
        var data = new LabeledBatch(EncoderInput.Unpadded(batch, T, ids), Enumerable.Range(0, batch).Select(i => i % 2).ToArray());
        float[] Train(int threads)
        {
            var model = BertModel.CreateRandom(config, 3);
            var trainer = new Trainer(model, new TrainingOptions { LearningRate = 1e-3f, Seed = 4, Threads = threads, MaxGradNorm = 0.5f }, 10, dropout: 0.1f);
            for (int s = 0; s < 3; s++) Assert.True(trainer.Step(data).OptimizerStepped);
            return model.Parameters;
        }
        var one = Train(1);
        Assert.Equal(one, Train(2));
        Assert.Equal(one, Train(3));
    }
}
