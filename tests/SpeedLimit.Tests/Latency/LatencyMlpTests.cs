using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Latency;

public class LatencyMlpTests
{
    [Fact]
    public void GradientsMatchCentralFiniteDifferences()
    {
        // A small net in float32: central differences with step 1e-2 agree to ~1e-3 relative.
        var net = new LatencyMlp(3, 7, 3);
        net.Initialize(new Random(3));
        const int batch = 5;
        var ws = net.CreateWorkspace(batch);
        var rng = new Random(4);
        for (int i = 0; i < ws.Input.Length; i++) ws.Input[i] = (float)(rng.NextDouble() * 2 - 1);
        var targets = Enumerable.Range(0, batch).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

        Array.Clear(net.Gradients);
        net.Forward(ws, batch);
        net.LossAndBackward(ws, batch, targets, backward: true);
        var analytic = (float[])net.Gradients.Clone();

        double Loss()
        {
            net.Forward(ws, batch);
            return net.LossAndBackward(ws, batch, targets, backward: false);
        }

        int checkedCount = 0;
        double worst = 0;
        const float h = 1e-2f;
        for (int p = 0; p < net.ParameterCount; p++)
        {
            float saved = net.Parameters[p];
            net.Parameters[p] = saved + h; double up = Loss();
            net.Parameters[p] = saved - h; double down = Loss();
            net.Parameters[p] = saved;
            double numeric = (up - down) / (2 * h);
            double err = Math.Abs(numeric - analytic[p]) / Math.Max(1e-2, Math.Abs(numeric) + Math.Abs(analytic[p]));
            worst = Math.Max(worst, err);
            checkedCount++;
        }
        Assert.Equal(net.ParameterCount, checkedCount);
        Assert.True(worst < 2e-2, $"worst relative gradient error {worst:E2}");
        Assert.Contains(analytic, g => Math.Abs(g) > 1e-3);   // the check is not vacuous
    }

    [Fact]
    public void BackwardAccumulatesIntoGradients()
    {
        var net = new LatencyMlp(3, 4, 2);
        net.Initialize(new Random(1));
        var ws = net.CreateWorkspace(2);
        ws.Input.Fill(0.5f);
        float[] targets = [1f, -1f];
        Array.Clear(net.Gradients);
        net.Forward(ws, 2);
        net.LossAndBackward(ws, 2, targets, backward: true);
        var once = (float[])net.Gradients.Clone();
        net.Forward(ws, 2);
        net.LossAndBackward(ws, 2, targets, backward: true);
        for (int i = 0; i < once.Length; i++) Assert.Equal(2 * once[i], net.Gradients[i], 1e-5f);
    }

    [Fact]
    public void SmallMlpRecoversSyntheticLatencyWithinTenPercentMape()
    {
        // Small settings so the test is fast; the paper's width/steps are the defaults of MlpOptions.
        var space = SearchSpace.Paper;
        var synth = new SyntheticLatency(noiseSigma: 0.005);
        var records = synth.Sample(space, 300, new Random(11));
        var archs = records.Select(r => r.Arch).ToList();
        var ms = records.Select(r => r.MedianMs).ToList();
        var model = MlpLatencyModel.Fit(archs, ms, new MlpOptions { Width = 32, Steps = 1500, BatchSize = 64, LearningRate = 3e-3, Seed = 2 });
        var test = Enumerable.Range(0, 200).Select(_ => space.Sample(new Random(500 + _))).ToArray();
        var pred = new double[test.Length];
        model.PredictMs(test, pred);
        var m = PredictionMetrics.From(test.Select(synth.TrueMs).ToList(), pred);
        Assert.True(m.MapePercent < 10, $"MLP MAPE {m.MapePercent:0.00} %");
    }
}
