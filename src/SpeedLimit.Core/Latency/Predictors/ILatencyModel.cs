using System.Text.Json.Nodes;
using SpeedLimit.Model;

namespace SpeedLimit.Latency.Predictors;

/// <summary>The kinds of latency model a predictor can hold.</summary>
public enum LatencyModelKind
{
    /// <summary>Pick by cross-validated error on the training records.</summary>
    Auto,
    /// <summary>The paper's MLP on normalised (e, h, f).</summary>
    Mlp,
    /// <summary>Non-negative weights on per-operator FLOP and element counts of the int8 BERT graph.</summary>
    Features,
}

/// <summary>The input shape the latencies were measured at; feature models need it.</summary>
public sealed record LatencyShape(int Heads, int Batch, int SequenceLength)
{
    public static LatencyShape Paper { get; } = new(12, 1, 128);
}

/// <summary>A fitted point model of latency (ms) over architectures.</summary>
public interface ILatencyModel
{
    LatencyModelKind Kind { get; }

    /// <summary>A one-line description (for reports).</summary>
    string Describe();

    /// <summary>Predicts every architecture of <paramref name="archs"/> into <paramref name="ms"/>.</summary>
    void PredictMs(ReadOnlySpan<Architecture> archs, Span<double> ms);

    /// <summary>The fitted state as JSON (read back by <see cref="LatencyModels.FromJson"/>).</summary>
    JsonObject ToJson();
}

/// <summary>Fits and reads back latency models by kind.</summary>
internal static class LatencyModels
{
    public static ILatencyModel Fit(LatencyModelKind kind, IReadOnlyList<Architecture> archs, IReadOnlyList<double> ms,
        LatencyShape shape, MlpOptions mlp, FeatureModelOptions features) => kind switch
    {
        LatencyModelKind.Mlp => MlpLatencyModel.Fit(archs, ms, mlp),
        LatencyModelKind.Features => FeatureLatencyModel.Fit(archs, ms, shape, features),
        _ => throw new ArgumentException($"cannot fit model kind '{kind}' directly; choose mlp or features"),
    };

    public static ILatencyModel FromJson(JsonObject json)
    {
        var kind = json["kind"]?.GetValue<string>();
        return kind switch
        {
            "mlp" => MlpLatencyModel.FromJson(json),
            "features" => FeatureLatencyModel.FromJson(json),
            _ => throw new InvalidDataException($"unknown latency model kind '{kind}'; expected 'mlp' or 'features'"),
        };
    }

    public static double PredictOne(this ILatencyModel model, Architecture arch)
    {
        Span<double> ms = stackalloc double[1];
        model.PredictMs([arch], ms);
        return ms[0];
    }

    internal static void CheckTrainingSet(IReadOnlyList<Architecture> archs, IReadOnlyList<double> ms, int minimum)
    {
        if (archs.Count != ms.Count) throw new ArgumentException($"{archs.Count} architectures but {ms.Count} latencies");
        if (archs.Count < minimum) throw new ArgumentException($"a latency model needs at least {minimum} measured architectures, got {archs.Count}; profile more");
        foreach (var m in ms)
            if (!(m > 0) || double.IsInfinity(m)) throw new ArgumentException($"latency {m} ms is not a positive finite number; check the dataset");
    }
}
