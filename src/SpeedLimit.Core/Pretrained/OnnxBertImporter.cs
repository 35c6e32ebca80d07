using System.Buffers.Binary;
using Google.Protobuf;
using Onnx;
using SpeedLimit.Model;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Pretrained;

/// <summary>What the graph alone cannot tell reliably; taken from a config.json beside the file when there is one.</summary>
/// <param name="Heads">Attention heads (otherwise read from the graph's head reshape or score scale).</param>
/// <param name="LayerNormEps">LayerNorm epsilon (otherwise read from the graph).</param>
internal sealed record OnnxImportHints(int? Heads = null, float? LayerNormEps = null);

/// <summary>
/// Imports a BERT from an ONNX export of a Hugging Face model (torch.onnx or optimum, without ORT's
/// fusions or quantization) into our layout. Embeddings, LayerNorms and biases are named initializers;
/// linear weights are often anonymous (<c>927</c>, <c>onnx::MatMul_927</c>) and transposed ([in, out]):
/// each is found by following the graph from its layer's named bias to the Add it feeds and from there to
/// the MatMul whose constant input is the weight (or the Gemm the bias feeds). The shape comes from the
/// tensors; heads and LayerNorm epsilon from the graph (the head reshape and the epsilon constant) unless
/// hints give them. Anything that cannot be attributed is an error naming the node and tensor.
/// </summary>
internal static class OnnxBertImporter
{
    private static readonly HashSet<string> FusedOps = new(StringComparer.Ordinal)
    {
        "Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization",
        "FastGelu", "BiasGelu", "QAttention", "QOrderedAttention", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul",
        "MatMulIntegerToFloat", "MatMulNBits", "DequantizeLinear", "QuantizeLinear",
    };

    private static readonly string[] LinearLayers = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"];

    /// <summary>
    /// Imports <paramref name="onnxPath"/>. The vocabulary is <paramref name="vocabPath"/> or the
    /// <c>vocab.txt</c> beside the file; a <c>config.json</c> / <c>tokenizer_config.json</c> beside it
    /// give heads, epsilon and casing (and are checked against the graph).
    /// </summary>
    public static PretrainedEncoder ReadFile(string onnxPath, string? vocabPath = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(onnxPath);
        if (!File.Exists(onnxPath)) throw new FileNotFoundException($"ONNX model '{onnxPath}' does not exist", onnxPath);
        var dir = Path.GetDirectoryName(Path.GetFullPath(onnxPath))!;
        vocabPath ??= Path.Combine(dir, HuggingFaceFolder.VocabFile);
        if (!File.Exists(vocabPath))
            throw new FileNotFoundException($"no vocabulary for '{onnxPath}': pass --vocab with the model's vocab.txt (none beside the file either)", vocabPath);
        var vocab = HuggingFaceFolder.ReadVocabLines(vocabPath);
        var hints = HintsFrom(dir, out bool lowerCase);
        return Import(File.ReadAllBytes(onnxPath), vocab, lowerCase, onnxPath, hints, dir);
    }

