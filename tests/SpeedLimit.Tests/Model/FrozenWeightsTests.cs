using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Tests.Model;

/// <summary><see cref="BertModel.FreezeWeights"/>: pre-packed weights give the same bits, follow the weights across optimizer steps, and guard against training.</summary>
public class FrozenWeightsTests
{
    private static (BertModel Model, LabeledBatch Batch) Setup(int seed, int batch = 6, int T = 24)
    {
        var config = new BertConfig(new Architecture(2, 96, 160), 4, 50, HeadKind.Classification, labels: 3, maxPositions: 32);
        var model = BertModel.CreateRandom(config, seed, std: 0.1f);
        model.Threads = 2;
        var rng = new Random(seed);
        var ids = Enumerable.Range(0, batch * T).Select(_ => rng.Next(1, 50)).ToArray();
        return (model, new LabeledBatch(EncoderInput.Unpadded(batch, T, ids), Enumerable.Range(0, batch).Select(i => i % 3).ToArray()));
    }

    [Fact]
    public void FrozenPassesGiveTheSameLogitsAndGradientsBitForBit()
    {
        var (model, batch) = Setup(1);
        var dLogits = Enumerable.Range(0, batch.Input.Batch * 3).Select(i => (i % 5 - 2) * 0.1f).ToArray();
        var logits = model.Forward(batch.Input).ToArray();
        model.ZeroGradients();
        model.Backward(dLogits);
        var grads = model.Gradients.ToArray();
        using (model.FreezeWeights())
        {
            Assert.True(model.WeightsFrozen);
            for (int pass = 0; pass < 2; pass++) // the second pass reuses the packings the first made
            {
                Assert.Equal(logits, model.Forward(batch.Input).ToArray());
                model.ZeroGradients();
                model.Backward(dLogits);
                Assert.Equal(grads, model.Gradients);
            }
        }
        Assert.False(model.WeightsFrozen);
    }

    [Fact]
    public void AccumulationGroupsRepackAfterEachOptimizerStep()
    {
        var (model, batch) = Setup(2);
        var trainer = new Trainer(model, new TrainingOptions { LearningRate = 1e-2f, AccumulationSteps = 2, Seed = 3 }, 10, dropout: 0f);
        trainer.Step(batch);
        Assert.True(model.WeightsFrozen); // mid-group: one packing for both micro-batches
        Assert.True(trainer.Step(batch).OptimizerStepped);
        Assert.False(model.WeightsFrozen);
        // The next group's passes must see the stepped weights, not the packings of the group before.
        var copy = new BertModel(model.Config, model.Parameters.ToArray()) { Threads = 1 };
        copy.Forward(batch.Input);
        trainer.Step(batch);
        for (int i = 0; i <= model.Config.Layers; i++) Assert.Equal(copy.HiddenState(i).ToArray(), model.HiddenState(i).ToArray());
    }

    [Fact]
    public void TrainingAFrozenModelFailsLoudly()
    {
        var (model, batch) = Setup(3);
        var trainer = new Trainer(model, new TrainingOptions { Seed = 1 }, 10, dropout: 0f);
        using var frozen = model.FreezeWeights();
        var e = Assert.Throws<InvalidOperationException>(() => trainer.Step(batch));
        Assert.Contains("frozen", e.Message);
    }
}
