using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

public class MetricsTests
{
    private const double Tol = 1e-12;

    [Fact]
    public void AccuracyAndF1ByHand()
    {
        int[] pred = [1, 0, 1, 1], gold = [1, 0, 0, 1];
        Assert.Equal(0.75, GlueMetrics.Accuracy(pred, gold), Tol);
        Assert.Equal(0.8, GlueMetrics.F1(pred, gold), Tol); // tp 2, fp 1, fn 0 → 4/5
        Assert.Equal(0.0, GlueMetrics.F1([0, 0, 0], [0, 0, 0]), Tol); // no positives at all
        var report = GlueMetrics.Evaluate(PrimaryMetric.F1Accuracy, pred, gold);
        Assert.Equal((0.75 + 0.8) / 2, report.Primary, Tol);
    }

    [Fact]
    public void MatthewsByHandAndDegenerate()
    {
        // tp 3, tn 3, fp 1, fn 1 → (9 − 1) / sqrt(4·4·4·4) = 0.5
        Assert.Equal(0.5, GlueMetrics.MatthewsCorrelation([1, 1, 1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1, 1, 0]), Tol);
        // tp 2, fn 1, fp 1, tn 0 → −1/3 (scikit-learn's documented example)
        Assert.Equal(-1.0 / 3, GlueMetrics.MatthewsCorrelation([1, 0, 1, 1], [1, 1, 1, 0]), Tol);
        Assert.Equal(1.0, GlueMetrics.MatthewsCorrelation([0, 1, 1, 0], [0, 1, 1, 0]), Tol);
        Assert.Equal(-1.0, GlueMetrics.MatthewsCorrelation([1, 0, 0, 1], [0, 1, 1, 0]), Tol);
        // Constant predictions (a collapsed CoLA model) → 0, not NaN.
        Assert.Equal(0.0, GlueMetrics.MatthewsCorrelation([1, 1, 1, 1], [1, 0, 1, 0]));
        Assert.Equal(0.0, GlueMetrics.MatthewsCorrelation([1, 0], [1, 1]));
        Assert.Equal(0.0, GlueMetrics.Evaluate(PrimaryMetric.Matthews, [0, 0, 0], [0, 1, 1]).Primary);
    }

    [Fact]
    public void MulticlassMatthewsMatchesConfusionMatrixFormula()
    {
        int[] pred = [0, 1, 2, 2, 1, 0, 0, 2, 1], gold = [0, 1, 2, 1, 1, 2, 0, 2, 0];
        // Confusion matrix C[gold,pred] and Gorodkin's formula written out independently.
        var c = new double[3, 3];
        for (int i = 0; i < pred.Length; i++) c[gold[i], pred[i]]++;
        double n = pred.Length, trace = 0, sumPT = 0, sumP2 = 0, sumT2 = 0;
        for (int k = 0; k < 3; k++)
        {
            trace += c[k, k];
            double pk = 0, tk = 0;
            for (int j = 0; j < 3; j++) { pk += c[j, k]; tk += c[k, j]; }
            sumPT += pk * tk; sumP2 += pk * pk; sumT2 += tk * tk;
        }
        double expected = (trace * n - sumPT) / Math.Sqrt((n * n - sumP2) * (n * n - sumT2));
        Assert.Equal(expected, GlueMetrics.MatthewsCorrelation(pred, gold), Tol);
    }

    [Fact]
    public void PearsonAndSpearmanWithTiesByHand()
    {
        double[] x = [1, 2, 3, 4, 5], y = [2, 4, 5, 4, 5];
        Assert.Equal(6 / Math.Sqrt(60), GlueMetrics.Pearson(x, y), Tol);
        // ranks of y: 1, 2.5, 4.5, 2.5, 4.5
        Assert.Equal([1, 2.5, 4.5, 2.5, 4.5], GlueMetrics.AverageRanks(y));
        Assert.Equal(7 / Math.Sqrt(90), GlueMetrics.Spearman(x, y), Tol);
        Assert.Equal(1.0, GlueMetrics.Spearman([1, 10, 100], [0.1, 0.2, 0.3]), Tol); // monotone, not linear
        var report = GlueMetrics.Evaluate(x, y);
        Assert.Equal((6 / Math.Sqrt(60) + 7 / Math.Sqrt(90)) / 2, report.Primary, Tol);
    }

    [Fact]
    public void ZeroVarianceCorrelationIsZero()
    {
        Assert.Equal(0.0, GlueMetrics.Pearson([3, 3, 3], [1, 2, 3]));
        Assert.Equal(0.0, GlueMetrics.Spearman([1, 2, 3], [2, 2, 2]));
        Assert.Equal(0.0, GlueMetrics.Pearson([5], [1]));
    }

    [Fact]
    public void LengthMismatchAndEmptyAreErrors()
    {
        Assert.Throws<ArgumentException>(() => GlueMetrics.Accuracy([1, 0], [1]));
        Assert.Throws<ArgumentException>(() => GlueMetrics.Pearson([], []));
        Assert.Throws<ArgumentException>(() => GlueMetrics.Evaluate(PrimaryMetric.PearsonSpearman, [1], [1]));
    }
}
