using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pipeline;
using SpeedLimit.Pretrained;
using SpeedLimit.Tests.Model;
using SpeedLimit.Training;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Tests.Pretrained;

public class ImportanceReorderingTests
{
    // Outputs of the permuted model are the same sums in another order: float rounding only.
    // Logits are O(1) here; 2e-5 absolute is ~100× float epsilon times the sum lengths involved.
    private const float Tolerance = 2e-5f;

    private static readonly BertConfig Classifier = new(new Architecture(2, 24, 20), 4, 15, HeadKind.Classification, labels: 3, maxPositions: 8);
    private static readonly BertConfig MaskedLm = new(new Architecture(2, 24, 20), 4, 15, HeadKind.MaskedLm, maxPositions: 8);

    private static int[] Shuffled(Random rng, int n, int block)
    {
        var perm = new int[n];
        for (int s = 0; s < n; s += block)
        {
            var idx = Enumerable.Range(s, block).OrderBy(_ => rng.Next()).ToArray();
            idx.CopyTo(perm, s);
        }
        return perm;
    }

    /// <summary>Random permutations of the chosen groups (identity elsewhere).</summary>
    private static ImportanceOrder RandomOrder(BertConfig c, Random rng, bool residual, bool pooler, bool qk, bool vo, bool ffn)
    {
        var id = ImportanceOrder.Identity(c);
        return new ImportanceOrder(
            residual ? Shuffled(rng, c.Hidden, c.Hidden) : id.Residual,
            c.Head == HeadKind.MaskedLm ? null : pooler ? Shuffled(rng, c.Hidden, c.Hidden) : id.Pooler,
            qk ? id.QueryKey.Select(_ => Shuffled(rng, c.Hidden, c.HeadSize)).ToArray() : id.QueryKey,
            vo ? id.ValueOutput.Select(_ => Shuffled(rng, c.Hidden, c.HeadSize)).ToArray() : id.ValueOutput,
            ffn ? id.Ffn.Select(_ => Shuffled(rng, c.Ffn, c.Ffn)).ToArray() : id.Ffn);
    }

    public static TheoryData<string> GroupNames => new() { "residual", "pooler", "query-key", "value-output", "ffn", "all" };

    [Theory]
    [MemberData(nameof(GroupNames))]
    public void EachPermutationLeavesTheFullModelsOutputsUnchanged(string group)
    {
        var rng = new Random(group.Length * 7 + 1);
        var model = BertModel.CreateRandom(Classifier, 5, std: 0.3f);
        var input = BertModelGradientTests.PaddedBatch(rng, 15, 3, 7, [7, 5, 3]);
        var before = model.Forward(input).ToArray();
        var hiddenBefore = model.HiddenState(Classifier.Layers).ToArray();
        bool all = group == "all";
        var order = RandomOrder(Classifier, rng, all || group == "residual", all || group == "pooler", all || group == "query-key", all || group == "value-output", all || group == "ffn");
        var original = model.Parameters.ToArray();
        ImportanceReordering.Apply(model, order);
        Assert.NotEqual(original, model.Parameters); // something moved

        var after = model.Forward(input).ToArray();
        for (int i = 0; i < before.Length; i++) Assert.True(Math.Abs(before[i] - after[i]) <= Tolerance, $"{group}: logit {i} {before[i]} → {after[i]}");
        // The last hidden state is the old one with its channels permuted by the residual order.
        var hiddenAfter = model.HiddenState(Classifier.Layers);
        int H = Classifier.Hidden;
        for (int n = 0; n < input.Tokens; n++)
            for (int c = 0; c < H; c++)
                Assert.True(Math.Abs(hiddenAfter[n * H + c] - hiddenBefore[n * H + order.Residual[c]]) <= Tolerance, $"{group}: token {n} channel {c}");
    }

    [Fact]
    public void MaskedLmModelKeepsItsOutputsUnderAllPermutations()
    {
        var rng = new Random(21);
        var model = BertModel.CreateRandom(MaskedLm, 6, std: 0.3f);
        var input = BertModelGradientTests.PaddedBatch(rng, 15, 2, 6, [6, 4]);
        int[] positions = [1, 3, 8];
        var before = model.Forward(input, mlmPositions: positions).ToArray();
        ImportanceReordering.Apply(model, RandomOrder(MaskedLm, rng, true, false, true, true, true));
        var after = model.Forward(input, mlmPositions: positions).ToArray();
        for (int i = 0; i < before.Length; i++) Assert.True(Math.Abs(before[i] - after[i]) <= Tolerance, $"MLM logit {i} {before[i]} → {after[i]}");
    }

