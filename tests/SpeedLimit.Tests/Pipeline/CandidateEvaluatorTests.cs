using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Quantization;
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

    /// <summary>
    /// Candidates fine-tuned in the evaluator's reused memory (parameter, gradient and AdamW moment buffers and the int8
    /// scratch left by larger and smaller candidates, each buffer then filled with NaN) end with the weights and the int8
    /// dev logits of the same candidate trained in buffers of its own, bit for bit, on one and two threads. A value read
    /// before it is written (a gradient not cleared, a moment left from the last candidate) would turn them NaN.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void CandidatesInReusedMemoryTrainAsInFreshBuffers(int threads)
    {
        var task = EncodedTask.Load(new DataOptions { Task = BuiltinTask.Name, MaxTrainExamples = 300, MaxDevExamples = 100, MaxSequenceLength = 24 }, seed: 5);
        var largest = new Architecture(2, 32, 48);
        var super = new ElasticSupermodel(BertModel.CreateRandom(task.ConfigFor(largest, 2), 5));
        var fineTune = new FineTuneOptions { Epochs = 1, MaxExamples = 96, BatchSize = 16, LearningRate = 1e-3f };
        var reusing = new CandidateEvaluator(super, task, fineTune, Precision.Int8, threads);
        Architecture[] order = [new(1, 16, 32), largest, new(2, 16, 48), new(1, 32, 16)];
        foreach (var arch in order)
        {
            var (model, memory) = reusing.FineTuneInMemory(arch, seed: 7, CancellationToken.None);
            var fresh = new CandidateEvaluator(super, task, fineTune, Precision.Int8, threads).FineTune(arch, seed: 7);
            int n = (int)fresh.Layout.TotalLength;
            Assert.Equal(n, fresh.Parameters.Length);
            Assert.Equal(super.Supermodel.Layout.TotalLength, model.Parameters.Length); // storage sized for the largest
            AssertSameBits(fresh.Parameters, model.Parameters.AsSpan(0, n));

            memory.Int8 = new Int8Simulation(model, memory.Int8);
            var logits = task.PredictDev(model, memory.Int8);
            var freshLogits = task.PredictDev(fresh, new Int8Simulation(fresh));
            for (int i = 0; i < logits.Length; i++) AssertSameBits(freshLogits[i], logits[i]);

            // The whole-buffer writers refuse a model whose buffers are longer than its layout.
            if (model.Parameters.Length != n)
                Assert.Throws<ArgumentException>(() => BertCheckpoint.Save(Path.Combine(Path.GetTempPath(), "never-written.safetensors"), model.Config, model.Parameters));

            var (parameters, gradients) = memory.ModelStorage;
            var (first, second) = memory.MomentStorage;
            foreach (var buffer in new[] { parameters, gradients, first, second }) Array.Fill(buffer, float.NaN);
            reusing.GiveBack(memory, model);
        }
    }

    private static void AssertSameBits(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"value {i} differs: {expected[i]:R} expected, {actual[i]:R} found");
    }

    /// <summary>
    /// A candidate's fine-tuned weights and int8 dev logits do not depend on the engine's thread count (every kernel
    /// splits work so that each value is summed in the same order), so a search may run candidates side by side on
    /// fewer threads each without changing any result.
    /// </summary>
    [Fact]
    public void ACandidateTrainsToTheSameBitsOnOneAndTwoThreads()
    {
        var task = EncodedTask.Load(new DataOptions { Task = BuiltinTask.Name, MaxTrainExamples = 300, MaxDevExamples = 100, MaxSequenceLength = 48 }, seed: 5);
        var largest = new Architecture(2, 128, 256); // products large enough to be split over two threads
        var super = new ElasticSupermodel(BertModel.CreateRandom(task.ConfigFor(largest, 2), 5));
        var fineTune = new FineTuneOptions { Epochs = 1, MaxExamples = 96, BatchSize = 32, LearningRate = 1e-3f };
        foreach (var arch in new[] { largest, new Architecture(1, 16, 32) })
        {
            var one = new CandidateEvaluator(super, task, fineTune, Precision.Int8, 1).FineTune(arch, seed: 3);
            var two = new CandidateEvaluator(super, task, fineTune, Precision.Int8, 2).FineTune(arch, seed: 3);
            AssertSameBits(one.Parameters, two.Parameters);
            var logitsOne = task.PredictDev(one, new Int8Simulation(one));
            var logitsTwo = task.PredictDev(two, new Int8Simulation(two));
            for (int i = 0; i < logitsOne.Length; i++) AssertSameBits(logitsOne[i], logitsTwo[i]);
        }
    }
}
