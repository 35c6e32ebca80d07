using System.Text.Json.Nodes;
using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Latency.Predictors;

/// <summary>
/// The paper's predictor: an MLP on (e, h, f), each standardised with the training set's mean and
/// standard deviation, trained with Adam on mean squared error. The target (ms) is standardised
/// too, so one learning rate suits latencies of any scale; predictions are mapped back to ms.
/// </summary>
internal sealed class MlpLatencyModel : ILatencyModel
{
    private const int ChunkRows = 256;
    private readonly LatencyMlp _net;
    private readonly double[] _inMean, _inStd;
    private readonly double _outMean, _outStd;

    private MlpLatencyModel(LatencyMlp net, double[] inMean, double[] inStd, double outMean, double outStd)
    {
        _net = net; _inMean = inMean; _inStd = inStd; _outMean = outMean; _outStd = outStd;
    }

    public LatencyModelKind Kind => LatencyModelKind.Mlp;
    public LatencyMlp Network => _net;
    /// <summary>Training loss (standardised MSE) averaged over the last tenth of the steps.</summary>
    public double FinalTrainingLoss { get; private set; }

    public string Describe() => $"MLP 3→{_net.Width}×{_net.HiddenLayers}→1 ({_net.ParameterCount:N0} parameters)";

    public static MlpLatencyModel Fit(IReadOnlyList<Architecture> archs, IReadOnlyList<double> ms, MlpOptions options)
    {
        options.Validate();
        LatencyModels.CheckTrainingSet(archs, ms, 2);
        int n = archs.Count;
        var x = new double[n * 3];
        for (int i = 0; i < n; i++) { x[3 * i] = archs[i].Layers; x[3 * i + 1] = archs[i].Hidden; x[3 * i + 2] = archs[i].Ffn; }
        var inMean = new double[3];
        var inStd = new double[3];
        for (int j = 0; j < 3; j++)
        {
            double mean = 0; for (int i = 0; i < n; i++) mean += x[3 * i + j]; mean /= n;
            double var = 0; for (int i = 0; i < n; i++) var += Math.Pow(x[3 * i + j] - mean, 2); var /= n;
            inMean[j] = mean; inStd[j] = var > 0 ? Math.Sqrt(var) : 1;   // a constant input maps to 0
        }
        double outMean = ms.Average();
        double outVar = ms.Sum(m => (m - outMean) * (m - outMean)) / n;
        double outStd = outVar > 0 ? Math.Sqrt(outVar) : 1;

        var net = new LatencyMlp(3, options.Width, options.HiddenLayers);
        var random = new Random(options.Seed);
        net.Initialize(random);
        var model = new MlpLatencyModel(net, inMean, inStd, outMean, outStd);

        int batch = options.BatchSize;
        var ws = net.CreateWorkspace(batch);
        var targets = new float[batch];
        // Plain Adam, as the paper: the shared AdamW with no decayed ranges and a constant rate.
        var adam = new AdamW(net.ParameterCount, [], new TrainingOptions
        {
            LearningRate = (float)options.LearningRate, WeightDecay = 0,
            Beta1 = (float)options.Beta1, Beta2 = (float)options.Beta2, Epsilon = (float)options.Epsilon,
        });
        float learningRate = (float)options.LearningRate;
        // Minibatches walk a reshuffled permutation of the training set (epochs without replacement).
        var order = Enumerable.Range(0, n).ToArray();
        int cursor = n;
        double tailLoss = 0; int tailSteps = 0;
        int tailStart = options.Steps - Math.Max(1, options.Steps / 10);
        for (int step = 0; step < options.Steps; step++)
        {
            var input = ws.Input;
            for (int r = 0; r < batch; r++)
            {
                if (cursor == n) { random.Shuffle(order); cursor = 0; }
                int i = order[cursor++];
                model.Normalize(archs[i], input.Slice(r * 3, 3));
                targets[r] = (float)((ms[i] - outMean) / outStd);
            }
            Array.Clear(net.Gradients);
            net.Forward(ws, batch, options.Threads);
            double loss = net.LossAndBackward(ws, batch, targets, backward: true, options.Threads);
            adam.Step(net.Parameters, net.Gradients, learningRate);
            if (step >= tailStart) { tailLoss += loss; tailSteps++; }
        }
        model.FinalTrainingLoss = tailLoss / Math.Max(1, tailSteps);
        return model;
    }

    private void Normalize(Architecture a, Span<float> row)
    {
        row[0] = (float)((a.Layers - _inMean[0]) / _inStd[0]);
        row[1] = (float)((a.Hidden - _inMean[1]) / _inStd[1]);
        row[2] = (float)((a.Ffn - _inMean[2]) / _inStd[2]);
    }

    public void PredictMs(ReadOnlySpan<Architecture> archs, Span<double> ms)
    {
        if (ms.Length < archs.Length) throw new ArgumentException("output span is shorter than the architecture list");
        var ws = _net.CreateWorkspace(Math.Min(ChunkRows, Math.Max(1, archs.Length)));
        for (int start = 0; start < archs.Length; start += ws.Batch)
        {
            int rows = Math.Min(ws.Batch, archs.Length - start);
            for (int r = 0; r < rows; r++) Normalize(archs[start + r], ws.Input.Slice(r * 3, 3));
            _net.Forward(ws, rows);
            for (int r = 0; r < rows; r++) ms[start + r] = ws.Output[r] * _outStd + _outMean;
        }
    }

    public JsonObject ToJson()
    {
        var bytes = new byte[_net.Parameters.Length * sizeof(float)];
        Buffer.BlockCopy(_net.Parameters, 0, bytes, 0, bytes.Length);
        return new JsonObject
        {
            ["kind"] = "mlp",
            ["width"] = _net.Width,
            ["hiddenLayers"] = _net.HiddenLayers,
            ["inputMean"] = new JsonArray(_inMean.Select(v => (JsonNode)v).ToArray()),
            ["inputStd"] = new JsonArray(_inStd.Select(v => (JsonNode)v).ToArray()),
            ["targetMean"] = _outMean,
            ["targetStd"] = _outStd,
            ["finalTrainingLoss"] = FinalTrainingLoss,
            // float32 little-endian, layer by layer: W (out,in) then b (out).
            ["parameters"] = Convert.ToBase64String(bytes),
        };
    }

    public static MlpLatencyModel FromJson(JsonObject json)
    {
        try
        {
            int width = json["width"]!.GetValue<int>();
            int hidden = json["hiddenLayers"]!.GetValue<int>();
            var net = new LatencyMlp(3, width, hidden);
            var bytes = Convert.FromBase64String(json["parameters"]!.GetValue<string>());
            if (bytes.Length != net.Parameters.Length * sizeof(float))
                throw new InvalidDataException($"MLP parameters hold {bytes.Length / sizeof(float)} floats, expected {net.Parameters.Length} for width {width} × {hidden} layers");
            Buffer.BlockCopy(bytes, 0, net.Parameters, 0, bytes.Length);
            var inMean = json["inputMean"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            var inStd = json["inputStd"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            if (inMean.Length != 3 || inStd.Length != 3) throw new InvalidDataException("MLP input normalisation must have 3 entries");
            return new MlpLatencyModel(net, inMean, inStd, json["targetMean"]!.GetValue<double>(), json["targetStd"]!.GetValue<double>())
            {
                FinalTrainingLoss = json["finalTrainingLoss"]?.GetValue<double>() ?? double.NaN,
            };
        }
        catch (Exception ex) when (ex is NullReferenceException or FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"MLP latency model is incomplete or malformed ({ex.Message}); refit it with 'speedlimit latency fit'");
        }
    }
}
