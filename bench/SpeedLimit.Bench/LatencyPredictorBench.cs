using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Bench;

/// <summary>Latency predictor: fitting cost, and how fast a predictor narrows the paper's 13,125-architecture space.</summary>
public sealed class LatencyPredictorBench : IBenchSection
{
    public string Name => "latency-predictor";
    public string Description => "fit the latency predictors on 300 synthetic records and narrow the paper space (13,125 architectures)";

    public void Run(BenchReport report, bool quick)
    {
        var space = SearchSpace.Paper;
        var synth = new SyntheticLatency(0.01);
        var records = synth.Sample(space, 300, new Random(1));
        var archs = records.Select(r => r.Arch).ToList();
        var ms = records.Select(r => r.MedianMs).ToList();
        int runs = quick ? 3 : 7;

        FeatureLatencyModel? features = null;
        double fitS = Timing.MedianSeconds(() => features = FeatureLatencyModel.Fit(archs, ms, LatencyShape.Paper, new FeatureModelOptions()), 1, runs);
        report.Figure("feature model fit (300 archs, padding chosen by 5-fold CV)", fitS * 1e3, "ms");

        var margin = new ConformalMargin(0.9, Enumerable.Repeat(0.02, 20));
        var predictor = new LatencyPredictor(features!, margin, new DeviceFingerprint("bench", 1, "bench"), Precision.Int8, LatencyShape.Paper);
        double bound = synth.TrueMs(new Architecture(3, 324, 572));
        NarrowedSpace? narrowed = null;
        double narrowS = Timing.MedianSeconds(() => narrowed = SpaceNarrowing.Narrow(space, predictor, bound), 2, runs);
        report.Figure("narrow 13,125 archs, feature predictor (batched)", narrowS * 1e3, "ms");
        report.Note($"    |A*| = {narrowed!.Count:N0} of {space.Count:N0} at {bound:0.00} ms");

        // Reference in the same run: the one-at-a-time ILatencyPredictor path.
        var single = new SingleCallPredictor(predictor);
        double singleS = Timing.MedianSeconds(() => SpaceNarrowing.Narrow(space, single, bound), 1, runs);
        report.Figure("narrow 13,125 archs, feature predictor (one PredictMs call per arch)", singleS * 1e3, "ms");

        // The paper's MLP: one training step and a batched sweep of the space.
        int width = quick ? 256 : 2000;
        var mlp = MlpLatencyModel.Fit(archs, ms, new MlpOptions { Width = width, Steps = 1, Seed = 1 });
        var mlpPredictor = new LatencyPredictor(mlp, margin, predictor.Device, Precision.Int8, LatencyShape.Paper);
        double mlpNarrowS = Timing.MedianSeconds(() => SpaceNarrowing.Narrow(space, mlpPredictor, 1e9), 1, quick ? 1 : 3);
        report.Figure($"narrow 13,125 archs, MLP width {width} (batched)", mlpNarrowS * 1e3, "ms");

        var opts = new MlpOptions { Width = width, Steps = 10, Seed = 1 };
        double stepsS = Timing.MedianSeconds(() => MlpLatencyModel.Fit(archs, ms, opts), 0, 1);
        report.Figure($"MLP width {width} training step (batch 128)", stepsS / opts.Steps * 1e3, "ms");
        report.Note($"    → 5000 paper steps ≈ {stepsS / opts.Steps * 5000 / 60:0.0} min on {Environment.ProcessorCount} cores");
    }

    private sealed class SingleCallPredictor(ILatencyPredictor inner) : ILatencyPredictor
    {
        public double PredictMs(Architecture arch) => inner.PredictMs(arch);
        public double RelativeMargin => inner.RelativeMargin;
    }
}
