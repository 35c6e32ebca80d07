using SpeedLimit.Model;
using SpeedLimit.Search;
using SpeedLimit.Training;

namespace SpeedLimit.Tests.Training;

public class SupermodelTrainerTests
{
    [Fact]
    public void SandwichTrainingTeachesLargestAndSmallestSubModels()
    {
        // Toy task: label 1 when token 3 occurs anywhere in the sequence.
        var rng = new Random(7);
        int vocab = 12, T = 8, batch = 32;
        LabeledBatch MakeBatch()
        {
            var ids = new int[batch * T]; var labels = new int[batch];
            for (int b = 0; b < batch; b++)
            {
                labels[b] = rng.Next(2);
                for (int t = 0; t < T; t++) ids[b * T + t] = 4 + rng.Next(vocab - 4);
                if (labels[b] == 1) ids[b * T + 1 + rng.Next(T - 1)] = 3;
            }
            return new LabeledBatch(EncoderInput.Unpadded(batch, T, ids), labels);
        }
        var space = new SearchSpace(new(1, 2, 1), new(8, 24, 8), new(16, 48, 16), 2);
        var config = new BertConfig(space.Largest, 2, vocab, HeadKind.Classification, maxPositions: T);
        var super = new ElasticSupermodel(BertModel.CreateRandom(config, 3));
        var trainer = new SupermodelTrainer(super, space, new TrainingOptions { LearningRate = 3e-3f, WeightDecay = 0f, Seed = 3 },
            new SupermodelOptions { RandomSubModels = 1, Dropout = 0f }, totalSteps: 150);
        var sampler = new Random(11);
        for (int i = 0; i < 150; i++) trainer.Step(MakeBatch(), sampler);
        Assert.Equal(150, trainer.Steps);

        var test = MakeBatch();
        foreach (var arch in new[] { space.Largest, space.Smallest })
        {
            var logits = super.Extract(arch).Forward(test.Input).ToArray();
            int correct = Enumerable.Range(0, batch).Count(b => (logits[2 * b + 1] > logits[2 * b] ? 1 : 0) == test.Labels![b]);
            Assert.True(correct >= 29, $"{arch}: {correct}/{batch} correct after sandwich training");
        }
    }

    [Fact]
    public void SandwichAlwaysHoldsLargestAndSmallest()
    {
        var space = new SearchSpace(new(1, 3, 1), new(8, 32, 8), new(16, 64, 16), 2);
        var super = new ElasticSupermodel(BertModel.CreateRandom(new BertConfig(space.Largest, 2, 10, HeadKind.Classification, maxPositions: 4), 1));
        var trainer = new SupermodelTrainer(super, space, new TrainingOptions(), new SupermodelOptions { RandomSubModels = 3 }, 10);
        var archs = trainer.SampleSandwich(new Random(1));
        Assert.Equal(5, archs.Count);
        Assert.Equal(space.Largest, archs[0]);
        Assert.Equal(space.Smallest, archs[1]);
        Assert.All(archs, a => Assert.True(space.Contains(a)));
        var wrongHeads = new SearchSpace(new(1, 3, 1), new(9, 27, 9), new(16, 64, 16), 3);
        Assert.Throws<ArgumentException>(() => new SupermodelTrainer(super, wrongHeads, new TrainingOptions(), new SupermodelOptions(), 10));
    }
}

public class HiddenDistillationTests
{
    [Fact]
    public void GradientsMatchTheMseOfLeadingChannelsOfTheMappedTeacherLayers()
    {
        var rng = new Random(5);
        var student = BertModel.CreateRandom(new BertConfig(new Architecture(2, 8, 8), 2, 10, HeadKind.Classification, maxPositions: 4), 1, std: 0.3f);
        var input = EncoderInput.Unpadded(2, 3, Enumerable.Range(0, 6).Select(_ => rng.Next(10)).ToArray());
        student.Forward(input);
        int tokens = 6, H = 12, E = 4; // teacher: 4 layers of width 12
        var teacher = Enumerable.Range(0, E + 1).Select(_ => Enumerable.Range(0, tokens * H).Select(_ => (float)rng.NextDouble()).ToArray()).ToArray();
        const float weight = 0.7f;
        var grads = SupermodelTrainer.HiddenDistillation(student, teacher, tokens, weight);
        Assert.Null(grads[0]); // the embeddings output is not matched
        foreach (var (l, j) in new[] { (1, 2), (2, 4) }) // round(l·4/2)
        {
            var s = student.HiddenState(l);
            for (int n = 0; n < tokens; n++)
                for (int c = 0; c < 8; c++)
                {
                    // d/ds of (weight/e)·mean((s − t)²) over tokens × 8 values
                    double expected = weight / 2.0 * 2 * (s[n * 8 + c] - teacher[j][n * H + c]) / (tokens * 8);
                    Assert.Equal(expected, grads[l]![n * 8 + c], 6);
                }
        }
    }
}
