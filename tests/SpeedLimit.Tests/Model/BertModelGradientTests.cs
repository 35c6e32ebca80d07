using SpeedLimit.Model;
using static SpeedLimit.Tests.Model.FiniteDifference;

namespace SpeedLimit.Tests.Model;

/// <summary>The whole model's backward against finite differences, for each head type.</summary>
public class BertModelGradientTests
{
    internal static EncoderInput PaddedBatch(Random rng, int vocab, int batch, int T, int[] lengths)
    {
        var ids = new int[batch * T]; var types = new int[batch * T]; var mask = new int[batch * T];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < T; t++)
            {
                int i = b * T + t;
                bool real = t < lengths[b];
                ids[i] = real ? rng.Next(1, vocab) : 0;
                types[i] = real && t >= lengths[b] / 2 ? 1 : 0;
                mask[i] = real ? 1 : 0;
            }
        return new EncoderInput(batch, T, ids, types, mask);
    }

    private static void CheckAllTensors(BertModel model, Func<double> loss, Random rng, int samples)
    {
        foreach (var t in model.Layout.Tensors)
            Check(t.Name, loss, model.Parameters, (int)t.Offset, (int)t.Length, model.Gradients, (int)t.Offset, rng, samples);
    }

    [Theory]
    [InlineData(HeadKind.Classification, 0f)]
    [InlineData(HeadKind.Classification, 0.2f)]
    [InlineData(HeadKind.Regression, 0f)]
    public void SequenceHeadsMatchFiniteDifferences(HeadKind head, float dropout)
    {
        var rng = new Random(11);
        var config = new BertConfig(new Architecture(2, 12, 10), 3, 17, head, labels: 3, maxPositions: 8);
        var model = BertModel.CreateRandom(config, seed: 5, std: 0.5f);
        var input = PaddedBatch(rng, 17, 3, 6, [6, 4, 2]);
        var c = RandomArray(rng, 3 * config.Labels);
        double Loss() => Dot(model.Forward(input, dropout, dropoutSeed: 99), c);
        Loss();
        model.ZeroGradients();
        model.Backward(c);
        CheckAllTensors(model, Loss, rng, samples: 6);
    }

    [Fact]
    public void MaskedLmHeadAndHiddenGradientsMatchFiniteDifferences()
    {
        var rng = new Random(12);
        var config = new BertConfig(new Architecture(2, 8, 12), 2, 11, HeadKind.MaskedLm, maxPositions: 8);
        var model = BertModel.CreateRandom(config, seed: 6, std: 0.5f);
        var input = PaddedBatch(rng, 11, 2, 5, [5, 3]);
        int[] positions = [0, 3, 6];
        var c = RandomArray(rng, positions.Length * 11);
        var h1 = RandomArray(rng, 2 * 5 * 8); // extra loss term Σ h1 ⊙ hidden state 1
        double Loss()
        {
            double l = Dot(model.Forward(input, 0f, 0, positions), c);
            return l + Dot(model.HiddenState(1), h1);
        }
        Loss();
        model.ZeroGradients();
        model.Backward(c, [null, h1, null]);
        CheckAllTensors(model, Loss, rng, samples: 6);
    }

    [Fact]
    public void PaddingDoesNotChangeRealTokensLogits()
    {
        var rng = new Random(13);
        var config = new BertConfig(new Architecture(2, 12, 16), 3, 20, HeadKind.Classification, labels: 2, maxPositions: 16);
        var model = BertModel.CreateRandom(config, seed: 7, std: 0.2f);
        var shortInput = PaddedBatch(rng, 20, 1, 4, [4]);
        var logitsShort = model.Forward(shortInput).ToArray();
        var padded = new EncoderInput(1, 9, [.. shortInput.InputIds, 0, 0, 0, 0, 0], [.. shortInput.TokenTypeIds, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0, 0]);
        var logitsPadded = model.Forward(padded).ToArray();
        for (int i = 0; i < 2; i++) Assert.Equal(logitsShort[i], logitsPadded[i], 1e-4f);
    }

    [Fact]
    public void BadInputsAreRejectedClearly()
    {
        var config = new BertConfig(new Architecture(1, 8, 8), 2, 10, HeadKind.Classification, maxPositions: 4);
        var model = BertModel.CreateRandom(config, 1);
        Assert.Contains("outside the vocabulary", Assert.Throws<ArgumentException>(() => model.Forward(EncoderInput.Unpadded(1, 2, [3, 10]))).Message);
        Assert.Contains("exceeds the model's 4 positions", Assert.Throws<ArgumentException>(() => model.Forward(EncoderInput.Unpadded(1, 5, [1, 1, 1, 1, 1]))).Message);
        Assert.Contains("batch×sequence", Assert.Throws<ArgumentException>(() => model.Forward(EncoderInput.Unpadded(2, 2, [1, 1, 1, 1]) with { InputIds = [1] })).Message);
    }
}
