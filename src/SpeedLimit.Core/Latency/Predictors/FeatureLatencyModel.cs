using System.Text.Json.Nodes;
using SpeedLimit.Model;

namespace SpeedLimit.Latency.Predictors;

/// <summary>Settings of the operator-feature latency model.</summary>
public sealed class FeatureModelOptions
{
    /// <summary>
    /// Candidate tile sizes the int8 GEMM dimensions are rounded up to (a kernel that works in
    /// tiles of 16 costs a 132-wide matrix like a 144-wide one); chosen by cross-validation.
    /// </summary>
    public int[] Paddings { get; set; } = [1, 4, 8, 16, 32, 64];
    /// <summary>Folds of the cross-validation that picks the padding.</summary>
    public int Folds { get; set; } = 5;
    public int Seed { get; set; } = 1;
    /// <summary>Reweighting passes toward least absolute relative error (0: plain relative least squares).</summary>
    public int RobustIterations { get; set; } = 15;

    public void Validate()
    {
        if (RobustIterations < 0) throw new ArgumentException($"robust iterations {RobustIterations} must be ≥ 0");
        if (Paddings.Length == 0 || Paddings.Any(p => p < 1)) throw new ArgumentException("feature model paddings must be a non-empty list of positive integers");
        if (Folds < 2) throw new ArgumentException($"feature model folds {Folds} must be at least 2");
    }
}

/// <summary>
/// Per-operator work of the int8 BERT encoder at one input shape (batch B, length T, n = B·T
/// tokens, heads fixed), as counted from the exported graph: dynamic-quantized int8 linear layers
/// (Q, K, V and attention output: 4·n·h² MACs; FFN: 2·n·h·f MACs), the fp32 attention products
/// (scores and context: 2·B·T²·h MACs), element-wise work on the hidden and FFN activations
/// (quantize, bias, GELU, residual, LayerNorm), a fixed cost per layer (op dispatch, softmax over
/// heads·T² which is constant when heads and T are) and per run (session, embeddings, pooler).
/// </summary>
internal static class OperatorFeatures
{
    public static readonly string[] Names =
    [
        "run overhead", "embedding elements", "pooler MACs",
        "layer overhead", "attention-projection int8 MACs", "FFN int8 MACs",
        "attention fp32 MACs", "hidden elements", "FFN elements",
    ];

    public static int Count => Names.Length;

    public static int Pad(int value, int tile) => (value + tile - 1) / tile * tile;

    public static void Compute(Architecture a, LatencyShape shape, int padding, Span<double> features)
    {
        double e = a.Layers, h = a.Hidden, f = a.Ffn;
        double hp = Pad(a.Hidden, padding), fp = Pad(a.Ffn, padding);
        double batch = shape.Batch, t = shape.SequenceLength, n = batch * t;
        features[0] = 1;
        features[1] = n * h;
        features[2] = batch * h * h;
        features[3] = e;
        features[4] = e * n * 4 * hp * hp;
        features[5] = e * n * 2 * hp * fp;
        features[6] = e * 2 * batch * t * t * h;
        features[7] = e * n * h;
        features[8] = e * n * f;
    }
}

/// <summary>
/// Latency as a non-negative combination of <see cref="OperatorFeatures"/>: each weight is a cost
/// per unit of work (ms per MAC, per element, per op), so every prediction grows with e, h and f.
/// Fitted to relative error (rows weighted by 1/measured), which is what MAPE and the margin judge.
/// </summary>
internal sealed class FeatureLatencyModel : ILatencyModel
{
    private readonly double[] _weights;

    private FeatureLatencyModel(LatencyShape shape, int padding, double[] weights)
    {
        Shape = shape; Padding = padding; _weights = weights;
    }

    public LatencyModelKind Kind => LatencyModelKind.Features;
    public LatencyShape Shape { get; }
    public int Padding { get; }
    public IReadOnlyList<double> Weights => _weights;

    public string Describe() =>
        $"operator features, GEMM dims padded to {Padding}, {_weights.Count(w => w > 0)} of {_weights.Length} costs non-zero";

    public static FeatureLatencyModel Fit(IReadOnlyList<Architecture> archs, IReadOnlyList<double> ms, LatencyShape shape, FeatureModelOptions options)
    {
        options.Validate();
        LatencyModels.CheckTrainingSet(archs, ms, 3);
        int padding = options.Paddings[0];
        if (options.Paddings.Length > 1 && archs.Count >= 2 * options.Folds)
        {
            double best = double.PositiveInfinity;
            foreach (var p in options.Paddings.Distinct())
            {
                double mape = CrossValidatedMape(archs, ms, shape, p, options);
                if (mape < best - 1e-12) { best = mape; padding = p; }
            }
        }
        return FitWithPadding(archs, ms, shape, padding, options.RobustIterations);
    }

