using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Tests.Training;

public class TrainerTests
{
    private static LabeledBatch TinyBatch(Random rng, int vocab, int batch, int T, int labels)
    {
        var ids = Enumerable.Range(0, batch * T).Select(_ => rng.Next(1, vocab)).ToArray();
        return new LabeledBatch(EncoderInput.Unpadded(batch, T, ids), Enumerable.Range(0, batch).Select(i => i % labels).ToArray());
    }

    [Fact]
    public void TinyModelOverfitsASmallBatch()
    {
        var rng = new Random(1);
        var config = new BertConfig(new Architecture(2, 32, 64), 4, 30, HeadKind.Classification, labels: 3, maxPositions: 16);
        var model = BertModel.CreateRandom(config, seed: 1);
        var batch = TinyBatch(rng, 30, 6, 8, 3);
        var trainer = new Trainer(model, new TrainingOptions { LearningRate = 3e-3f, WarmupRatio = 0.05f, WeightDecay = 0f, Seed = 1 }, totalOptimizerSteps: 150, dropout: 0f);
        float first = trainer.Step(batch).Loss, last = first;
        for (int i = 1; i < 150; i++) last = trainer.Step(batch).Loss;
        Assert.True(first > 0.8f, $"initial loss {first} should be near ln 3");
        Assert.True(last < 0.02f, $"loss after 150 steps is {last}, expected near zero");
    }

    [Fact]
    public void RegressionOverfitsAndAccumulationMatchesOneBigBatch()
    {
        var rng = new Random(2);
        var config = new BertConfig(new Architecture(1, 16, 32), 2, 20, HeadKind.Regression, maxPositions: 8);
        var ids = Enumerable.Range(0, 4 * 6).Select(_ => rng.Next(1, 20)).ToArray();
        var targets = new float[] { 0.5f, -1f, 2f, 1f };
        var full = new LabeledBatch(EncoderInput.Unpadded(4, 6, ids), Targets: targets);
        LabeledBatch Half(int h) => new(EncoderInput.Unpadded(2, 6, ids[(h * 12)..(h * 12 + 12)]), Targets: targets[(h * 2)..(h * 2 + 2)]);

        var a = BertModel.CreateRandom(config, 3);
        var b = BertModel.CreateRandom(config, 3);
        var ta = new Trainer(a, new TrainingOptions { LearningRate = 3e-3f, Seed = 1 }, 301, dropout: 0f);
        var tb = new Trainer(b, new TrainingOptions { LearningRate = 3e-3f, Seed = 1, AccumulationSteps = 2 }, 301, dropout: 0f);
        ta.Step(full);
        Assert.False(tb.Step(Half(0)).OptimizerStepped);
        Assert.True(tb.Step(Half(1)).OptimizerStepped);
        for (int i = 0; i < a.Parameters.Length; i++) Assert.Equal(a.Parameters[i], b.Parameters[i], 2e-6f);

        float last = 0;
        for (int i = 0; i < 300; i++) last = ta.Step(full).Loss;
        Assert.True(last < 0.01f, $"regression loss {last} did not approach zero");
    }

    [Fact]
    public void NonFiniteGradientsAreReportedAndNotTrainedOn()
    {
        var config = new BertConfig(new Architecture(1, 8, 8), 2, 10, HeadKind.Classification, maxPositions: 4);
        var model = BertModel.CreateRandom(config, 4);
        model.Tensor(BertParameterLayout.Names.ClassifierWeight)[0] = float.NaN;
        var before = (float[])model.Parameters.Clone();
        var trainer = new Trainer(model, new TrainingOptions { LearningRate = 1e-3f }, 10, dropout: 0f);
        var result = trainer.Step(TinyBatch(new Random(5), 10, 2, 4, 2));
        Assert.NotNull(result.SkippedNonFinite);
        Assert.False(result.OptimizerStepped);
        Assert.Equal(1, trainer.SkippedSteps);
        Assert.Equal(before, model.Parameters); // float.Equals treats NaN as equal to itself
    }
}
