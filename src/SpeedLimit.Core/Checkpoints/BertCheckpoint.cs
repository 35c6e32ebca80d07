using System.Globalization;
using System.Text.Json;
using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Checkpoints;

/// <summary>What <see cref="BertCheckpoint.Load"/> returns.</summary>
/// <param name="Config">The model's configuration, rebuilt from the metadata.</param>
/// <param name="Parameters">The flat parameter buffer in <see cref="BertParameterLayout"/> order.</param>
/// <param name="Metadata">All metadata strings of the file, including format and config.</param>
/// <param name="ExtraTensors">Tensors that are not model parameters (e.g. optimizer moments), by name.</param>
public sealed record BertCheckpointData(BertConfig Config, float[] Parameters,
    IReadOnlyDictionary<string, string> Metadata, IReadOnlyDictionary<string, SafeTensor> ExtraTensors)
{
    public BertParameterLayout Layout => new(Config);

    /// <summary>True when the file carries AdamW state saved by <see cref="BertCheckpoint.SaveTraining"/>.</summary>
    public bool HasOptimizerState => ExtraTensors.ContainsKey(BertCheckpoint.OptimizerFirstMomentName);

    /// <summary>Restores AdamW's moments and step count into <paramref name="optimizer"/>.</summary>
    public void RestoreOptimizer(AdamW optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        if (!ExtraTensors.TryGetValue(BertCheckpoint.OptimizerFirstMomentName, out var m) ||
            !ExtraTensors.TryGetValue(BertCheckpoint.OptimizerSecondMomentName, out var v) ||
            !Metadata.TryGetValue(BertCheckpoint.OptimizerStepKey, out var stepText))
            throw new InvalidDataException($"checkpoint has no optimizer state ('{BertCheckpoint.OptimizerFirstMomentName}', '{BertCheckpoint.OptimizerSecondMomentName}', '{BertCheckpoint.OptimizerStepKey}'); it was saved without SaveTraining, so training cannot resume from it");
        if (!long.TryParse(stepText, NumberStyles.None, CultureInfo.InvariantCulture, out long step))
            throw new InvalidDataException($"checkpoint metadata '{BertCheckpoint.OptimizerStepKey}' = '{stepText}' is not a non-negative integer");
        optimizer.Restore(m.Data, v.Data, step);
    }
}

/// <summary>
/// BERT checkpoints as safetensors files: one tensor per <see cref="BertParameterLayout"/> entry
/// under its Hugging Face name, <c>format = speedlimit-bert</c> and the <see cref="BertConfig"/>
/// as a JSON string in the metadata, plus optional extra tensors and metadata (optimizer state,
/// step, seed) for resumable training.
/// </summary>
public static class BertCheckpoint
{
    public const string FormatKey = "format";
    public const string FormatValue = "speedlimit-bert";
    public const string ConfigKey = "speedlimit.config";
    public const string OptimizerFirstMomentName = "optimizer.adamw.exp_avg";
    public const string OptimizerSecondMomentName = "optimizer.adamw.exp_avg_sq";
    public const string OptimizerStepKey = "optimizer.adamw.step";

    /// <summary>
    /// Saves the parameters (layout order) with the config. <paramref name="metadata"/> keys
    /// <see cref="FormatKey"/> and <see cref="ConfigKey"/> are reserved. Extra tensors are
    /// stored 1-D after the model tensors and must not collide with layout names.
    /// </summary>
    public static void Save(string path, BertConfig config, ReadOnlyMemory<float> parameters,
        IReadOnlyDictionary<string, string>? metadata = null, IReadOnlyDictionary<string, ReadOnlyMemory<float>>? extraTensors = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var layout = new BertParameterLayout(config);
        if (parameters.Length != layout.TotalLength)
            throw new ArgumentException($"parameter buffer has {parameters.Length} values but the layout for {config.Arch} needs {layout.TotalLength}");

        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata is not null)
            foreach (var (k, v) in metadata)
            {
                if (k is FormatKey or ConfigKey) throw new ArgumentException($"metadata key '{k}' is reserved for the checkpoint format; use another key");
                meta[k] = v;
            }
        meta[FormatKey] = FormatValue;
        meta[ConfigKey] = ConfigToJson(config);

