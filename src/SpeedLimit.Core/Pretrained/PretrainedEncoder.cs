using SpeedLimit.Model;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Pretrained;

/// <summary>
/// A pretrained BERT imported into the engine's layout: the encoder's shape, every tensor the source
/// carried under our (Hugging Face, <c>bert.</c>-prefixed) names and shapes (linear weights (out, in)),
/// and the tokenizer's vocabulary. Which task head sits on top is chosen later by
/// <see cref="CreateModel"/>: tensors of the chosen layout that the source lacks (a classifier for a
/// new task, say) start from BERT's random initialization.
/// </summary>
public sealed class PretrainedEncoder
{
    public PretrainedEncoder(BertConfig config, IReadOnlyDictionary<string, float[]> tensors, IReadOnlyList<string> vocab,
        bool lowerCase, string source, IReadOnlyList<string>? notes = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(vocab);
        if (vocab.Count != config.VocabSize)
            throw new InvalidDataException($"{source}: the vocabulary has {vocab.Count} tokens but the word embeddings have {config.VocabSize} rows; use the vocab.txt that belongs to this model");
        var layout = new BertParameterLayout(config);
        foreach (var (name, data) in tensors)
        {
            if (!layout.Contains(name)) continue; // checked by the importers; CreateModel picks by name
            if (data.LongLength != layout[name].Length)
                throw new InvalidDataException($"{source}: tensor '{name}' has {data.LongLength} values but a {config.Arch} model needs {layout[name].Length}");
        }
        foreach (var required in EncoderTensorNames(config))
            if (!tensors.ContainsKey(required))
                throw new InvalidDataException($"{source}: tensor '{required}' is missing; a BERT encoder needs every embedding, attention, FFN and LayerNorm tensor");
        Config = config;
        Tensors = tensors;
        Vocab = vocab;
        LowerCase = lowerCase;
        Source = source;
        Notes = notes ?? [];
    }

    /// <summary>Shape of the encoder; <see cref="BertConfig.Head"/> and labels say which head the source carried.</summary>
    public BertConfig Config { get; }
    /// <summary>Tensors by our layout names, row-major in our shapes.</summary>
    public IReadOnlyDictionary<string, float[]> Tensors { get; }
    public IReadOnlyList<string> Vocab { get; }
    /// <summary>Whether the tokenizer lower-cases (and strips accents), as <c>do_lower_case</c> says.</summary>
    public bool LowerCase { get; }
    /// <summary>Where it came from, for messages and reports (a path or <c>minilm-l6</c>).</summary>
    public string Source { get; }
    /// <summary>What the import decided or could not map and left out (e.g. an unused MLM head), for the user.</summary>
    public IReadOnlyList<string> Notes { get; }

    public Architecture Arch => Config.Arch;
    public bool HasPooler => Tensors.ContainsKey(N.PoolerWeight) && Tensors.ContainsKey(N.PoolerBias);

    /// <summary>Names of the tensors every imported encoder must have (embeddings, layers, LayerNorms).</summary>
    public static IEnumerable<string> EncoderTensorNames(BertConfig config)
    {
        var layout = new BertParameterLayout(config);
        return layout.Tensors.Select(t => t.Name).Where(IsEncoderTensor);
    }

    /// <summary>True for embedding and encoder-layer tensors (not pooler, classifier or MLM head).</summary>
    public static bool IsEncoderTensor(string name) =>
        name.StartsWith("bert.embeddings.", StringComparison.Ordinal) || name.StartsWith("bert.encoder.", StringComparison.Ordinal);

    /// <summary>
    /// A model with the pretrained encoder (and pooler, and head when the source's matches) under the
    /// given head. Everything else is initialized as BERT does, from <paramref name="seed"/>.
    /// <paramref name="randomInitialized"/> lists those tensors' names.
    /// </summary>
    public BertModel CreateModel(HeadKind head, int labels, int seed, out IReadOnlyList<string> randomInitialized)
    {
        var config = new BertConfig(Config.Arch, Config.Heads, Config.VocabSize, head, labels, Config.MaxPositions, Config.TypeVocabSize, Config.LayerNormEps);
        var model = new BertModel(config);
        var rng = new Random(seed);
        var random = new List<string>();
        foreach (var t in model.Layout.Tensors)
        {
            var span = model.Tensor(t.Name);
            if (Tensors.TryGetValue(t.Name, out var data) && data.LongLength == t.Length)
            {
                data.AsSpan().CopyTo(span);
                continue;
            }
            // BERT's initialization, as BertModel.CreateRandom: N(0, 0.02) matrices, zero biases, unit LayerNorm scales.
            random.Add(t.Name);
            if (t.Name.Contains("LayerNorm.weight", StringComparison.Ordinal)) span.Fill(1f);
            else if (t.Shape.Length == 1) span.Clear();
            else for (int i = 0; i < span.Length; i++) span[i] = 0.02f * BertModel.NextGaussian(rng);
        }
        randomInitialized = random;
        return model;
    }

    /// <summary>The model as the source carried it (its own head), for parity checks and re-export.</summary>
    public BertModel CreateModel(int seed = 1) => CreateModel(Config.Head, Config.Labels, seed, out _);
}
