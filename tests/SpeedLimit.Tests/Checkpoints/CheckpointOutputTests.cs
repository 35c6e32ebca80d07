using SpeedLimit.Checkpoints;
using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Tests.Checkpoints;

public class CheckpointOutputTests
{
    [Fact]
    public void SavedAndLoadedModelReproducesOutputsExactly()
    {
        var config = new BertConfig(new Architecture(2, 24, 40), 4, 50, HeadKind.Classification, labels: 3, maxPositions: 16);
        var model = BertModel.CreateRandom(config, 9);
        // train a few steps so the weights are not just the initialization
        var rng = new Random(1);
        var input = EncoderInput.Unpadded(4, 8, Enumerable.Range(0, 32).Select(_ => rng.Next(1, 50)).ToArray());
        var trainer = new Trainer(model, new TrainingOptions { LearningRate = 1e-3f }, 5);
        for (int i = 0; i < 5; i++) trainer.Step(new LabeledBatch(input, [0, 1, 2, 1]));
        var path = Path.Combine(Path.GetTempPath(), $"ckpt-{Guid.NewGuid():N}.safetensors");
        try
        {
            BertCheckpoint.Save(path, config, model.Parameters);
            var loaded = BertCheckpoint.Load(path);
            Assert.Equal(config, loaded.Config);
            var restored = new BertModel(loaded.Config, loaded.Parameters);
            Assert.Equal(model.Forward(input).ToArray(), restored.Forward(input).ToArray());
        }
        finally { File.Delete(path); }
    }
}