        var entries = new List<SafeTensorEntry>(layout.Tensors.Count + (extraTensors?.Count ?? 0));
        foreach (var t in layout.Tensors)
            entries.Add(new SafeTensorEntry(t.Name, t.Shape, parameters.Slice((int)t.Offset, (int)t.Length)));
        if (extraTensors is not null)
            foreach (var (name, data) in extraTensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                if (layout.Contains(name)) throw new ArgumentException($"extra tensor '{name}' has the name of a model parameter; choose another name");
                entries.Add(new SafeTensorEntry(name, [data.Length], data));
            }
        SafeTensors.Write(path, entries, meta);
    }

    /// <summary>
    /// Saves parameters plus AdamW state (m, v as extra tensors, step in metadata) so training
    /// can resume; put seeds, epoch, data position and the like in <paramref name="metadata"/>.
    /// </summary>
    public static void SaveTraining(string path, BertConfig config, ReadOnlyMemory<float> parameters, AdamW optimizer,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        var meta = metadata is null ? new Dictionary<string, string>(StringComparer.Ordinal) : new Dictionary<string, string>(metadata, StringComparer.Ordinal);
        meta[OptimizerStepKey] = optimizer.StepCount.ToString(CultureInfo.InvariantCulture);
        var extra = new Dictionary<string, ReadOnlyMemory<float>>(StringComparer.Ordinal)
        {
            [OptimizerFirstMomentName] = optimizer.FirstMoment.ToArray(),
            [OptimizerSecondMomentName] = optimizer.SecondMoment.ToArray(),
        };
        Save(path, config, parameters, meta, extra);
    }

    /// <summary>
    /// Loads and checks a checkpoint: the format tag, a valid config, and every layout tensor
    /// present with its exact shape. Throws <see cref="InvalidDataException"/> naming the file and
    /// the first problem (missing tensor, wrong shape, bad config) and returns nothing then.
    /// </summary>
    public static BertCheckpointData Load(string path)
    {
        // header, config and every shape are checked before any data is read
        using var reader = SafeTensorsReader.Open(path);
        var meta = reader.Metadata;
        if (!meta.TryGetValue(FormatKey, out var format) || format != FormatValue)
            throw Bad(path, $"metadata '{FormatKey}' is '{format ?? "(missing)"}', expected '{FormatValue}'; this is not a SpeedLimit BERT checkpoint");
        if (!meta.TryGetValue(ConfigKey, out var configJson))
            throw Bad(path, $"metadata '{ConfigKey}' with the model configuration is missing");
        var config = ConfigFromJson(path, configJson);
        var layout = new BertParameterLayout(config);
        foreach (var t in layout.Tensors)
        {
            var info = reader.Find(t.Name) ?? throw Bad(path, $"tensor '{t.Name}' of the {config.Arch} layout is missing");
            if (!info.Shape.AsSpan().SequenceEqual(t.Shape))
                throw Bad(path, $"tensor '{t.Name}' has shape [{string.Join(", ", info.Shape)}] but the {config.Arch} layout needs [{string.Join(", ", t.Shape)}]");
        }

        var parameters = new float[layout.TotalLength];
        var extra = new Dictionary<string, SafeTensor>(StringComparer.Ordinal);
        foreach (var info in reader.Tensors) // data order: one forward pass over the file
        {
            if (layout.Contains(info.Name))
            {
                var t = layout[info.Name];
                reader.ReadInto(info, parameters.AsSpan((int)t.Offset, (int)t.Length));
            }
            else
            {
                var data = new float[info.Count];
                reader.ReadInto(info, data);
                extra.Add(info.Name, new SafeTensor(info.Name, info.Shape, info.DType, data));
            }
        }
        foreach (var t in layout.Tensors)
        {
            // NaN/Inf weights would export and "train" silently (every step skipped): refuse them where they enter.
            var span = parameters.AsSpan((int)t.Offset, (int)t.Length);
            int bad = FirstNonFinite(span);
            if (bad >= 0) throw Bad(path, $"tensor '{t.Name}' holds a non-finite value ({span[bad]}) at element {bad}; the checkpoint is corrupt or came from a diverged run — retrain it or use another checkpoint");
        }
        return new BertCheckpointData(config, parameters, meta, extra);
    }

    /// <summary>Index of the first NaN or ±Inf, or −1.</summary>
    internal static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    private sealed class ConfigDto
    {
        public int Layers { get; set; }
        public int Hidden { get; set; }
        public int Ffn { get; set; }
        public int Heads { get; set; }
        public int VocabSize { get; set; }
        public string Head { get; set; } = "";
        public int Labels { get; set; }
        public int MaxPositions { get; set; }
        public int TypeVocabSize { get; set; }
        public float LayerNormEps { get; set; }
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    };

    /// <summary>The config as the JSON string stored under <see cref="ConfigKey"/>.</summary>
    public static string ConfigToJson(BertConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var dto = new ConfigDto
        {
            Layers = config.Layers, Hidden = config.Hidden, Ffn = config.Ffn, Heads = config.Heads,
            VocabSize = config.VocabSize, Head = config.Head.ToString(), Labels = config.Labels,
            MaxPositions = config.MaxPositions, TypeVocabSize = config.TypeVocabSize, LayerNormEps = config.LayerNormEps,
        };
        return JsonSerializer.Serialize(dto, JsonOptions);
    }

    private static BertConfig ConfigFromJson(string path, string json)
    {
        ConfigDto? dto;
        try { dto = JsonSerializer.Deserialize<ConfigDto>(json, JsonOptions); }
        catch (JsonException ex) { throw Bad(path, $"metadata '{ConfigKey}' is not a valid config ({ex.Message})"); }
        if (dto is null) throw Bad(path, $"metadata '{ConfigKey}' is null");
        if (!Enum.TryParse<HeadKind>(dto.Head, ignoreCase: false, out var head) || !Enum.IsDefined(head))
            throw Bad(path, $"metadata '{ConfigKey}' has unknown head '{dto.Head}' (expected one of {string.Join(", ", Enum.GetNames<HeadKind>())})");
        try
        {
            return new BertConfig(new Architecture(dto.Layers, dto.Hidden, dto.Ffn), dto.Heads, dto.VocabSize, head,
                dto.Labels, dto.MaxPositions, dto.TypeVocabSize, dto.LayerNormEps);
        }
        catch (ArgumentException ex) { throw Bad(path, $"metadata '{ConfigKey}' describes an invalid model: {ex.Message}"); }
    }

    private static InvalidDataException Bad(string path, string problem) => new($"checkpoint '{path}': {problem}");
}
