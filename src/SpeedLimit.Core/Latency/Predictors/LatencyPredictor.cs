using System.Text.Json;
using System.Text.Json.Nodes;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Latency.Predictors;

/// <summary>An <see cref="ILatencyPredictor"/> that can predict many architectures in one call (a batched forward pass).</summary>
internal interface IBatchLatencyPredictor : ILatencyPredictor
{
    void PredictMs(ReadOnlySpan<Architecture> archs, Span<double> ms);
}

/// <summary>
/// A fitted latency model plus what makes it usable for a bound: a conformal relative margin,
/// the device and input shape it was measured on, and its held-out scores. Saved as one JSON file.
/// </summary>
public sealed class LatencyPredictor : IBatchLatencyPredictor, IRecalibratingLatencyPredictor
{
    public const string FormatName = "speedlimit-latency-predictor";
    public const int FormatVersion = 1;

    public LatencyPredictor(ILatencyModel model, ConformalMargin margin, DeviceFingerprint device, Precision precision,
        LatencyShape shape, PredictionMetrics? heldOut = null, LatencyStatistic statistic = LatencyStatistic.Median,
        BoundStatistic boundStatistic = BoundStatistic.P50)
    {
        Statistic = statistic;
        BoundStatistic = boundStatistic;
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Margin = margin ?? throw new ArgumentNullException(nameof(margin));
        Device = device ?? throw new ArgumentNullException(nameof(device));
        Precision = precision;
        Shape = shape ?? throw new ArgumentNullException(nameof(shape));
        HeldOut = heldOut;
    }

    public ILatencyModel Model { get; }
    public ConformalMargin Margin { get; }
    public DeviceFingerprint Device { get; }
    public Precision Precision { get; }
    public LatencyShape Shape { get; }
    /// <summary>The per-record latency the model learnt.</summary>
    public LatencyStatistic Statistic { get; }
    /// <summary>The measured quantile the margin bounds (predictors written before bounds had a statistic: p50).</summary>
    public BoundStatistic BoundStatistic { get; }
    /// <summary>Scores on records the model never saw when it was fitted (null if not evaluated).</summary>
    public PredictionMetrics? HeldOut { get; }

    public double RelativeMargin => Margin.Margin;
    public double Confidence => Margin.Confidence;

    public double PredictMs(Architecture arch) => Model.PredictOne(arch);

    public void PredictMs(ReadOnlySpan<Architecture> archs, Span<double> ms) => Model.PredictMs(archs, ms);

    /// <summary>A warning when <paramref name="current"/> is not the device this predictor was fitted on; null when it is.</summary>
    public string? DeviceWarning(DeviceFingerprint current) => DeviceCheck.Compare(Device, current);

    /// <summary>
    /// The margin recalibrated with measurements taken since the fit (for example the search's
    /// finalists): the conformal quantile over the fit's calibration residuals plus these. The model is
    /// unchanged, so these residuals are out-of-sample. Records of another precision, input shape or
    /// device are not used (the reasons are returned).
    /// </summary>
    public (double Margin, IReadOnlyList<string> Warnings) RecalibratedMargin(IEnumerable<(LatencyRecord Record, double MeasuredMs)> measurements)
    {
        var extra = new List<double>();
        var warnings = new List<string>();
        int skipped = 0;
        var devicesWarned = new HashSet<DeviceFingerprint>();
        foreach (var (r, measured) in measurements)
        {
            if (r.Precision != Precision || r.Batch != Shape.Batch || r.SequenceLength != Shape.SequenceLength || r.Heads != Shape.Heads)
            {
                skipped++;
                continue;
            }
            if (!(measured > 0)) throw new ArgumentException($"measurement of {r.Arch} has latency {measured} ms; it must be positive");
            var w = DeviceWarning(r.Device);
            if (w is not null)
            {
                if (devicesWarned.Add(r.Device)) warnings.Add(w + " (its measurements were not used to recalibrate the margin)");
                continue;
            }
            extra.Add(ConformalMargin.Residual(measured, PredictMs(r.Arch)));
        }
        if (skipped > 0)
            warnings.Add($"{skipped} measurement(s) not used for the margin: not {Precision.ToString().ToLowerInvariant()} at batch {Shape.Batch} × {Shape.SequenceLength} tokens with {Shape.Heads} heads");
        return (extra.Count == 0 ? Margin.Margin : new ConformalMargin(Margin.Confidence, Margin.Residuals.Concat(extra)).Margin, warnings);
    }

    double IRecalibratingLatencyPredictor.RecalibratedMargin(IReadOnlyList<(LatencyRecord Record, double MeasuredMs)> measurements) =>
        RecalibratedMargin(measurements).Margin;

