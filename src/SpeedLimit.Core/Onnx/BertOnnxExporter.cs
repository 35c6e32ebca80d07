using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Quantization;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Onnx;

/// <summary>How a dynamically quantized linear layer is written into the int8 graph.</summary>
public enum QuantizedMatMulForm
{
    /// <summary>One com.microsoft <c>DynamicQuantizeMatMul</c> node per linear layer (ORT's fused form).</summary>
    Fused,
    /// <summary>Standard ops: <c>DynamicQuantizeLinear</c> + <c>MatMulInteger</c> + <c>Cast</c> + scale <c>Mul</c> + bias <c>Add</c>.</summary>
    Standard,
}

/// <summary>What the exporter writes.</summary>
public sealed class OnnxExportOptions
{
    public Precision Precision { get; set; } = Precision.Fp32;
    /// <summary>int8 only: one weight scale per output channel instead of one per tensor.</summary>
    public bool PerChannel { get; set; }
    public QuantizedMatMulForm MatMulForm { get; set; } = QuantizedMatMulForm.Fused;
    /// <summary>The task and tokenizer contract to write into the file's metadata (none for a bare export).</summary>
    public ModelContract? Contract { get; set; }
}

/// <summary>
/// Writes a BERT encoder with a classification or regression head as an ONNX graph (opset 17,
/// com.microsoft opset 1 for <c>Gelu</c> and <c>DynamicQuantizeMatMul</c>).
/// Inputs <c>input_ids</c>, <c>attention_mask</c>, <c>token_type_ids</c>: int64 (batch, sequence);
/// output <c>logits</c>: float (batch, labels); batch and sequence are dynamic.
/// Semantics, matching the engine: embeddings = word + position(0..T−1) + token type, LayerNorm;
/// per layer Q,K,V = x·Wᵀ+b split into heads of size h/heads (head j = features j·hs..(j+1)·hs),
/// scores = QKᵀ·(1/√hs) + (1 − mask)·(−10000) (as Hugging Face BERT), softmax, context, output dense,
/// residual + LayerNorm, FFN (dense, exact erf GELU, dense), residual + LayerNorm;
/// pooler = tanh(dense(first token)); classifier dense → logits.
/// int8: every linear layer is dynamically quantized (int8 symmetric weights via
/// <see cref="DynamicQuantization.QuantizeWeight"/>, uint8 activations per tensor at run time); embeddings,
/// LayerNorm, softmax and the attention products stay fp32.
/// </summary>
public static class BertOnnxExporter
{
    public const string InputIds = "input_ids";
    public const string AttentionMask = "attention_mask";
    public const string TokenTypeIds = "token_type_ids";
    public const string Logits = "logits";
    public const int Opset = 17;
    public const float MaskValue = -10000f;
    /// <summary>Metadata key of the number of positions the model has embeddings for: longer inputs cannot run.</summary>
    public const string PositionLimitKey = "position_limit";

    public static OnnxModel Build(BertConfig config, BertParameterLayout layout, ReadOnlyMemory<float> parameters, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(layout);
        if (layout.Config != config)
            throw new ArgumentException($"the parameter layout was built for another config ({layout.Config.Arch}) than the one exported ({config.Arch})");
        if (parameters.Length != layout.TotalLength)
            throw new ArgumentException($"parameter buffer has {parameters.Length} floats, the layout of {config.Arch} needs {layout.TotalLength}");
        return Build(config, name =>
        {
            var t = layout[name];
            return parameters.Slice((int)t.Offset, (int)t.Length);
        }, options);
    }

    public static OnnxModel Build(BertConfig config, Func<string, ReadOnlyMemory<float>> tensor, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensor);
        options ??= new OnnxExportOptions();
        if (config.Head == HeadKind.MaskedLm)
            throw new ArgumentException("the ONNX exporter writes classification and regression heads only; a masked-LM model has no deployable head (fine-tune it on a task first)");
        if (!Enum.IsDefined(options.Precision))
            throw new ArgumentException($"unknown precision '{options.Precision}'; use fp32 or int8");
        if (options.Contract is { } c && (c.MaxLength > config.MaxPositions || c.VocabSize != config.VocabSize))
            throw new ArgumentException($"the model contract (max length {c.MaxLength}, vocabulary {c.VocabSize}) does not fit the model ({config.MaxPositions} positions, vocabulary {config.VocabSize})");
        var layout = new BertParameterLayout(config);
        ReadOnlySpan<float> Get(string name)
        {
            var expected = layout[name].Length;
            var mem = tensor(name);
            if (mem.Length != expected)
                throw new ArgumentException($"tensor '{name}' has {mem.Length} values, {config.Arch} needs {expected} ({string.Join("x", layout[name].Shape)})");
            return mem.Span;
        }