    [Fact]
    public void PermutingOnlyOneSideOfAPairChangesTheOutputs()
    {
        // The preservation tests can fail: moving Q's rows without K's (or FFN rows without the output columns) changes the model.
        var rng = new Random(3);
        var model = BertModel.CreateRandom(Classifier, 5, std: 0.3f);
        var input = BertModelGradientTests.PaddedBatch(rng, 15, 3, 7, [7, 5, 3]);
        var before = model.Forward(input).ToArray();
        var q = model.Tensor(N.Query(0, "weight"));
        int H = Classifier.Hidden;
        var row0 = q[..H].ToArray(); q.Slice(H, H).CopyTo(q[..H]); row0.CopyTo(q.Slice(H, H)); // swap Q rows 0 and 1 only
        var after = model.Forward(input).ToArray();
        Assert.True(before.Zip(after).Max(p => Math.Abs(p.First - p.Second)) > 1e-3, "swapping Q rows without K rows should change the logits");
    }

    [Fact]
    public void OrdersAreValidatedAndSortedByScoreWithinHeads()
    {
        var c = Classifier;
        var bad = ImportanceOrder.Identity(c) with { QueryKey = [Enumerable.Range(0, c.Hidden).Reverse().ToArray(), Enumerable.Range(0, c.Hidden).ToArray()] };
        var ex = Assert.Throws<ArgumentException>(() => bad.Validate(c));
        Assert.Contains("inside each head", ex.Message);
        Assert.Throws<ArgumentException>(() => (ImportanceOrder.Identity(c) with { Residual = new int[c.Hidden] }).Validate(c));

        var model = BertModel.CreateRandom(c, 9, std: 0.3f);
        var scores = ImportanceReordering.MagnitudeScores(model);
        var order = ImportanceReordering.OrderFrom(scores, c);
        for (int i = 1; i < c.Hidden; i++) Assert.True(scores.Residual[order.Residual[i - 1]] >= scores.Residual[order.Residual[i]]);
        for (int i = 0; i < c.Hidden; i++)
        {
            Assert.Equal(i / c.HeadSize, order.QueryKey[1][i] / c.HeadSize);
            if (i % c.HeadSize > 0) Assert.True(scores.QueryKey[1][order.QueryKey[1][i - 1]] >= scores.QueryKey[1][order.QueryKey[1][i]]);
        }
        Assert.Equal(c.Ffn, scores.Ffn[0].Length);
    }

    [Fact]
    public void GradientImportanceEqualsTheLossChangeOfZeroingAUnitToFirstOrder()
    {
        // Independent reference: zero an FFN neuron's weights by ε-scaling, measure the loss by finite difference.
        // d/dα L(α·w_unit) at α=1 equals Σ w·g over the unit, the quantity gradient importance takes |·| of.
        var rng = new Random(17);
        var model = BertModel.CreateRandom(Classifier, 4, std: 0.3f);
        var input = BertModelGradientTests.PaddedBatch(rng, 15, 4, 6, [6, 6, 4, 2]);
        var batch = new LabeledBatch(input, [0, 1, 2, 1]);
        var scores = ImportanceReordering.GradientScores(model, [batch]);
        double Loss() => Losses.SoftmaxCrossEntropy(model.Forward(input), batch.Labels!, 3);
        int l = 1, neuron = 7, H = Classifier.Hidden, F = Classifier.Ffn;
        var wi = model.Tensor(N.Intermediate(l, "weight")).Slice(neuron * H, H).ToArray();
        float bi = model.Tensor(N.Intermediate(l, "bias"))[neuron];
        var wo = Enumerable.Range(0, H).Select(r => model.Tensor(N.Output(l, "weight"))[r * F + neuron]).ToArray();
        void Scale(double a)
        {
            for (int c = 0; c < H; c++) model.Tensor(N.Intermediate(l, "weight"))[neuron * H + c] = (float)(a * wi[c]);
            model.Tensor(N.Intermediate(l, "bias"))[neuron] = (float)(a * bi);
            for (int r = 0; r < H; r++) model.Tensor(N.Output(l, "weight"))[r * F + neuron] = (float)(a * wo[r]);
        }
        const double eps = 1e-2;
        Scale(1 + eps); double up = Loss();
        Scale(1 - eps); double down = Loss();
        Scale(1);
        double fd = Math.Abs((up - down) / (2 * eps));
        Assert.True(Math.Abs(fd - scores.Ffn[l][neuron]) <= 2e-3 * Math.Max(1e-3, fd) + 1e-5, $"finite difference {fd:G6} vs importance {scores.Ffn[l][neuron]:G6}");
    }
}

