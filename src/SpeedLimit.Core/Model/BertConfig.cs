namespace SpeedLimit.Model;

/// <summary>What sits on top of the encoder.</summary>
public enum HeadKind
{
    /// <summary>Pooler + linear layer to <see cref="BertConfig.Labels"/> logits.</summary>
    Classification,
    /// <summary>Pooler + linear layer to one output.</summary>
    Regression,
    /// <summary>Transform + LayerNorm + decoder tied to the word embeddings.</summary>
    MaskedLm,
}

/// <summary>
/// Everything that fixes a BERT encoder's parameter shapes. Heads are a fixed count; the
/// head size is Hidden / Heads and must be an integer.
/// </summary>
public sealed record BertConfig
{
    public BertConfig(Architecture arch, int heads, int vocabSize, HeadKind head, int labels = 2,
        int maxPositions = 512, int typeVocabSize = 2, float layerNormEps = 1e-12f)
    {
        ArgumentNullException.ThrowIfNull(arch);
        if (arch.Layers < 1) throw new ArgumentException($"architecture {arch}: needs at least 1 encoder layer");
        if (arch.Hidden < 1 || arch.Ffn < 1) throw new ArgumentException($"architecture {arch}: hidden and FFN sizes must be positive");
        if (heads < 1) throw new ArgumentException($"head count {heads} must be positive");
        if (arch.Hidden % heads != 0)
            throw new ArgumentException($"architecture {arch}: hidden size {arch.Hidden} is not divisible by {heads} heads; choose a hidden size that is a multiple of the head count");
        if (vocabSize < 1) throw new ArgumentException($"vocabulary size {vocabSize} must be positive");
        if (maxPositions < 1 || typeVocabSize < 1) throw new ArgumentException("max positions and token types must be positive");
        if (head == HeadKind.Classification && labels < 2) throw new ArgumentException($"a classification head needs at least 2 labels, got {labels}");
        Arch = arch;
        Heads = heads;
        VocabSize = vocabSize;
        Head = head;
        Labels = head == HeadKind.Regression ? 1 : labels;
        MaxPositions = maxPositions;
        TypeVocabSize = typeVocabSize;
        LayerNormEps = layerNormEps;
    }

    public Architecture Arch { get; init; }
    public int Heads { get; init; }
    public int VocabSize { get; init; }
    public HeadKind Head { get; init; }
    /// <summary>Output width of the classification head (1 for regression).</summary>
    public int Labels { get; init; }
    public int MaxPositions { get; init; }
    public int TypeVocabSize { get; init; }
    public float LayerNormEps { get; init; }

    public int Layers => Arch.Layers;
    public int Hidden => Arch.Hidden;
    public int Ffn => Arch.Ffn;
    public int HeadSize => Arch.Hidden / Heads;

    /// <summary>The same vocabulary, heads and task head with another (e, h, f).</summary>
    public BertConfig WithArch(Architecture arch) =>
        new(arch, Heads, VocabSize, Head, Labels, MaxPositions, TypeVocabSize, LayerNormEps);
}