    internal static FeatureLatencyModel FitWithPadding(IReadOnlyList<Architecture> archs, IReadOnlyList<double> ms, LatencyShape shape, int padding, int robustIterations)
    {
        int n = archs.Count, p = OperatorFeatures.Count;
        var a = new double[n * p];
        var b = new double[n];
        for (int i = 0; i < n; i++)
        {
            var row = a.AsSpan(i * p, p);
            OperatorFeatures.Compute(archs[i], shape, padding, row);
            // Row i scaled by 1/y_i: residual (ŷ−y)/y, the relative error.
            for (int j = 0; j < p; j++) row[j] /= ms[i];
            b[i] = 1;
        }
        // Columns scaled to unit RMS so the solver sees comparable magnitudes (MACs vs ops).
        var scale = new double[p];
        for (int j = 0; j < p; j++)
        {
            double ss = 0;
            for (int i = 0; i < n; i++) ss += a[i * p + j] * a[i * p + j];
            scale[j] = ss > 0 ? Math.Sqrt(ss / n) : 1;
            for (int i = 0; i < n; i++) a[i * p + j] /= scale[j];
        }
        var w = Nnls.Solve(a, b, n, p);
        // Iteratively reweighted least squares toward least absolute relative error (what MAPE
        // scores): weighting row i by 1/√|rᵢ| turns Σ rᵢ² into Σ |rᵢ|, and a few measurements
        // disturbed by other work on the machine pull the fit less than under squared error.
        var aw = new double[a.Length];
        var bw = new double[n];
        for (int iter = 0; iter < robustIterations; iter++)
        {
            for (int i = 0; i < n; i++)
            {
                double fit = 0;
                for (int j = 0; j < p; j++) fit += a[i * p + j] * w[j];
                double u = 1 / Math.Sqrt(Math.Max(Math.Abs(fit - 1), 2e-3));
                for (int j = 0; j < p; j++) aw[i * p + j] = a[i * p + j] * u;
                bw[i] = u;
            }
            w = Nnls.Solve(aw, bw, n, p);
        }
        for (int j = 0; j < p; j++) w[j] /= scale[j];
        return new FeatureLatencyModel(shape, padding, w);
    }

    private static double CrossValidatedMape(IReadOnlyList<Architecture> archs, IReadOnlyList<double> ms, LatencyShape shape, int padding, FeatureModelOptions options)
    {
        int folds = options.Folds;
        var fold = CrossValidation.AssignFolds(archs.Count, folds, options.Seed);
        double sum = 0;
        for (int k = 0; k < folds; k++)
        {
            var trainA = new List<Architecture>(); var trainY = new List<double>();
            for (int i = 0; i < archs.Count; i++) if (fold[i] != k) { trainA.Add(archs[i]); trainY.Add(ms[i]); }
            var model = FitWithPadding(trainA, trainY, shape, padding, options.RobustIterations);
            for (int i = 0; i < archs.Count; i++)
                if (fold[i] == k) sum += Math.Abs(model.PredictOne(archs[i]) - ms[i]) / ms[i];
        }
        return sum / archs.Count;
    }

    public void PredictMs(ReadOnlySpan<Architecture> archs, Span<double> ms)
    {
        if (ms.Length < archs.Length) throw new ArgumentException("output span is shorter than the architecture list");
        Span<double> phi = stackalloc double[OperatorFeatures.Count];
        for (int i = 0; i < archs.Length; i++)
        {
            OperatorFeatures.Compute(archs[i], Shape, Padding, phi);
            double sum = 0;
            for (int j = 0; j < phi.Length; j++) sum += _weights[j] * phi[j];
            ms[i] = sum;
        }
    }

    public JsonObject ToJson() => new()
    {
        ["kind"] = "features",
        ["heads"] = Shape.Heads,
        ["batch"] = Shape.Batch,
        ["sequenceLength"] = Shape.SequenceLength,
        ["padding"] = Padding,
        ["featureNames"] = new JsonArray(OperatorFeatures.Names.Select(n => (JsonNode)n).ToArray()),
        ["weights"] = new JsonArray(_weights.Select(v => (JsonNode)v).ToArray()),
    };

    public static FeatureLatencyModel FromJson(JsonObject json)
    {
        try
        {
            var shape = new LatencyShape(json["heads"]!.GetValue<int>(), json["batch"]!.GetValue<int>(), json["sequenceLength"]!.GetValue<int>());
            var w = json["weights"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            if (w.Length != OperatorFeatures.Count) throw new InvalidDataException($"feature model has {w.Length} weights, expected {OperatorFeatures.Count}; refit it");
            if (w.Any(v => v < 0 || !double.IsFinite(v))) throw new InvalidDataException("feature model weights must be finite and non-negative; refit it");
            int padding = json["padding"]!.GetValue<int>();
            if (padding < 1) throw new InvalidDataException($"feature model padding {padding} must be positive");
            return new FeatureLatencyModel(shape, padding, w);
        }
        catch (Exception ex) when (ex is NullReferenceException or FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"feature latency model is incomplete or malformed ({ex.Message}); refit it with 'speedlimit latency fit'");
        }
    }
}

internal static class CrossValidation
{
    /// <summary>Fold index per item: a seeded shuffle dealt round-robin, so fold sizes differ by at most one.</summary>
    public static int[] AssignFolds(int count, int folds, int seed)
    {
        var order = Enumerable.Range(0, count).ToArray();
        new Random(seed).Shuffle(order);
        var fold = new int[count];
        for (int i = 0; i < count; i++) fold[order[i]] = i % folds;
        return fold;
    }
}