    private static OnnxImportHints HintsFrom(string dir, out bool lowerCase)
    {
        lowerCase = true;
        int? heads = null;
        float? eps = null;
        var config = Path.Combine(dir, HuggingFaceFolder.ConfigFile);
        try
        {
            if (File.Exists(config))
            {
                using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(config));
                if (doc.RootElement.TryGetProperty("num_attention_heads", out var h) && h.TryGetInt32(out int hv)) heads = hv;
                if (doc.RootElement.TryGetProperty("layer_norm_eps", out var e) && e.TryGetDouble(out double ev)) eps = (float)ev;
                if (doc.RootElement.TryGetProperty("hidden_act", out var act) && act.GetString() is string a && !HuggingFaceFolder.SupportedActivations.Contains(a))
                    throw new InvalidDataException($"{config}: hidden_act is '{a}', which SpeedLimit's engine does not compute (supported: {string.Join(", ", HuggingFaceFolder.SupportedActivations)})");
            }
            var tok = Path.Combine(dir, HuggingFaceFolder.TokenizerConfigFile);
            if (File.Exists(tok))
            {
                using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tok));
                if (doc.RootElement.TryGetProperty("do_lower_case", out var lc) && lc.ValueKind is System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False)
                    lowerCase = lc.GetBoolean();
            }
        }
        catch (System.Text.Json.JsonException ex) { throw new InvalidDataException($"{dir}: config.json or tokenizer_config.json is not valid JSON ({ex.Message})"); }
        return new OnnxImportHints(heads, eps);
    }

    /// <summary>Imports an ONNX model held in memory; <paramref name="source"/> names it in messages.</summary>
    public static PretrainedEncoder Import(byte[] onnx, IReadOnlyList<string> vocab, bool lowerCase, string source, OnnxImportHints? hints = null, string? externalDataDir = null)
    {
        ArgumentNullException.ThrowIfNull(onnx);
        ModelProto model;
        try { model = ModelProto.Parser.ParseFrom(onnx); }
        catch (InvalidProtocolBufferException ex) { throw new InvalidDataException($"{source}: not an ONNX model ({ex.Message})"); }
        if (model.Graph is null) throw new InvalidDataException($"{source}: the ONNX model has no graph");
        return new GraphMapper(model.Graph, source, externalDataDir).Map(vocab, lowerCase, hints ?? new OnnxImportHints());
    }

    private sealed class GraphMapper
    {
        private readonly GraphProto _g;
        private readonly string _source;
        private readonly string? _dataDir;
        private readonly Dictionary<string, TensorProto> _constants = new(StringComparer.Ordinal);
        private readonly HashSet<string> _initializerNames = new(StringComparer.Ordinal);
        private readonly Dictionary<string, NodeProto> _producer = new(StringComparer.Ordinal);
        private readonly Dictionary<string, List<NodeProto>> _consumers = new(StringComparer.Ordinal);
        private readonly HashSet<string> _usedWeights = new(StringComparer.Ordinal);
        private readonly List<string> _problems = [];

        public GraphMapper(GraphProto g, string source, string? dataDir)
        {
            _g = g;
            _source = source;
            _dataDir = dataDir;
            foreach (var t in g.Initializer) { _constants[t.Name] = t; _initializerNames.Add(t.Name); }
            foreach (var n in g.Node)
            {
                if (FusedOps.Contains(n.OpType))
                    throw new InvalidDataException($"{source}: node '{n.Name}' is a fused or quantized '{n.OpType}'; import the plain fp32 export (torch.onnx.export, or optimum without ONNX Runtime optimization or quantization)");
                foreach (var o in n.Output) _producer[o] = n;
                for (int i = 0; i < n.Input.Count; i++)
                {
                    if (!_consumers.TryGetValue(n.Input[i], out var list)) _consumers[n.Input[i]] = list = [];
                    list.Add(n);
                }
                if (n.OpType == "Constant" && n.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } value)
                    _constants[n.Output[0]] = value;
            }
        }

        public PretrainedEncoder Map(IReadOnlyList<string> vocab, bool lowerCase, OnnxImportHints hints)
        {
            // 1. Named initializers in our naming.
            var named = new Dictionary<string, string>(StringComparer.Ordinal); // our name → initializer name
            foreach (var name in _initializerNames)
            {
                var ours = HuggingFaceFolder.MapName(name, out var role);
                if (role == HuggingFaceFolder.NameRole.Mapped) named.TryAdd(ours, name);
            }
            if (!named.TryGetValue(N.WordEmbeddings, out var wordName))
                throw new InvalidDataException($"{_source}: no initializer named 'embeddings.word_embeddings.weight' (or 'bert.…'); this does not look like an ONNX export of a Hugging Face BERT");
            var word = Dims(wordName);
            if (word.Length != 2) throw new InvalidDataException($"{_source}: '{wordName}' has shape [{string.Join(", ", word)}], expected (vocab, hidden)");
            int vocabSize = word[0], hidden = word[1];
            int layers = 0;
            while (named.ContainsKey(N.Query(layers, "bias"))) layers++;
            if (layers == 0) throw new InvalidDataException($"{_source}: no initializer named 'encoder.layer.0.attention.self.query.bias'; cannot find the encoder layers");
            if (!named.TryGetValue(N.Intermediate(0, "bias"), out var ffnBias))
                throw new InvalidDataException($"{_source}: no initializer 'encoder.layer.0.intermediate.dense.bias'; cannot tell the FFN size");
            int ffn = Dims(ffnBias)[0];
            int positions = named.TryGetValue(N.PositionEmbeddings, out var posName) ? Dims(posName)[0] : throw Missing(N.PositionEmbeddings);
            int types = named.TryGetValue(N.TokenTypeEmbeddings, out var typeName) ? Dims(typeName)[0] : throw Missing(N.TokenTypeEmbeddings);

            // 2. Every linear layer's weight, found from its bias.
            var tensors = new Dictionary<string, float[]>(StringComparer.Ordinal);
            foreach (var (ours, init) in named)
            {
                if (ours.EndsWith(".weight", StringComparison.Ordinal) && IsLinear(ours)) continue; // taken with its bias
                if (IsLinear(ours) && ours.EndsWith(".bias", StringComparison.Ordinal)) continue;
                tensors[ours] = Floats(init);
            }
            var linears = new List<string>();
            for (int l = 0; l < layers; l++) foreach (var layer in LinearLayers) linears.Add($"bert.encoder.layer.{l}.{layer}");
            foreach (var optional in new[] { "bert.pooler.dense", "classifier", "cls.predictions.transform.dense" })
                if (named.ContainsKey(optional + ".bias")) linears.Add(optional);
            var biasOutputs = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var linear in linears)
            {
                if (!named.TryGetValue(linear + ".bias", out var bias)) { _problems.Add($"no initializer for '{Strip(linear)}.bias'"); continue; }
                tensors[linear + ".bias"] = Floats(bias);
                var found = FindWeight(linear, bias, named.GetValueOrDefault(linear + ".weight"), out var output);
                if (found is not null) { tensors[linear + ".weight"] = found; biasOutputs[linear] = output!; }
            }
            foreach (var t in _g.Initializer)
                if (t.Dims.Count == 2 && IsFloat(t) && !_usedWeights.Contains(t.Name) && !named.ContainsValue(t.Name)
                    && _consumers.GetValueOrDefault(t.Name)?.FirstOrDefault(c => c.OpType is "MatMul" or "Gemm") is { } user)
                    _problems.Add($"weight '{t.Name}' [{string.Join(", ", t.Dims)}] of {user.OpType} node '{user.Name}' could not be attributed to a named bias");
            if (_problems.Count > 0)
                throw new InvalidDataException($"{_source}: could not map the ONNX graph onto a BERT ({_problems.Count} problem(s)): {string.Join("; ", _problems.Take(4))}{(_problems.Count > 4 ? "; …" : "")}. Import a plain torch.onnx / optimum export of a Hugging Face BertModel, or a Hugging Face folder");

            // 3. Activations: exact GELU in every FFN, tanh in the pooler.
            for (int l = 0; l < layers; l++)
                CheckActivation(biasOutputs[$"bert.encoder.layer.{l}.intermediate.dense"], $"FFN of layer {l}", ["Erf", "Gelu"], "the exact erf GELU (hidden_act 'gelu')");
            if (biasOutputs.TryGetValue("bert.pooler.dense", out var poolerOut))
                CheckActivation(poolerOut, "pooler", ["Tanh"], "tanh, as BERT's pooler");

            // 4. Heads and epsilon.
            int heads = hints.Heads ?? InferHeads(biasOutputs[N.Query(0, "bias")[..^".bias".Length]], hidden)
                ?? throw new InvalidDataException($"{_source}: cannot tell the number of attention heads from the graph; put the model's config.json (num_attention_heads) beside the ONNX file");
            float eps = hints.LayerNormEps ?? InferEpsilon() ?? 1e-12f;

            HeadKind head = HeadKind.Classification;
            int labels = 2;
            if (tensors.TryGetValue(N.ClassifierBias, out var clsBias)) { labels = clsBias.Length; head = labels == 1 ? HeadKind.Regression : HeadKind.Classification; }
            else if (tensors.ContainsKey(N.MlmTransformWeight)) head = HeadKind.MaskedLm;
            BertConfig config;
            try { config = new BertConfig(new Architecture(layers, hidden, ffn), heads, vocabSize, head, Math.Max(labels, 1), positions, types, eps); }
            catch (ArgumentException ex) { throw new InvalidDataException($"{_source}: the graph describes an invalid model: {ex.Message}"); }
            var layout = new BertParameterLayout(config);
            foreach (var (name, data) in tensors.ToList())
            {
                if (!layout.Contains(name)) { tensors.Remove(name); continue; }
                if (data.LongLength != layout[name].Length)
                    throw new InvalidDataException($"{_source}: tensor '{Strip(name)}' has {data.LongLength} values but a {config.Arch} model with {vocabSize} tokens needs [{string.Join(", ", layout[name].Shape)}]");
            }
            var notes = new List<string> { $"imported from ONNX: {layers} layers, hidden {hidden}, {heads} heads, FFN {ffn}, LayerNorm eps {eps:G3}" };
            return new PretrainedEncoder(config, tensors, vocab, lowerCase, _source, notes);
        }

        private static bool IsLinear(string ours) =>
            ours.Contains(".attention.self.", StringComparison.Ordinal) || ours.Contains(".dense.", StringComparison.Ordinal) || ours.StartsWith("classifier.", StringComparison.Ordinal);

        private static string Strip(string ours) => ours.StartsWith("bert.", StringComparison.Ordinal) ? ours["bert.".Length..] : ours;

        private InvalidDataException Missing(string ours) => new($"{_source}: no initializer named '{Strip(ours)}'; this does not look like an ONNX export of a Hugging Face BERT");

        /// <summary>The (out, in) weight of a linear layer, and the tensor that carries its output (after the bias).</summary>
        private float[]? FindWeight(string linear, string biasName, string? namedWeight, out string? output)
        {
            output = null;
            var users = _consumers.GetValueOrDefault(biasName) ?? [];
            foreach (var node in users)
            {
                if (node.OpType == "Gemm" && node.Input.Count >= 3 && node.Input[2] == biasName)
                {
                    output = node.Output[0];
                    return GemmWeight(linear, node);
                }
                if (node.OpType != "Add" || node.Input.Count != 2) continue;
                var other = node.Input[0] == biasName ? node.Input[1] : node.Input[0];
                if (!_producer.TryGetValue(other, out var mm))
                {
                    _problems.Add($"bias '{biasName}' of '{Strip(linear)}' is added to '{other}', which no node produces");
                    return null;
                }
                if (mm.OpType != "MatMul")
                {
                    _problems.Add($"bias '{biasName}' of '{Strip(linear)}' is added (node '{node.Name}') to the output of {mm.OpType} node '{mm.Name}', not of a MatMul");
                    return null;
                }
                var w = mm.Input[1];
                if (!_constants.ContainsKey(w))
                {
                    _problems.Add($"MatMul '{mm.Name}' of '{Strip(linear)}' multiplies by '{w}', which is not a constant weight");
                    return null;
                }
                output = node.Output[0];
                _usedWeights.Add(w);
                var dims = Dims(w);
                if (dims.Length != 2) { _problems.Add($"weight '{w}' of '{Strip(linear)}' has shape [{string.Join(", ", dims)}], expected 2-D"); return null; }
                return Transpose(Floats(w), dims[0], dims[1]); // MatMul's B is (in, out)
            }
            if (namedWeight is not null)
                _problems.Add($"'{Strip(linear)}': found weight '{namedWeight}' but its bias '{biasName}' feeds no Add or Gemm");
            else
                _problems.Add($"bias '{biasName}' of '{Strip(linear)}' feeds no Add after a MatMul (consumers: {(users.Count == 0 ? "none" : string.Join(", ", users.Select(u => $"{u.OpType} '{u.Name}'")))})");
            return null;
        }

        private float[]? GemmWeight(string linear, NodeProto gemm)
        {
            var w = gemm.Input[1];
            if (!_constants.ContainsKey(w)) { _problems.Add($"Gemm '{gemm.Name}' of '{Strip(linear)}' multiplies by '{w}', which is not a constant weight"); return null; }
            long transA = gemm.Attribute.FirstOrDefault(a => a.Name == "transA")?.I ?? 0;
            long transB = gemm.Attribute.FirstOrDefault(a => a.Name == "transB")?.I ?? 0;
            float alpha = gemm.Attribute.FirstOrDefault(a => a.Name == "alpha")?.F ?? 1f, beta = gemm.Attribute.FirstOrDefault(a => a.Name == "beta")?.F ?? 1f;
            if (transA != 0 || (gemm.Attribute.Any(a => a.Name == "alpha") && alpha != 1f) || (gemm.Attribute.Any(a => a.Name == "beta") && beta != 1f))
            {
                _problems.Add($"Gemm '{gemm.Name}' of '{Strip(linear)}' has transA/alpha/beta other than 0/1/1");
                return null;
            }
            _usedWeights.Add(w);
            var dims = Dims(w);
            var data = Floats(w);
            return transB != 0 ? data : Transpose(data, dims[0], dims[1]);
        }

        private void CheckActivation(string linearOutput, string where, string[] accepted, string expected)
        {
            // Look two nodes downstream of the linear output for the activation's distinctive op.
            var seen = new List<string>();
            var frontier = new List<string> { linearOutput };
            for (int depth = 0; depth < 2; depth++)
            {
                var next = new List<string>();
                foreach (var t in frontier)
                    foreach (var n in _consumers.GetValueOrDefault(t) ?? [])
                    {
                        if (accepted.Contains(n.OpType)) return;
                        seen.Add(n.OpType);
                        next.AddRange(n.Output);
                    }
                frontier = next;
            }
            throw new InvalidDataException($"{_source}: the activation of the {where} is not {expected} (found {(seen.Count == 0 ? "nothing" : string.Join(" → ", seen.Distinct()))}); SpeedLimit's engine computes only exact GELU in the FFN and tanh in the pooler");
        }

        /// <summary>Heads from the Reshape of the query to (batch, seq, heads, head size).</summary>
        private int? InferHeads(string queryOutput, int hidden)
        {
            foreach (var n in _consumers.GetValueOrDefault(queryOutput) ?? [])
            {
                if (n.OpType != "Reshape" || n.Input.Count < 2) continue;
                var dims = ShapeValues(n.Input[1]);
                if (dims is { Count: 4 } && dims[2] > 0 && dims[3] > 0 && dims[2] * dims[3] == hidden) return (int)dims[2];
            }
            return null;
        }

        /// <summary>The constant values of a shape tensor: a constant, or a Concat of constants and dynamic entries (-1 for those).</summary>
        private List<long>? ShapeValues(string name)
        {
            if (_constants.ContainsKey(name)) return Int64s(name).ToList();
            if (!_producer.TryGetValue(name, out var p) || p.OpType != "Concat") return null;
            var values = new List<long>();
            foreach (var input in p.Input)
            {
                if (_constants.ContainsKey(input)) values.AddRange(Int64s(input));
                else values.Add(-1);
            }
            return values;
        }

        /// <summary>LayerNorm epsilon: the scalar added to a ReduceMean before Sqrt, or a LayerNormalization's attribute.</summary>
        private float? InferEpsilon()
        {
            foreach (var n in _g.Node)
            {
                if (n.OpType == "LayerNormalization")
                    return n.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
                if (n.OpType != "Sqrt" || !_producer.TryGetValue(n.Input[0], out var add) || add.OpType != "Add") continue;
                foreach (var input in add.Input)
                    if (_constants.TryGetValue(input, out var c) && IsFloat(c) && Count(c) == 1) return Floats(input)[0];
            }
            return null;
        }

        private int[] Dims(string name) => _constants[name].Dims.Select(d => checked((int)d)).ToArray();

        private static bool IsFloat(TensorProto t) => t.DataType is (int)TensorProto.Types.DataType.Float or (int)TensorProto.Types.DataType.Float16
            or (int)TensorProto.Types.DataType.Bfloat16 or (int)TensorProto.Types.DataType.Double;

        private static long Count(TensorProto t) => t.Dims.Aggregate(1L, (p, d) => p * d);

        private ReadOnlySpan<byte> Raw(TensorProto t)
        {
            if (t.DataLocation != TensorProto.Types.DataLocation.External) return t.RawData.Span;
            var kv = t.ExternalData.ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);
            if (_dataDir is null || !kv.TryGetValue("location", out var location))
                throw new InvalidDataException($"{_source}: tensor '{t.Name}' lives in an external data file, which cannot be found from here; import the .onnx file from its folder");
            var path = Path.Combine(_dataDir, location);
            if (!File.Exists(path)) throw new FileNotFoundException($"{_source}: external data file '{path}' of tensor '{t.Name}' does not exist", path);
            long offset = kv.TryGetValue("offset", out var o) ? long.Parse(o, System.Globalization.CultureInfo.InvariantCulture) : 0;
            long length = kv.TryGetValue("length", out var len) ? long.Parse(len, System.Globalization.CultureInfo.InvariantCulture) : new FileInfo(path).Length - offset;
            using var fs = File.OpenRead(path);
            fs.Position = offset;
            var bytes = new byte[length];
            fs.ReadExactly(bytes);
            return bytes;
        }

        /// <summary>A float tensor's values (FLOAT, FLOAT16, BFLOAT16, DOUBLE), from raw or typed data.</summary>
        private float[] Floats(string name)
        {
            var t = _constants[name];
            long count = Count(t);
            var result = new float[count];
            var raw = Raw(t);
            switch ((TensorProto.Types.DataType)t.DataType)
            {
                case TensorProto.Types.DataType.Float:
                    if (raw.Length > 0 && BitConverter.IsLittleEndian) { Expect(t, raw.Length, count * 4); System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw).CopyTo(result); }
                    else if (raw.Length > 0) { Expect(t, raw.Length, count * 4); for (int i = 0; i < count; i++) result[i] = BinaryPrimitives.ReadSingleLittleEndian(raw.Slice(i * 4)); }
                    else { Expect(t, t.FloatData.Count, count); t.FloatData.CopyTo(result, 0); }
                    break;
                case TensorProto.Types.DataType.Float16:
                case TensorProto.Types.DataType.Bfloat16:
                    bool half = t.DataType == (int)TensorProto.Types.DataType.Float16;
                    for (int i = 0; i < count; i++)
                    {
                        ushort bits;
                        if (raw.Length > 0) { Expect(t, raw.Length, count * 2); bits = BinaryPrimitives.ReadUInt16LittleEndian(raw.Slice(i * 2)); }
                        else { Expect(t, t.Int32Data.Count, count); bits = (ushort)t.Int32Data[i]; }
                        result[i] = half ? (float)BitConverter.UInt16BitsToHalf(bits) : BitConverter.Int32BitsToSingle(bits << 16);
                    }
                    break;
                case TensorProto.Types.DataType.Double:
                    if (raw.Length > 0) { Expect(t, raw.Length, count * 8); for (int i = 0; i < count; i++) result[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(raw.Slice(i * 8)); }
                    else { Expect(t, t.DoubleData.Count, count); for (int i = 0; i < count; i++) result[i] = (float)t.DoubleData[i]; }
                    break;
                default:
                    throw new InvalidDataException($"{_source}: tensor '{name}' has ONNX data type {(TensorProto.Types.DataType)t.DataType}; weights must be float, float16, bfloat16 or double");
            }
            return result;
        }

        private long[] Int64s(string name)
        {
            var t = _constants[name];
            long count = Count(t);
            var raw = Raw(t);
            var result = new long[count];
            switch ((TensorProto.Types.DataType)t.DataType)
            {
                case TensorProto.Types.DataType.Int64:
                    if (raw.Length > 0) for (int i = 0; i < count; i++) result[i] = BinaryPrimitives.ReadInt64LittleEndian(raw.Slice(i * 8));
                    else for (int i = 0; i < Math.Min(count, t.Int64Data.Count); i++) result[i] = t.Int64Data[i];
                    break;
                case TensorProto.Types.DataType.Int32:
                    if (raw.Length > 0) for (int i = 0; i < count; i++) result[i] = BinaryPrimitives.ReadInt32LittleEndian(raw.Slice(i * 4));
                    else for (int i = 0; i < Math.Min(count, t.Int32Data.Count); i++) result[i] = t.Int32Data[i];
                    break;
                default:
                    return [];
            }
            return result;
        }

        private void Expect(TensorProto t, long have, long need)
        {
            if (have != need) throw new InvalidDataException($"{_source}: tensor '{t.Name}' holds {have} values/bytes but its shape [{string.Join(", ", t.Dims)}] needs {need}");
        }

        private static float[] Transpose(float[] data, int rows, int cols)
        {
            var result = new float[data.Length];
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    result[c * rows + r] = data[r * cols + c];
            return result;
        }
    }
}
