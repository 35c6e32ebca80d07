using SpeedLimit.Training;

namespace SpeedLimit.Tests.Training;

/// <summary>
/// Each loss against an independent double-precision reference written from the formula:
/// the loss value must match it, and the analytic gradient must match central finite
/// differences of the reference (h = 1e-4 in double, truncation error ~1e-8) and of the float
/// implementation itself (h = 1e-2, float rounding makes 2e-3 the honest tolerance).
/// Gradient spans are pre-filled so the tests also prove backward accumulates (+=).
/// </summary>
public class LossesTests
{
    private const double RefTol = 2e-5;   // float analytic vs double FD of the reference
    private const double SelfTol = 2e-3;  // float analytic vs float FD of the implementation

    private static float[] RandomArray(Random rng, int n, double scale) =>
        Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();

    // ---- references (double, naive formulas) ----

    private static double RefCrossEntropy(double[] z, int[] labels, int c)
    {
        double total = 0; int counted = 0;
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] == Losses.IgnoreIndex) continue;
            double max = double.NegativeInfinity;
            for (int j = 0; j < c; j++) max = Math.Max(max, z[i * c + j]);
            double s = 0;
            for (int j = 0; j < c; j++) s += Math.Exp(z[i * c + j] - max);
            total += -(z[i * c + labels[i]] - max - Math.Log(s));
            counted++;
        }
        return counted == 0 ? 0 : total / counted;
    }

    private static double RefMse(double[] p, double[] t) =>
        p.Select((v, i) => (v - t[i]) * (v - t[i])).Sum() / p.Length;

    private static double[] Softmax(double[] z, int offset, int c, double temp)
    {
        var r = new double[c];
        double max = double.NegativeInfinity;
        for (int j = 0; j < c; j++) max = Math.Max(max, z[offset + j] / temp);
        double s = 0;
        for (int j = 0; j < c; j++) s += r[j] = Math.Exp(z[offset + j] / temp - max);
        for (int j = 0; j < c; j++) r[j] /= s;
        return r;
    }

    private static double RefDistill(double[] s, double[] t, int c, double temp, int[]? labels)
    {
        int n = s.Length / c; double total = 0; int counted = 0;
        for (int i = 0; i < n; i++)
        {
            if (labels is not null && labels[i] == Losses.IgnoreIndex) continue;
            var ps = Softmax(s, i * c, c, temp); var pt = Softmax(t, i * c, c, temp);
            for (int j = 0; j < c; j++) total += pt[j] * (Math.Log(pt[j]) - Math.Log(ps[j]));
            counted++;
        }
        return counted == 0 ? 0 : temp * temp * total / counted;
    }

    // ---- checks ----

    private delegate float Impl(float[] x, float[] grad);

    private static void CheckGradient(float[] x, Func<double[], double> reference, Impl impl, float gradScale)
    {
        var rng = new Random(99);
        var prefill = RandomArray(rng, x.Length, 1);
        var grad = (float[])prefill.Clone();
        float loss = impl(x, grad);

        var xd = x.Select(v => (double)v).ToArray();
        double refLoss = reference(xd);
        Assert.True(Math.Abs(loss - refLoss) <= 1e-5 * Math.Max(1, Math.Abs(refLoss)), $"loss {loss} vs reference {refLoss}");

        for (int i = 0; i < x.Length; i++)
        {
            double analytic = grad[i] - prefill[i];
            var plus = (double[])xd.Clone(); plus[i] += 1e-4;
            var minus = (double[])xd.Clone(); minus[i] -= 1e-4;
            double fdRef = gradScale * (reference(plus) - reference(minus)) / 2e-4;
            Assert.True(Math.Abs(analytic - fdRef) <= RefTol * Math.Max(1, Math.Abs(fdRef)), $"element {i}: analytic {analytic} vs reference FD {fdRef}");

            var xp = (float[])x.Clone(); xp[i] += 1e-2f;
            var xm = (float[])x.Clone(); xm[i] -= 1e-2f;
            double fdSelf = gradScale * ((double)impl(xp, []) - impl(xm, [])) / 2e-2;
            Assert.True(Math.Abs(analytic - fdSelf) <= SelfTol * Math.Max(1, Math.Abs(fdSelf)), $"element {i}: analytic {analytic} vs own FD {fdSelf}");
        }
    }

    [Fact]
    public void CrossEntropy_WithIgnoredRows_MatchesReferenceAndFiniteDifferences()
    {
        var rng = new Random(1);
        const int n = 6, c = 7;
        var logits = RandomArray(rng, n * c, 3);
        int[] labels = [3, Losses.IgnoreIndex, 0, 6, Losses.IgnoreIndex, 2];
        CheckGradient(logits, z => RefCrossEntropy(z, labels, c),
            (x, g) => Losses.SoftmaxCrossEntropy(x, labels, c, g, gradScale: 0.5f), 0.5f);
    }

    [Fact]
    public void CrossEntropy_IgnoredRowsGetNoGradient()
    {
        var rng = new Random(2);
        var logits = RandomArray(rng, 3 * 4, 2);
        int[] labels = [1, Losses.IgnoreIndex, 3];
        var grad = new float[logits.Length];
        Losses.SoftmaxCrossEntropy(logits, labels, 4, grad);
        Assert.All(grad.AsSpan(4, 4).ToArray(), v => Assert.Equal(0f, v));
        Assert.Contains(grad.Take(4), v => v != 0f);
        // each counted row's gradient sums to 0 (softmax minus one-hot), divided by 2 counted rows
        Assert.Equal(0, grad.Take(4).Sum(), 6);
    }

    [Fact]
    public void CrossEntropy_IsStableForHugeLogits()
    {
        float[] logits = [1e4f, -1e4f, 9990f, 5e3f, 5e3f + 1f, -3e4f];
        int[] labels = [2, 0];
        var grad = new float[6];
        float loss = Losses.SoftmaxCrossEntropy(logits, labels, 3, grad);
        double expected = RefCrossEntropy(logits.Select(v => (double)v).ToArray(), labels, 3);
        Assert.True(float.IsFinite(loss));
        Assert.Equal(expected, loss, 3);
        Assert.All(grad, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void CrossEntropy_AllRowsIgnored_ReturnsZeroAndLeavesGradient()
    {
        var grad = new float[] { 5, 5, 5, 5 };
        float loss = Losses.SoftmaxCrossEntropy([1, 2, 3, 4], [Losses.IgnoreIndex, Losses.IgnoreIndex], 2, grad);
        Assert.Equal(0f, loss);
        Assert.All(grad, v => Assert.Equal(5f, v));
    }

    [Fact]
    public void CrossEntropy_RejectsBadInput()
    {
        var ex = Assert.Throws<ArgumentException>(() => Losses.SoftmaxCrossEntropy([1, 2, 3, 4], [0, 2], 2));
        Assert.Contains("label 2", ex.Message);
        Assert.Throws<ArgumentException>(() => Losses.SoftmaxCrossEntropy([1, 2, 3], [0, 1], 2));
        Assert.Throws<ArgumentException>(() => Losses.SoftmaxCrossEntropy([1, 2, 3, 4], [0, 1], 2, new float[3]));
    }

    [Fact]
    public void MeanSquaredError_MatchesReferenceAndFiniteDifferences()
    {
        var rng = new Random(3);
        var targets = RandomArray(rng, 9, 2);
        var td = targets.Select(v => (double)v).ToArray();
        CheckGradient(RandomArray(rng, 9, 2), p => RefMse(p, td),
            (x, g) => Losses.MeanSquaredError(x, targets, g, 1.5f), 1.5f);
    }

    [Fact]
    public void MeanSquaredError_LongInputSpansChunks()
    {
        var rng = new Random(4);
        var p = RandomArray(rng, 40_001, 1); var t = RandomArray(rng, 40_001, 1);
        var grad = new float[p.Length];
        float loss = Losses.MeanSquaredError(p, t, grad);
        Assert.Equal(RefMse(p.Select(v => (double)v).ToArray(), t.Select(v => (double)v).ToArray()), loss, 5);
        Assert.Equal(2.0 * (p[40_000] - t[40_000]) / p.Length, grad[40_000], 9);
    }

    [Fact]
    public void HiddenStateMse_MatchesReferenceAndFiniteDifferences()
    {
        var rng = new Random(5);
        var teacher = RandomArray(rng, 2 * 3 * 4, 1); // (B,T,C) = (2,3,4)
        var td = teacher.Select(v => (double)v).ToArray();
        CheckGradient(RandomArray(rng, 24, 1), s => RefMse(s, td),
            (x, g) => Losses.HiddenStateMse(x, teacher, g), 1f);
        var ex = Assert.Throws<ArgumentException>(() => Losses.HiddenStateMse(new float[24], new float[20]));
        Assert.Contains("same shape", ex.Message);
    }

    [Theory]
    [InlineData(1.0f)]
    [InlineData(2.5f)]
    public void SoftTargetDistillation_MatchesReferenceAndFiniteDifferences(float temperature)
    {
        var rng = new Random(6);
        const int c = 5;
        var teacher = RandomArray(rng, 4 * c, 3);
        var td = teacher.Select(v => (double)v).ToArray();
        CheckGradient(RandomArray(rng, 4 * c, 3), s => RefDistill(s, td, c, temperature, null),
            (x, g) => Losses.SoftTargetDistillation(x, teacher, c, temperature, g, 0.7f), 0.7f);
    }

    [Fact]
    public void SoftTargetDistillation_WithIgnoredRows_MatchesReferenceAndFiniteDifferences()
    {
        var rng = new Random(7);
        const int c = 4;
        var teacher = RandomArray(rng, 5 * c, 2);
        var td = teacher.Select(v => (double)v).ToArray();
        int[] labels = [1, Losses.IgnoreIndex, 0, Losses.IgnoreIndex, 3];
        CheckGradient(RandomArray(rng, 5 * c, 2), s => RefDistill(s, td, c, 2f, labels),
            (x, g) => Losses.SoftTargetDistillation(x, teacher, c, 2f, g, 1f, labels), 1f);
    }

    [Fact]
    public void SoftTargetDistillation_IsZeroWhenStudentEqualsTeacher()
    {
        var rng = new Random(8);
        var logits = RandomArray(rng, 3 * 6, 4);
        var grad = new float[logits.Length];
        float loss = Losses.SoftTargetDistillation(logits, logits, 6, 3f, grad);
        Assert.True(Math.Abs(loss) < 1e-5, $"loss {loss}");
        Assert.All(grad, v => Assert.True(Math.Abs(v) < 1e-6));
        Assert.Throws<ArgumentException>(() => Losses.SoftTargetDistillation(logits, logits, 6, 0f));
    }
}
