using SpeedLimit.Model;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Tests.Model;

public class ElasticSupermodelTests
{
    private static readonly BertConfig SuperConfig = new(new Architecture(3, 24, 20), 4, 15, HeadKind.Classification, labels: 3, maxPositions: 8);

    [Fact]
    public void ExtractionFollowsTheSlicingRulesTensorByTensor()
    {
        var super = new ElasticSupermodel(BertModel.CreateRandom(SuperConfig, 1, 1f));
        var arch = new Architecture(2, 16, 12); // head size 6 → 4
        var sub = super.Extract(arch);
        var S = super.Supermodel;
        // Written from the rules directly (independent of the segment builder):
        // query rows per head: sub row j*4+d ← super row j*6+d; columns leading.
        var qs = S.Tensor(N.Query(1, "weight")); var qd = sub.Tensor(N.Query(1, "weight"));
        for (int j = 0; j < 4; j++) for (int d = 0; d < 4; d++) for (int c = 0; c < 16; c++)
            Assert.Equal(qs[(j * 6 + d) * 24 + c], qd[(j * 4 + d) * 16 + c]);
        var bs = S.Tensor(N.Value(0, "bias")); var bd = sub.Tensor(N.Value(0, "bias"));
        for (int j = 0; j < 4; j++) for (int d = 0; d < 4; d++) Assert.Equal(bs[j * 6 + d], bd[j * 4 + d]);
        // attention output: rows leading, columns per head
        var os = S.Tensor(N.AttentionOutput(1, "weight")); var od = sub.Tensor(N.AttentionOutput(1, "weight"));
        for (int r = 0; r < 16; r++) for (int j = 0; j < 4; j++) for (int d = 0; d < 4; d++)
            Assert.Equal(os[r * 24 + j * 6 + d], od[r * 16 + j * 4 + d]);
        // FFN W[:f, :h] and W[:h, :f]
        var fs = S.Tensor(N.Intermediate(0, "weight")); var fd = sub.Tensor(N.Intermediate(0, "weight"));
        for (int r = 0; r < 12; r++) for (int c = 0; c < 16; c++) Assert.Equal(fs[r * 24 + c], fd[r * 16 + c]);
        var gs = S.Tensor(N.Output(1, "weight")); var gd = sub.Tensor(N.Output(1, "weight"));
        for (int r = 0; r < 16; r++) for (int c = 0; c < 12; c++) Assert.Equal(gs[r * 20 + c], gd[r * 12 + c]);
        // embeddings keep every row, leading hidden columns; classifier keeps every label row
        var es = S.Tensor(N.WordEmbeddings); var ed = sub.Tensor(N.WordEmbeddings);
        for (int r = 0; r < 15; r++) for (int c = 0; c < 16; c++) Assert.Equal(es[r * 24 + c], ed[r * 16 + c]);
        var cs = S.Tensor(N.ClassifierWeight); var cd = sub.Tensor(N.ClassifierWeight);
        for (int r = 0; r < 3; r++) for (int c = 0; c < 16; c++) Assert.Equal(cs[r * 24 + c], cd[r * 16 + c]);
        Assert.False(sub.Layout.Contains(N.Query(2, "weight")));
    }

    [Fact]
    public void SlicedViewAndExtractedCopyAgreeOnOutputsAndGradients()
    {
        var rng = new Random(3);
        var super = new ElasticSupermodel(BertModel.CreateRandom(SuperConfig, 2, 0.3f));
        var arch = new Architecture(2, 12, 8);
        var input = BertModelGradientTests.PaddedBatch(rng, 15, 2, 5, [5, 3]);
        var dLogits = FiniteDifference.RandomArray(rng, 2 * 3);

        // the view: a reusable compact model gathered from the supermodel, gradients scattered back
        var view = new BertModel(super.SubConfig(arch));
        super.Gather(view);
        var viewLogits = view.Forward(input).ToArray();
        view.ZeroGradients();
        view.Backward(dLogits);
        super.Supermodel.ZeroGradients();
        super.AccumulateGradients(view);

        var copy = super.Extract(arch);
        Assert.Equal(viewLogits, copy.Forward(input).ToArray());
        copy.ZeroGradients();
        copy.Backward(dLogits);

        // Every copy gradient appears at its super slice; everything else stays zero.
        var touched = new bool[super.Supermodel.Parameters.Length];
        foreach (var s in super.SegmentsFor(arch))
            for (int i = 0; i < s.Length; i++)
            {
                Assert.Equal(copy.Gradients[s.SubOffset + i], super.Supermodel.Gradients[s.SuperOffset + i]);
                touched[s.SuperOffset + i] = true;
            }
        for (int i = 0; i < touched.Length; i++)
            if (!touched[i]) Assert.Equal(0f, super.Supermodel.Gradients[i]);
        Assert.Equal(copy.Parameters.Length, super.SegmentsFor(arch).Sum(s => (long)s.Length));
    }

    [Fact]
    public void FullArchitectureReproducesTheSupermodel()
    {
        var rng = new Random(4);
        var super = new ElasticSupermodel(BertModel.CreateRandom(SuperConfig, 3, 0.3f));
        var input = BertModelGradientTests.PaddedBatch(rng, 15, 2, 6, [6, 2]);
        Assert.Equal(super.Supermodel.Forward(input).ToArray(), super.Extract(SuperConfig.Arch).Forward(input).ToArray());
        Assert.Throws<ArgumentException>(() => super.Extract(new Architecture(4, 24, 20)));
        Assert.Throws<ArgumentException>(() => super.Extract(new Architecture(1, 10, 20))); // 10 not divisible by 4 heads
    }
}