        int h = config.Hidden, heads = config.Heads, hs = config.HeadSize;
        var g = new OnnxGraphBuilder($"speedlimit_bert_{config.Layers}_{h}_{config.Ffn}_{options.Precision.ToString().ToLowerInvariant()}");
        var ids = g.Input(InputIds, OnnxDataType.Int64, "batch", "sequence");
        var mask = g.Input(AttentionMask, OnnxDataType.Int64, "batch", "sequence");
        var types = g.Input(TokenTypeIds, OnnxDataType.Int64, "batch", "sequence");

        // Shared constants.
        var zero1 = g.Int64("const_zero_1d", [1], [0L]);
        var axis0 = g.Int64("const_axis0_1d", [1], [0L]);
        var firstToken = g.Int64("const_first_token", [], [0L]);
        var headsShape = g.Int64("const_split_heads_shape", [4], [0L, 0L, heads, hs]);
        var mergeShape = g.Int64("const_merge_heads_shape", [3], [0L, 0L, h]);
        var one = g.Float("const_one", [], [1f]);
        var maskValue = g.Float("const_mask_value", [], [MaskValue]);
        var invSqrtHs = g.Float("const_inv_sqrt_head_size", [], [1f / MathF.Sqrt(hs)]);
        var maskAxes = g.Int64("const_mask_axes", [2], [1L, 2L]);
        var eps = new OnnxAttribute("epsilon", Float: config.LayerNormEps);
        var lastAxis = new OnnxAttribute("axis", Int: -1);

        string Param(string name, params long[] dims) => g.Float(name, dims, Get(name));
        string LayerNorm(string x, string weightName, string biasName) =>
            g.Node("LayerNormalization", [x, Param(weightName, h), Param(biasName, h)], [lastAxis, eps]);
        string Linear(string x, string weightName, string biasName, int outDim, int inDim) =>
            options.Precision == Precision.Int8
                ? QuantizedLinear(g, x, Get(weightName), Get(biasName), weightName, outDim, inDim, options)
                : g.Node("Add", [g.Node("MatMul", [x, g.Float(weightName + "_t", [inDim, outDim], Transpose(Get(weightName), outDim, inDim))]), Param(biasName, outDim)]);

        // Embeddings: word + position(0..T−1) + token type → LayerNorm.    // (B,T,h)
        var word = g.Node("Gather", [Param(N.WordEmbeddings, config.VocabSize, h), ids]);
        var seqLen = g.Node("Shape", [ids], [new OnnxAttribute("start", Int: 1), new OnnxAttribute("end", Int: 2)]);
        var positions = g.Node("Slice", [Param(N.PositionEmbeddings, config.MaxPositions, h), zero1, seqLen, axis0]); // (T,h)
        var tokenType = g.Node("Gather", [Param(N.TokenTypeEmbeddings, config.TypeVocabSize, h), types]);
        var x = g.Node("Add", [g.Node("Add", [word, positions]), tokenType]);
        x = LayerNorm(x, N.EmbeddingsLayerNormWeight, N.EmbeddingsLayerNormBias);

        // Additive mask (1 − m)·(−10000), broadcast over heads and query positions.   // (B,1,1,T)
        var maskFloat = g.Node("Cast", [mask], [new OnnxAttribute("to", Int: (long)OnnxDataType.Float)]);
        var additiveMask = g.Node("Unsqueeze", [g.Node("Mul", [g.Node("Sub", [one, maskFloat]), maskValue]), maskAxes]);

        for (int l = 0; l < config.Layers; l++)
        {
            var q = Linear(x, N.Query(l, "weight"), N.Query(l, "bias"), h, h);
            var k = Linear(x, N.Key(l, "weight"), N.Key(l, "bias"), h, h);
            var v = Linear(x, N.Value(l, "weight"), N.Value(l, "bias"), h, h);
            var qh = g.Node("Transpose", [g.Node("Reshape", [q, headsShape])], [new OnnxAttribute("perm", Ints: [0, 2, 1, 3])]); // (B,H,T,hs)
            var kh = g.Node("Transpose", [g.Node("Reshape", [k, headsShape])], [new OnnxAttribute("perm", Ints: [0, 2, 3, 1])]); // (B,H,hs,T)
            var vh = g.Node("Transpose", [g.Node("Reshape", [v, headsShape])], [new OnnxAttribute("perm", Ints: [0, 2, 1, 3])]); // (B,H,T,hs)
            var scores = g.Node("Add", [g.Node("Mul", [g.Node("MatMul", [qh, kh]), invSqrtHs]), additiveMask]);                  // (B,H,T,T)
            var probs = g.Node("Softmax", [scores], [lastAxis]);
            var context = g.Node("Transpose", [g.Node("MatMul", [probs, vh])], [new OnnxAttribute("perm", Ints: [0, 2, 1, 3])]); // (B,T,H,hs)
            context = g.Node("Reshape", [context, mergeShape]);                                                               // (B,T,h)
            var attnOut = Linear(context, N.AttentionOutput(l, "weight"), N.AttentionOutput(l, "bias"), h, h);
            x = LayerNorm(g.Node("Add", [attnOut, x]), N.AttentionLayerNorm(l, "weight"), N.AttentionLayerNorm(l, "bias"));
            var inter = g.Node("Gelu", [Linear(x, N.Intermediate(l, "weight"), N.Intermediate(l, "bias"), config.Ffn, h)], domain: "com.microsoft"); // (B,T,f)
            var ffnOut = Linear(inter, N.Output(l, "weight"), N.Output(l, "bias"), h, config.Ffn);
            x = LayerNorm(g.Node("Add", [ffnOut, x]), N.OutputLayerNorm(l, "weight"), N.OutputLayerNorm(l, "bias"));
        }

