using System.Text.Json;
using System.Text.Json.Nodes;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Latency.Predictors;

/// <summary>An <see cref="ILatencyPredictor"/> that can predict many architectures in one call (a batched forward pass).</summary>
public interface IBatchLatencyPredictor : ILatencyPredictor
{
    void PredictMs(ReadOnlySpan<Architecture> archs, Span<double> ms);
}

/// <summary>
/// A fitted latency model plus what makes it usable for a bound: a conformal relative margin,
/// the device and input shape it was measured on, and its held-out scores. Saved as one JSON file.
/// </summary>
public sealed class LatencyPredictor : IBatchLatencyPredictor
{
    public const string FormatName = "speedlimit-latency-predictor";
    public const int FormatVersion = 1;

    public LatencyPredictor(ILatencyModel model, ConformalMargin margin, DeviceFingerprint device, Precision precision,
        LatencyShape shape, PredictionMetrics? heldOut = null, LatencyStatistic statistic = LatencyStatistic.Median)
    {
        Statistic = statistic;
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
    /// <summary>The per-record latency the model learnt; the margin always bounds the measured median.</summary>
    public LatencyStatistic Statistic { get; }
    /// <summary>Scores on records the model never saw when it was fitted (null if not evaluated).</summary>
    public PredictionMetrics? HeldOut { get; }

    public double RelativeMargin => Margin.Margin;
    public double Confidence => Margin.Confidence;

    public double PredictMs(Architecture arch) => Model.PredictOne(arch);

    public void PredictMs(ReadOnlySpan<Architecture> archs, Span<double> ms) => Model.PredictMs(archs, ms);

    /// <summary>The prediction inflated by the margin: the latency the bound is checked against.</summary>
    public double UpperMs(Architecture arch) => PredictMs(arch) * (1 + RelativeMargin);

    /// <summary>A warning when <paramref name="current"/> is not the device this predictor was fitted on; null when it is.</summary>
    public string? DeviceWarning(DeviceFingerprint current) => DeviceCheck.Compare(Device, current);

    /// <summary>
    /// Adds measured latencies (for example the search's finalists) to the margin's calibration
    /// set; the model itself is unchanged, so these residuals are out-of-sample. Records of another
    /// precision or input shape are skipped; records from another device are used but warned about.
    /// Returns the warnings.
    /// </summary>
    public IReadOnlyList<string> AddMeasurements(IEnumerable<LatencyRecord> records)
    {
        var warnings = new List<string>();
        int skipped = 0;
        var devicesWarned = new HashSet<DeviceFingerprint>();
        foreach (var r in records)
        {
            if (r.Precision != Precision || r.Batch != Shape.Batch || r.SequenceLength != Shape.SequenceLength || r.Heads != Shape.Heads)
            {
                skipped++;
                continue;
            }
            if (!(r.MedianMs > 0)) throw new ArgumentException($"measurement of {r.Arch} has latency {r.MedianMs} ms; it must be positive");
            var w = DeviceWarning(r.Device);
            if (w is not null && devicesWarned.Add(r.Device)) warnings.Add(w);
            Margin.Add(ConformalMargin.Residual(r.MedianMs, PredictMs(r.Arch)));
        }
        if (skipped > 0)
            warnings.Add($"{skipped} measurement(s) skipped: not {Precision.ToString().ToLowerInvariant()} at batch {Shape.Batch} × {Shape.SequenceLength} tokens with {Shape.Heads} heads");
        return warnings;
    }

    public JsonObject ToJson() => new()
    {
        ["format"] = FormatName,
        ["version"] = FormatVersion,
        ["precision"] = Precision.ToString().ToLowerInvariant(),
        ["heads"] = Shape.Heads,
        ["batch"] = Shape.Batch,
        ["sequenceLength"] = Shape.SequenceLength,
        ["device"] = new JsonObject { ["cpuModel"] = Device.CpuModel, ["threads"] = Device.Threads, ["runtimeVersion"] = Device.RuntimeVersion },
        ["statistic"] = Statistic.ToString().ToLowerInvariant(),
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
            var d = json["device"]!.AsObject();
            var device = new DeviceFingerprint(d["cpuModel"]!.GetValue<string>(), d["threads"]!.GetValue<int>(), d["runtimeVersion"]!.GetValue<string>());
            var residuals = json["calibrationResiduals"]!.AsArray().Select(v => v!.GetValue<double>());
            var margin = new ConformalMargin(json["confidence"]!.GetValue<double>(), residuals);
            var heldOut = json["heldOut"] is JsonNode h ? h.Deserialize<PredictionMetrics>(LatencyDataset.JsonOptions) : null;
            var model = LatencyModels.FromJson(json["model"]!.AsObject());
            var statistic = Enum.Parse<LatencyStatistic>(json["statistic"]?.GetValue<string>() ?? "median", ignoreCase: true);
            return new LatencyPredictor(model, margin, device, precision, shape, heldOut, statistic);
        }
        catch (Exception ex) when (ex is NullReferenceException or FormatException or InvalidOperationException or ArgumentException or JsonException)
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
        var diffs = new List<string>();
        if (!string.Equals(fitted.CpuModel.Trim(), current.CpuModel.Trim(), StringComparison.Ordinal))
            diffs.Add($"CPU '{fitted.CpuModel}' vs '{current.CpuModel}'");
        if (fitted.Threads != current.Threads) diffs.Add($"{fitted.Threads} vs {current.Threads} thread(s)");
        if (!string.Equals(fitted.RuntimeVersion, current.RuntimeVersion, StringComparison.Ordinal))
            diffs.Add($"ONNX Runtime {fitted.RuntimeVersion} vs {current.RuntimeVersion}");
        return diffs.Count == 0
            ? null
            : $"the latency predictor was fitted on another device ({string.Join("; ", diffs)}); its predictions and margin may not hold here, so re-profile this machine and refit";
    }

    /// <summary>This machine's fingerprint at <paramref name="threads"/> threads, as the profiler records it.</summary>
    public static DeviceFingerprint Current(int threads) => new(LatencyProfiler.CpuModel(), threads, SpeedLimit.Onnx.OnnxRunner.RuntimeVersion);
}
