namespace SpeedLimit.Model;

/// <summary>One named tensor inside the flat parameter buffer.</summary>
/// <param name="Name">Hugging Face BERT name, e.g. <c>bert.encoder.layer.0.attention.self.query.weight</c>.</param>
/// <param name="Shape">Row-major shape; linear weights are (out, in) as in PyTorch.</param>
/// <param name="Offset">Start in the flat buffer, in floats.</param>
public sealed record ParameterTensor(string Name, int[] Shape, long Offset)
{
    public long Length => Shape.Aggregate(1L, (p, d) => p * d);
    public int Rows => Shape[0];
    public int Columns => Shape.Length > 1 ? Shape[1] : 1;
    /// <summary>Biases and LayerNorm parameters get no weight decay.</summary>
    public bool IsDecayed => Shape.Length == 2 && !Name.Contains("LayerNorm", StringComparison.Ordinal);
}

/// <summary>
/// The named layout that carves one flat float buffer into a BERT model's tensors, in a fixed
/// order. Names follow Hugging Face's BertModel so checkpoints read like theirs.
/// </summary>
public sealed class BertParameterLayout
{
    private readonly Dictionary<string, ParameterTensor> _byName = new(StringComparer.Ordinal);

    public BertParameterLayout(BertConfig config)
    {
        Config = config;
        int h = config.Hidden, f = config.Ffn, v = config.VocabSize;
        var list = new List<ParameterTensor>();
        long offset = 0;
        void Add(string name, params int[] shape)
        {
            var t = new ParameterTensor(name, shape, offset);
            list.Add(t);
            _byName.Add(name, t);
            offset += t.Length;
        }

        Add(Names.WordEmbeddings, v, h);
        Add(Names.PositionEmbeddings, config.MaxPositions, h);
        Add(Names.TokenTypeEmbeddings, config.TypeVocabSize, h);
        Add(Names.EmbeddingsLayerNormWeight, h);
        Add(Names.EmbeddingsLayerNormBias, h);
        for (int l = 0; l < config.Layers; l++)
        {
            Add(Names.Query(l, "weight"), h, h); Add(Names.Query(l, "bias"), h);
            Add(Names.Key(l, "weight"), h, h); Add(Names.Key(l, "bias"), h);
            Add(Names.Value(l, "weight"), h, h); Add(Names.Value(l, "bias"), h);
            Add(Names.AttentionOutput(l, "weight"), h, h); Add(Names.AttentionOutput(l, "bias"), h);
            Add(Names.AttentionLayerNorm(l, "weight"), h); Add(Names.AttentionLayerNorm(l, "bias"), h);
            Add(Names.Intermediate(l, "weight"), f, h); Add(Names.Intermediate(l, "bias"), f);
            Add(Names.Output(l, "weight"), h, f); Add(Names.Output(l, "bias"), h);
            Add(Names.OutputLayerNorm(l, "weight"), h); Add(Names.OutputLayerNorm(l, "bias"), h);
        }
        if (config.Head == HeadKind.MaskedLm)
        {
            Add(Names.MlmTransformWeight, h, h); Add(Names.MlmTransformBias, h);
            Add(Names.MlmLayerNormWeight, h); Add(Names.MlmLayerNormBias, h);
            Add(Names.MlmDecoderBias, v); // decoder weight is tied to the word embeddings
        }
        else
        {
            Add(Names.PoolerWeight, h, h); Add(Names.PoolerBias, h);
            Add(Names.ClassifierWeight, config.Labels, h); Add(Names.ClassifierBias, config.Labels);
        }
        Tensors = list;
        TotalLength = offset;
    }

    public BertConfig Config { get; }
    public IReadOnlyList<ParameterTensor> Tensors { get; }
    public long TotalLength { get; }

    public ParameterTensor this[string name] =>
        _byName.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"no parameter named '{name}' in layout for {Config.Arch}");

    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Hugging Face BERT tensor names.</summary>
    public static class Names
    {
        public const string WordEmbeddings = "bert.embeddings.word_embeddings.weight";
        public const string PositionEmbeddings = "bert.embeddings.position_embeddings.weight";
        public const string TokenTypeEmbeddings = "bert.embeddings.token_type_embeddings.weight";
        public const string EmbeddingsLayerNormWeight = "bert.embeddings.LayerNorm.weight";
        public const string EmbeddingsLayerNormBias = "bert.embeddings.LayerNorm.bias";
        public const string PoolerWeight = "bert.pooler.dense.weight";
        public const string PoolerBias = "bert.pooler.dense.bias";
        public const string ClassifierWeight = "classifier.weight";
        public const string ClassifierBias = "classifier.bias";
        public const string MlmTransformWeight = "cls.predictions.transform.dense.weight";
        public const string MlmTransformBias = "cls.predictions.transform.dense.bias";
        public const string MlmLayerNormWeight = "cls.predictions.transform.LayerNorm.weight";
        public const string MlmLayerNormBias = "cls.predictions.transform.LayerNorm.bias";
        public const string MlmDecoderBias = "cls.predictions.bias";

        private static string Layer(int l) => $"bert.encoder.layer.{l}.";
        public static string Query(int l, string p) => Layer(l) + "attention.self.query." + p;
        public static string Key(int l, string p) => Layer(l) + "attention.self.key." + p;
        public static string Value(int l, string p) => Layer(l) + "attention.self.value." + p;
        public static string AttentionOutput(int l, string p) => Layer(l) + "attention.output.dense." + p;
        public static string AttentionLayerNorm(int l, string p) => Layer(l) + "attention.output.LayerNorm." + p;
        public static string Intermediate(int l, string p) => Layer(l) + "intermediate.dense." + p;
        public static string Output(int l, string p) => Layer(l) + "output.dense." + p;
        public static string OutputLayerNorm(int l, string p) => Layer(l) + "output.LayerNorm." + p;
    }
}
