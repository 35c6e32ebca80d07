using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Pipeline;

public class CandidateEvaluatorTests
{
    /// <summary>
    /// The evaluator lends one activation workspace to every candidate (it grows to hold all of them): a candidate's
    /// metric must not depend on which candidates ran before it, or on the workspace's leftover contents.
    /// </summary>
    [Fact]
    public void ACandidateScoresTheSameAfterOthersAsAlone()
    {
        var task = EncodedTask.Load(new DataOptions { Task = BuiltinTask.Name, MaxTrainExamples = 300, MaxDevExamples = 100, MaxSequenceLength = 24 }, seed: 5);
        var largest = new Architecture(2, 32, 48);
        var super = new ElasticSupermodel(BertModel.CreateRandom(task.ConfigFor(largest, 2), 5));
        var fineTune = new FineTuneOptions { Epochs = 1, MaxExamples = 96, BatchSize = 16, LearningRate = 1e-3f };
        // Shapes that do not nest: each one is larger than the one before in some dimension.
        Architecture[] order = [new(1, 32, 16), new(2, 16, 48), new(1, 16, 32), new(2, 32, 48)];
        var shared = new CandidateEvaluator(super, task, fineTune, Precision.Int8, 1);
        var inTurn = order.Select(a => shared.Evaluate(a, seed: 9, CancellationToken.None).Metric).ToList();
        for (int i = 0; i < order.Length; i++)
        {
            var alone = new CandidateEvaluator(super, task, fineTune, Precision.Int8, 1).Evaluate(order[i], seed: 9, CancellationToken.None).Metric;
            Assert.Equal(alone, inTurn[i]);
        }
        // And again in reverse on the grown workspace.
        for (int i = order.Length - 1; i >= 0; i--)
            Assert.Equal(inTurn[i], shared.Evaluate(order[i], seed: 9, CancellationToken.None).Metric);
        // Training on the grown workspace gives the same weights, bit for bit, as on a fresh one.
        var reused = shared.FineTune(order[1], seed: 4).Parameters;
        var fresh = new CandidateEvaluator(super, task, fineTune, Precision.Int8, 1).FineTune(order[1], seed: 4).Parameters;
        Assert.Equal(fresh.Length, reused.Length);
        for (int i = 0; i < fresh.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(fresh[i]), BitConverter.SingleToInt32Bits(reused[i]));
    }
}