public class ImportanceSlicingTests
{
    /// <summary>Dev cross-entropy of a sub-model taken as a leading slice of <paramref name="model"/>.</summary>
    private static double SliceLoss(BertModel model, Architecture arch, EncodedTask task)
    {
        var sub = new ElasticSupermodel(model).Extract(arch);
        var logits = task.PredictDev(sub);
        var flat = logits.SelectMany(r => r).ToArray();
        return Losses.SoftmaxCrossEntropy(flat, task.Dev.Select(e => e.ClassId).ToArray(), model.Config.Labels);
    }

    [Theory]
    [InlineData(ImportanceKind.Gradient)]
    [InlineData(ImportanceKind.Magnitude)]
    public void ReorderedLeadingSlicesLoseLessThanUnorderedSlicesOnTaskData(ImportanceKind kind)
    {
        var (model, task) = TrainedBuiltinModel.Value;
        var reordered = new BertModel(model.Config, model.Parameters.ToArray()) { Threads = 2 };
        ImportanceReordering.Reorder(reordered, kind, task.TrainBatches(32, seed: 5, epoch: 0).Take(8));
        double full = SliceLoss(model, model.Config.Arch, task), fullReordered = SliceLoss(reordered, model.Config.Arch, task);
        Assert.True(Math.Abs(full - fullReordered) < 1e-4, $"full model loss {full} changed to {fullReordered} by reordering");
        // Width cuts of every kind (FFN only, hidden only, both). Measured (seed 3, 6 epochs × 3000 examples):
        // full 0.577; unordered 0.609 / 0.631 / 0.892 / 0.667; gradient 0.578 / 0.583 / 0.765 / 0.645;
        // magnitude 0.587 / 0.601 / 0.718 / 0.619.
        var lines = new List<string>();
        double excessPlain = 0, excessOrdered = 0;
        bool all = true;
        foreach (var arch in new[] { new Architecture(2, 64, 64), new Architecture(2, 64, 32), new Architecture(2, 48, 128), new Architecture(2, 56, 96) })
        {
            double plain = SliceLoss(model, arch, task), ordered = SliceLoss(reordered, arch, task);
            lines.Add($"{arch}: unordered {plain:F3}, reordered {ordered:F3}");
            all &= ordered < plain;
            excessPlain += plain - full;
            excessOrdered += ordered - full;
        }
        string summary = $"{kind} (full {full:F3}): {string.Join("; ", lines)}";
        Console.WriteLine(summary);
        Assert.True(all, $"a reordered slice lost more than the unordered one: {summary}");
        Assert.True(excessOrdered <= 0.75 * excessPlain, $"reordering should remove at least a quarter of the slices' extra loss: {summary}");
    }

    /// <summary>A (2,64,128) model trained briefly on the built-in task (shared by the theory's cases).</summary>
    private static readonly Lazy<(BertModel Model, EncodedTask Task)> TrainedBuiltinModel = new(() =>
    {
        var task = new EncodedTask(BuiltinTask.Generate(new BuiltinTaskOptions { TrainSize = 3000, DevSize = 500 }), BuiltinTask.Encoder, maxLength: 32);
        var model = BertModel.CreateRandom(task.ConfigFor(new Architecture(2, 64, 128), heads: 4), seed: 3);
        const int epochs = 6, batch = 32;
        var trainer = new Trainer(model, new TrainingOptions { LearningRate = 1e-3f, Seed = 3, Threads = 2 }, epochs * ((task.Train.Count + batch - 1) / batch), dropout: 0.1f);
        for (int e = 0; e < epochs; e++)
            foreach (var b in task.TrainBatches(batch, 3, e)) trainer.Step(b);
        return (model, task);
    });
}