    public JsonObject ToJson() => new()
    {
        ["format"] = FormatName,
        ["version"] = FormatVersion,
        ["precision"] = Precision.ToString().ToLowerInvariant(),
        ["heads"] = Shape.Heads,
        ["batch"] = Shape.Batch,
        ["sequenceLength"] = Shape.SequenceLength,
        ["device"] = JsonSerializer.SerializeToNode(Device, LatencyDataset.JsonOptions),
        ["statistic"] = Statistic.ToString().ToLowerInvariant(),
        ["boundStatistic"] = LatencyBound.Name(BoundStatistic),
        ["confidence"] = Margin.Confidence,
        ["relativeMargin"] = Margin.Margin,
        ["calibrationResiduals"] = new JsonArray(Margin.Residuals.Select(r => (JsonNode)r).ToArray()),
        ["heldOut"] = HeldOut is null ? null : JsonSerializer.SerializeToNode(HeldOut, LatencyDataset.JsonOptions),
        ["model"] = Model.ToJson(),
    };

    /// <summary>Writes the predictor as JSON via a temporary file and a rename, so a reader never sees half a file.</summary>
    public void Save(string path)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        AtomicFile.Write(path, stream =>
        {
            using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            ToJson().WriteTo(writer);
        });
    }

    public static LatencyPredictor Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"latency predictor '{path}' does not exist; create one with 'speedlimit latency fit'");
        JsonObject json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new InvalidDataException($"{path}: empty predictor file");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path}: not a latency predictor JSON file ({ex.Message}); refit it with 'speedlimit latency fit'");
        }
        return FromJson(json, path);
    }

    public static LatencyPredictor FromJson(JsonObject json, string source = "latency predictor")
    {
        if (json["format"]?.GetValue<string>() != FormatName)
            throw new InvalidDataException($"{source}: not a latency predictor (format field is not '{FormatName}')");
        int version = json["version"]?.GetValue<int>() ?? 0;
        if (version != FormatVersion)
            throw new InvalidDataException($"{source}: predictor format version {version}, this build reads version {FormatVersion}; refit it with 'speedlimit latency fit'");
        try
        {
            var precision = Enum.Parse<Precision>(json["precision"]!.GetValue<string>(), ignoreCase: true);
            var shape = new LatencyShape(json["heads"]!.GetValue<int>(), json["batch"]!.GetValue<int>(), json["sequenceLength"]!.GetValue<int>());
            var device = json["device"]!.Deserialize<DeviceFingerprint>(LatencyDataset.JsonOptions)!;
            if (device.CpuModel is null || device.RuntimeVersion is null) throw new InvalidDataException("device fingerprint lacks the CPU model or runtime version");
            var residuals = json["calibrationResiduals"]!.AsArray().Select(v => v!.GetValue<double>());
            var margin = new ConformalMargin(json["confidence"]!.GetValue<double>(), residuals);
            var heldOut = json["heldOut"] is JsonNode h ? h.Deserialize<PredictionMetrics>(LatencyDataset.JsonOptions) : null;
            var model = LatencyModels.FromJson(json["model"]!.AsObject());
            var statistic = Enum.Parse<LatencyStatistic>(json["statistic"]?.GetValue<string>() ?? "median", ignoreCase: true);
            var boundStatistic = LatencyBound.ParseStatistic(json["boundStatistic"]?.GetValue<string>() ?? "p50");
            return new LatencyPredictor(model, margin, device, precision, shape, heldOut, statistic, boundStatistic);
        }
        catch (Exception ex) when (ex is NullReferenceException or InvalidDataException or UserInputException or FormatException or InvalidOperationException or ArgumentException or JsonException)
        {
            throw new InvalidDataException($"{source}: predictor file is incomplete or malformed ({ex.Message}); refit it with 'speedlimit latency fit'");
        }
    }
}

/// <summary>Tells whether latencies measured on one device apply on another.</summary>
public static class DeviceCheck
{
    /// <summary>A one-line warning naming what differs, or null when the fingerprints match.</summary>
    public static string? Compare(DeviceFingerprint fitted, DeviceFingerprint current)
    {
        var diffs = fitted.Differences(current);
        return diffs.Count == 0
            ? null
            : $"the latency predictor was fitted on another device ({string.Join("; ", diffs)}); its predictions and margin may not hold here, so re-profile this machine and refit";
    }

    /// <summary>This machine's fingerprint at <paramref name="threads"/> threads, as the profiler records it.</summary>
    public static DeviceFingerprint Current(int threads) => DeviceFingerprint.Current(threads);
}
