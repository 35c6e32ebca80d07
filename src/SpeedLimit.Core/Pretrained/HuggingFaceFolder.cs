using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SpeedLimit.Checkpoints;
using SpeedLimit.Model;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Pretrained;

/// <summary>
/// Hugging Face BERT folders, both ways: <c>config.json</c> + <c>model.safetensors</c> (or shards with
/// <c>model.safetensors.index.json</c>) + <c>vocab.txt</c> (+ <c>tokenizer_config.json</c>).
/// <para>
/// Reading accepts BertModel, BertForSequenceClassification, BertForMaskedLM and BertForPreTraining
/// tensor names, with or without the <c>bert.</c> prefix, legacy LayerNorm <c>gamma</c>/<c>beta</c>, and
/// F32/F16/BF16 (F64 too) tensors. The config is checked against every tensor's shape before anything is
/// used, and activations our engine does not compute are rejected.
/// </para>
/// </summary>
public static class HuggingFaceFolder
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string WeightsIndexFile = "model.safetensors.index.json";
    public const string VocabFile = "vocab.txt";
    public const string TokenizerConfigFile = "tokenizer_config.json";
    public const string SpecialTokensFile = "special_tokens_map.json";

    /// <summary>The activation names (config <c>hidden_act</c>) our engine computes: exact erf GELU.</summary>
    public static readonly IReadOnlyList<string> SupportedActivations = ["gelu"];

    /// <summary>True when <paramref name="dir"/> looks like a Hugging Face model folder.</summary>
    public static bool IsFolder(string dir) => Directory.Exists(dir) && File.Exists(Path.Combine(dir, ConfigFile));

    /// <summary>Imports a folder; throws <see cref="InvalidDataException"/> naming the file and the problem.</summary>
    public static PretrainedEncoder Read(string dir)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"pretrained model folder '{dir}' does not exist");
        var configPath = Path.Combine(dir, ConfigFile);
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"'{dir}' has no {ConfigFile}; a Hugging Face model folder needs config.json, model.safetensors and vocab.txt", configPath);
        var hf = HfConfig.Read(configPath);
        var weightFiles = WeightFiles(dir);
        var notes = new List<string>();

        // Map every tensor name to ours, then check the config against the shapes before reading data.
        var readers = new List<SafeTensorsReader>();
        try
        {
            var mapped = new Dictionary<string, (SafeTensorsReader Reader, SafeTensorInfo Info)>(StringComparer.Ordinal);
            (SafeTensorsReader, SafeTensorInfo)? decoderWeight = null, decoderBias = null;
            foreach (var file in weightFiles)
            {
                var reader = SafeTensorsReader.Open(file, allowNonFloat: true);
                readers.Add(reader);
                foreach (var info in reader.Tensors)
                {
                    var name = MapName(info.Name, out var role);
                    switch (role)
                    {
                        case NameRole.Ignored: continue;
                        case NameRole.IgnoredWithNote: notes.Add($"tensor '{info.Name}' (not used by SpeedLimit) was left out"); continue;
                        case NameRole.DecoderWeight: decoderWeight = (reader, info); continue;
                        case NameRole.DecoderBias: decoderBias = (reader, info); continue;
                        case NameRole.Unknown:
                            throw new InvalidDataException($"{file}: tensor '{info.Name}' is not part of a BERT model (BertModel, BertForSequenceClassification, BertForMaskedLM); SpeedLimit imports model_type 'bert' only");
                    }
                    if (!mapped.TryAdd(name, (reader, info)))
                        throw new InvalidDataException($"{file}: tensors '{mapped[name].Info.Name}' and '{info.Name}' both map to '{name}'; the checkpoint holds two copies of one weight");
                }
            }
            if (!mapped.ContainsKey(N.MlmDecoderBias) && decoderBias is { } db && mapped.ContainsKey(N.MlmTransformWeight))
                mapped[N.MlmDecoderBias] = db;

            // Which head the checkpoint carries.
            HeadKind head = HeadKind.Classification;
            int labels = 2;
            if (mapped.TryGetValue(N.ClassifierWeight, out var cls))
            {
                labels = cls.Info.Shape.Length == 2 ? cls.Info.Shape[0] : -1;
                head = labels == 1 || hf.ProblemType == "regression" ? HeadKind.Regression : HeadKind.Classification;
                if (labels < 1) throw new InvalidDataException($"{cls.Reader.Path}: tensor '{cls.Info.Name}' has shape [{string.Join(", ", cls.Info.Shape)}]; a classifier weight is (labels, hidden)");
                if (hf.NumLabels is int n && n != labels)
                    throw new InvalidDataException($"{configPath}: num_labels (or id2label) says {n} labels but '{cls.Info.Name}' has {labels} rows; the config does not belong to these weights");
            }
            else if (mapped.ContainsKey(N.MlmTransformWeight))
            {
                head = HeadKind.MaskedLm;
            }
            int? embeddingRows = mapped.TryGetValue(N.WordEmbeddings, out var we) && we.Info.Shape.Length == 2 ? we.Info.Shape[0] : null;
            var config = hf.ToConfig(head, Math.Max(labels, head == HeadKind.Regression ? 1 : 2), configPath, embeddingRows);
            var layout = new BertParameterLayout(config);
            foreach (var (name, (reader, info)) in mapped)
            {
                if (!layout.Contains(name))
                {
                    if (name.StartsWith("bert.encoder.layer.", StringComparison.Ordinal))
                        throw new InvalidDataException($"{configPath}: num_hidden_layers is {config.Layers} but the weights have '{info.Name}'; the config does not belong to these weights");
                    if (head != HeadKind.MaskedLm && name.StartsWith("cls.", StringComparison.Ordinal))
                    {
                        notes.Add($"the masked-LM head ('{info.Name}', …) was left out: the checkpoint also has a classifier");
                        continue;
                    }
                    throw new InvalidDataException($"{reader.Path}: tensor '{info.Name}' has no place in a {config.Arch} {head} model");
                }
                var expected = layout[name].Shape;
                if (!info.Shape.AsSpan().SequenceEqual(expected))
                    throw new InvalidDataException($"{configPath}: tensor '{info.Name}' has shape [{string.Join(", ", info.Shape)}] but config.json (hidden_size {config.Hidden}, intermediate_size {config.Ffn}, vocab_size {config.VocabSize}, max_position_embeddings {config.MaxPositions}, type_vocab_size {config.TypeVocabSize}) implies [{string.Join(", ", expected)}]; the config does not belong to these weights");
            }
            foreach (var required in PretrainedEncoder.EncoderTensorNames(config))
                if (!mapped.ContainsKey(required))
                    throw new InvalidDataException($"{string.Join(", ", weightFiles)}: tensor '{required}' (or its name without 'bert.') is missing; config.json describes a {config.Arch} encoder");

            var tensors = new Dictionary<string, float[]>(StringComparer.Ordinal);
            foreach (var (name, (reader, info)) in mapped)
            {
                if (!layout.Contains(name)) continue;
                var data = new float[info.Count];
                reader.ReadInto(info, data);
                tensors[name] = data;
            }
            if (decoderWeight is { } dw && head == HeadKind.MaskedLm)
            {
                var data = new float[dw.Item2.Count];
                if (dw.Item2.Count == tensors[N.WordEmbeddings].LongLength) dw.Item1.ReadInto(dw.Item2, data);
                if (!data.AsSpan().SequenceEqual(tensors[N.WordEmbeddings]))
                    notes.Add($"'{dw.Item2.Name}' differs from the word embeddings; SpeedLimit ties the decoder to the embeddings, so it was not used");
            }
            var (vocab, lowerCase) = ReadTokenizer(dir);
            if (hf.VocabSize is int vs && vs != vocab.Length)
                throw new InvalidDataException($"{configPath}: vocab_size is {vs} but {Path.Combine(dir, VocabFile)} has {vocab.Length} tokens; use the vocab.txt that belongs to this model");
            return new PretrainedEncoder(config, tensors, vocab, lowerCase, dir, notes);
        }
        finally
        {
            foreach (var r in readers) r.Dispose();
        }
    }

    private static List<string> WeightFiles(string dir)
    {
        var single = Path.Combine(dir, WeightsFile);
        if (File.Exists(single)) return [single];
        var index = Path.Combine(dir, WeightsIndexFile);
        if (File.Exists(index))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(index));
                var files = doc.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Value.GetString()!).Distinct().Order(StringComparer.Ordinal)
                    .Select(f => Path.Combine(dir, f)).ToList();
                foreach (var f in files)
                    if (!File.Exists(f)) throw new FileNotFoundException($"{index} names shard '{f}', which does not exist", f);
                return files;
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new InvalidDataException($"{index}: not a valid safetensors index ({ex.Message})");
            }
        }
        if (File.Exists(Path.Combine(dir, "pytorch_model.bin")))
            throw new FileNotFoundException($"'{dir}' has pytorch_model.bin but no {WeightsFile}; SpeedLimit reads safetensors only: convert it (e.g. save_pretrained(..., safe_serialization=True))", single);
        throw new FileNotFoundException($"'{dir}' has no {WeightsFile}", single);
    }

    private static (string[] Vocab, bool LowerCase) ReadTokenizer(string dir)
    {
        var vocabPath = Path.Combine(dir, VocabFile);
        if (!File.Exists(vocabPath))
            throw new FileNotFoundException($"'{dir}' has no {VocabFile}; SpeedLimit tokenizes with BERT WordPiece and needs the model's vocab.txt", vocabPath);
        var vocab = ReadVocabLines(vocabPath);
        bool lowerCase = true;
        var tokPath = Path.Combine(dir, TokenizerConfigFile);
        if (File.Exists(tokPath))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(tokPath));
                if (doc.RootElement.TryGetProperty("do_lower_case", out var lc) && lc.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    lowerCase = lc.GetBoolean();
            }
            catch (JsonException ex) { throw new InvalidDataException($"{tokPath}: not valid JSON ({ex.Message})"); }
        }
        return (vocab, lowerCase);
    }

    /// <summary>One token per line; CRLF or LF; a final newline does not add a token.</summary>
    public static string[] ReadVocabLines(string path)
    {
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0) throw new InvalidDataException($"{path}: empty vocabulary");
        return lines;
    }

    internal enum NameRole { Mapped, Ignored, IgnoredWithNote, DecoderWeight, DecoderBias, Unknown }

    /// <summary>A checkpoint tensor name in our layout's naming (bert.-prefixed, weight/bias), and what it is.</summary>
    internal static string MapName(string name, out NameRole role)
    {
        role = NameRole.Mapped;
        var n = name.StartsWith("bert.", StringComparison.Ordinal) ? name["bert.".Length..] : name;
        if (n.EndsWith(".gamma", StringComparison.Ordinal)) n = n[..^".gamma".Length] + ".weight";
        else if (n.EndsWith(".beta", StringComparison.Ordinal)) n = n[..^".beta".Length] + ".bias";
        if (n is "embeddings.position_ids") { role = NameRole.Ignored; return n; }
        if (n.StartsWith("embeddings.", StringComparison.Ordinal) || n.StartsWith("encoder.", StringComparison.Ordinal) || n.StartsWith("pooler.", StringComparison.Ordinal))
            return "bert." + n;
        if (n is N.ClassifierWeight or N.ClassifierBias or N.MlmTransformWeight or N.MlmTransformBias or N.MlmLayerNormWeight or N.MlmLayerNormBias or N.MlmDecoderBias)
            return n;
        if (n == "cls.predictions.decoder.weight") { role = NameRole.DecoderWeight; return n; }
        if (n == "cls.predictions.decoder.bias") { role = NameRole.DecoderBias; return n; }
        if (n.StartsWith("cls.seq_relationship.", StringComparison.Ordinal)) { role = NameRole.IgnoredWithNote; return n; }
        role = NameRole.Unknown;
        return n;
    }

    /// <summary>The fields of config.json that fix a BERT's shape, checked.</summary>
    private sealed record HfConfig(int Hidden, int Layers, int Heads, int Ffn, int MaxPositions, int TypeVocab, float Eps, int? VocabSize,
        int? NumLabels, string? ProblemType)
    {
        public static HfConfig Read(string path)
        {
            JsonDocument doc;
            try { doc = JsonDocument.Parse(File.ReadAllText(path)); }
            catch (JsonException ex) { throw new InvalidDataException($"{path}: not valid JSON ({ex.Message})"); }
            using (doc)
            {
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: must be a JSON object");
                string? modelType = Str(root, "model_type");
                if (modelType is not null && modelType != "bert")
                    throw new InvalidDataException($"{path}: model_type is '{modelType}'; SpeedLimit imports BERT models (model_type 'bert') only");
                string act = Str(root, "hidden_act") ?? "gelu";
                if (!SupportedActivations.Contains(act))
                    throw new InvalidDataException($"{path}: hidden_act is '{act}', which SpeedLimit's engine does not compute (supported: {string.Join(", ", SupportedActivations)}, the exact erf GELU of BERT); use a model trained with hidden_act 'gelu'");
                string? pos = Str(root, "position_embedding_type");
                if (pos is not null && pos != "absolute")
                    throw new InvalidDataException($"{path}: position_embedding_type is '{pos}'; SpeedLimit supports 'absolute' position embeddings only");
                int? numLabels = Int(root, "num_labels", path, optional: true);
                if (numLabels is null && root.TryGetProperty("id2label", out var id2) && id2.ValueKind == JsonValueKind.Object)
                    numLabels = id2.EnumerateObject().Count();
                return new HfConfig(
                    Int(root, "hidden_size", path)!.Value, Int(root, "num_hidden_layers", path)!.Value, Int(root, "num_attention_heads", path)!.Value,
                    Int(root, "intermediate_size", path)!.Value, Int(root, "max_position_embeddings", path, optional: true) ?? 512,
                    Int(root, "type_vocab_size", path, optional: true) ?? 2, Float(root, "layer_norm_eps", path) ?? 1e-12f,
                    Int(root, "vocab_size", path, optional: true), numLabels, Str(root, "problem_type"));
            }
        }

        public BertConfig ToConfig(HeadKind head, int labels, string path, int? embeddingRows)
        {
            int vocab = VocabSize ?? embeddingRows ?? 1;
            try { return new BertConfig(new Architecture(Layers, Hidden, Ffn), Heads, Math.Max(vocab, 1), head, labels, MaxPositions, TypeVocab, Eps); }
            catch (ArgumentException ex) { throw new InvalidDataException($"{path}: describes an invalid model: {ex.Message}"); }
        }

        private static string? Str(JsonElement root, string name) =>
            root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

        private static int? Int(JsonElement root, string name, string path, bool optional = false)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
                return optional ? null : throw new InvalidDataException($"{path}: field '{name}' is missing; a BERT config.json needs hidden_size, num_hidden_layers, num_attention_heads and intermediate_size");
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i) || i < 1)
                throw new InvalidDataException($"{path}: field '{name}' is {v.GetRawText()}, expected a positive integer");
            return i;
        }

        private static float? Float(JsonElement root, string name, string path)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind != JsonValueKind.Number || !(v.GetDouble() > 0)) throw new InvalidDataException($"{path}: field '{name}' is {v.GetRawText()}, expected a positive number");
            return (float)v.GetDouble();
        }
    }

    /// <summary>
    /// Writes a model as a Hugging Face folder that <c>transformers</c> loads with
    /// <c>BertForSequenceClassification</c> / <c>BertForMaskedLM.from_pretrained</c>: config.json,
    /// model.safetensors (in <paramref name="dtype"/>: F32 by default, F16 or BF16), vocab.txt,
    /// tokenizer_config.json and special_tokens_map.json. The folder is written beside the target
    /// and renamed into place, so it is never half-written; an existing target is replaced only when
    /// <paramref name="overwrite"/> is set and it is itself a model folder.
    /// </summary>
    public static void Write(string dir, BertConfig config, ReadOnlyMemory<float> parameters, IReadOnlyList<string> vocab, bool lowerCase = true,
        string dtype = SafeTensors.F32, IReadOnlyList<string>? labelNames = null, bool overwrite = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(vocab);
        if (SafeTensors.ElementSize(dtype) == 0) throw new ArgumentException($"dtype '{dtype}' is not one of F32, F16, BF16");
        if (vocab.Count != config.VocabSize) throw new ArgumentException($"vocabulary has {vocab.Count} tokens but the model's embeddings have {config.VocabSize} rows");
        var layout = new BertParameterLayout(config);
        if (parameters.Length != layout.TotalLength) throw new ArgumentException($"parameter buffer has {parameters.Length} values but {config.Arch} needs {layout.TotalLength}");
        var full = Path.GetFullPath(dir);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
        {
            if (!overwrite) throw new IOException($"'{dir}' already exists and is not empty; choose a new folder or delete it");
            if (!File.Exists(Path.Combine(full, ConfigFile))) throw new IOException($"'{dir}' is not a model folder (no {ConfigFile}); refusing to replace it");
        }
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(tmp);
        try
        {
            var entries = layout.Tensors.Select(t => new SafeTensorEntry(t.Name, t.Shape, parameters.Slice((int)t.Offset, (int)t.Length), dtype)).ToList();
            SafeTensors.Write(Path.Combine(tmp, WeightsFile), entries, new Dictionary<string, string> { ["format"] = "pt" });
            var utf8 = new UTF8Encoding(false);
            File.WriteAllText(Path.Combine(tmp, ConfigFile), ConfigJson(config, dtype, labelNames), utf8);
            File.WriteAllText(Path.Combine(tmp, VocabFile), string.Concat(vocab.Select(v => v + "\n")), utf8);
            File.WriteAllText(Path.Combine(tmp, TokenizerConfigFile), TokenizerJson(config, lowerCase), utf8);
            File.WriteAllText(Path.Combine(tmp, SpecialTokensFile),
                """{"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}""" + "\n", utf8);
            string? old = null;
            if (Directory.Exists(full))
            {
                old = full + $".{Guid.NewGuid():N}.old";
                Directory.Move(full, old);
            }
            Directory.Move(tmp, full);
            if (old is not null) Directory.Delete(old, recursive: true);
        }
        catch
        {
            try { if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Writes a model (its config and parameters) as a Hugging Face folder; see the overload.</summary>
    public static void Write(string dir, BertModel model, IReadOnlyList<string> vocab, bool lowerCase = true, string dtype = SafeTensors.F32,
        IReadOnlyList<string>? labelNames = null, bool overwrite = false) =>
        Write(dir, model.Config, model.Parameters, vocab, lowerCase, dtype, labelNames, overwrite);

    private static string ConfigJson(BertConfig c, string dtype, IReadOnlyList<string>? labelNames)
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(c.Head == HeadKind.MaskedLm ? "BertForMaskedLM" : "BertForSequenceClassification"),
            ["model_type"] = "bert",
            ["hidden_size"] = c.Hidden,
            ["num_hidden_layers"] = c.Layers,
            ["num_attention_heads"] = c.Heads,
            ["intermediate_size"] = c.Ffn,
            ["hidden_act"] = "gelu",
            ["hidden_dropout_prob"] = 0.1,
            ["attention_probs_dropout_prob"] = 0.1,
            ["max_position_embeddings"] = c.MaxPositions,
            ["type_vocab_size"] = c.TypeVocabSize,
            ["vocab_size"] = c.VocabSize,
            ["layer_norm_eps"] = c.LayerNormEps,
            ["initializer_range"] = 0.02,
            ["pad_token_id"] = 0,
            ["position_embedding_type"] = "absolute",
            ["torch_dtype"] = dtype switch { SafeTensors.F16 => "float16", SafeTensors.BF16 => "bfloat16", _ => "float32" },
        };
        if (c.Head != HeadKind.MaskedLm)
        {
            o["num_labels"] = c.Labels;
            if (c.Head == HeadKind.Regression) o["problem_type"] = "regression";
            var id2label = new JsonObject();
            var label2id = new JsonObject();
            for (int i = 0; i < c.Labels; i++)
            {
                string name = labelNames is not null && i < labelNames.Count ? labelNames[i] : $"LABEL_{i}";
                id2label[i.ToString(CultureInfo.InvariantCulture)] = name;
                label2id[name] = i;
            }
            o["id2label"] = id2label;
            o["label2id"] = label2id;
        }
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    private static string TokenizerJson(BertConfig c, bool lowerCase)
    {
        var o = new JsonObject
        {
            ["tokenizer_class"] = "BertTokenizer",
            ["do_lower_case"] = lowerCase,
            ["strip_accents"] = null,
            ["tokenize_chinese_chars"] = true,
            ["model_max_length"] = c.MaxPositions,
            ["unk_token"] = "[UNK]", ["sep_token"] = "[SEP]", ["pad_token"] = "[PAD]", ["cls_token"] = "[CLS]", ["mask_token"] = "[MASK]",
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }
}