        var first = g.Node("Gather", [x, firstToken], [new OnnxAttribute("axis", Int: 1)]);                // (B,h)
        var pooled = g.Node("Tanh", [Linear(first, N.PoolerWeight, N.PoolerBias, h, h)]);
        var logitsRaw = Linear(pooled, N.ClassifierWeight, N.ClassifierBias, config.Labels, h);            // (B,labels)
        g.Node("Identity", [logitsRaw], output: Logits);
        g.Output(Logits, OnnxDataType.Float, "batch", (long)config.Labels);

        var doc = $"SpeedLimit BERT {config.Arch}, {heads} heads, {config.Head}, {options.Precision}" +
                  (options.Precision == Precision.Int8 ? $" ({(options.PerChannel ? "per-channel" : "per-tensor")} int8 weights, {options.MatMulForm})" : "");
        var metadata = new Dictionary<string, string>
        {
            [PositionLimitKey] = config.MaxPositions.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["architecture"] = config.Arch.ToString(),
            ["heads"] = heads.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["precision"] = options.Precision.ToString().ToLowerInvariant(),
            ["inputs"] = $"{InputIds},{AttentionMask},{TokenTypeIds} (int64, batch × sequence)",
            ["outputs"] = $"{Logits} (float, batch × {config.Labels})",
        };
        if (options.Contract is { } contract)
            foreach (var (k, v) in contract.ToMetadata()) metadata[k] = v;
        return new OnnxModel(g.Build(), new Dictionary<string, long> { [""] = Opset, ["com.microsoft"] = 1 }, DocString: doc, Metadata: metadata);
    }

    public static byte[] ToBytes(BertConfig config, BertParameterLayout layout, ReadOnlyMemory<float> parameters, OnnxExportOptions? options = null) =>
        OnnxProtoWriter.ToBytes(Build(config, layout, parameters, options));

    /// <summary>Writes the model to <paramref name="path"/> atomically (temp file + rename).</summary>
    public static void Save(BertConfig config, BertParameterLayout layout, ReadOnlyMemory<float> parameters, string path, OnnxExportOptions? options = null) =>
        OnnxProtoWriter.Save(Build(config, layout, parameters, options), path);

    private static string QuantizedLinear(OnnxGraphBuilder g, string x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias,
        string weightName, int outDim, int inDim, OnnxExportOptions options)
    {
        var q = DynamicQuantization.QuantizeWeight(weight, outDim, inDim, options.PerChannel);
        var wq = g.Int8(weightName + "_quantized", [inDim, outDim], Transpose(q.Values, outDim, inDim));
        long[] scaleDims = q.PerChannel ? [outDim] : [];
        var scale = g.Float(weightName + "_scale", scaleDims, q.Scales);
        var b = g.Float(weightName.Replace(".weight", ".bias", StringComparison.Ordinal) + "_for_int8", [outDim], bias);
        if (options.MatMulForm == QuantizedMatMulForm.Fused)
        {
            var zp = g.Int8(weightName + "_zero_point", scaleDims, new sbyte[q.Scales.Length]);
            return g.Node("DynamicQuantizeMatMul", [x, wq, scale, zp, b], domain: "com.microsoft");
        }
        var dq = g.NodeMulti("DynamicQuantizeLinear", [x], 3);
        var acc = g.Node("MatMulInteger", [dq[0], wq, dq[2]]);
        var accFloat = g.Node("Cast", [acc], [new OnnxAttribute("to", Int: (long)OnnxDataType.Float)]);
        var multiplier = g.Node("Mul", [dq[1], scale]);
        return g.Node("Add", [g.Node("Mul", [accFloat, multiplier]), b]);
    }

    /// <summary>(rows,cols) → (cols,rows).</summary>
    internal static T[] Transpose<T>(ReadOnlySpan<T> m, int rows, int cols)
    {
        var t = new T[m.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                t[c * rows + r] = m[r * cols + c];
        return t;
    }
}
