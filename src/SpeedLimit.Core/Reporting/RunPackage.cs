using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SpeedLimit.Data;
using SpeedLimit.Onnx;

namespace SpeedLimit.Reporting;

/// <summary>
/// The run folder as a package a user deploys as it is: beside the <c>best*.onnx</c> files, the
/// tokenizer in Hugging Face's layout (<c>vocab.txt</c>, <c>tokenizer.json</c>,
/// <c>tokenizer_config.json</c>, <c>special_tokens_map.json</c>), the contract (task, labels in logit
/// order, metric, max length, truncation) in <c>deployment.json</c> and in each ONNX file's metadata,
/// and a <c>README.md</c> that shows how to call the model from C#, Python and Node.
/// </summary>
internal static class RunPackage
{
    public const string VocabFile = "vocab.txt";
    public const string TokenizerFile = "tokenizer.json";
    public const string TokenizerConfigFile = "tokenizer_config.json";
    public const string SpecialTokensFile = "special_tokens_map.json";
    public const string DeploymentFile = "deployment.json";
    public const string ReadmeFile = "README.md";

    /// <summary>How the ONNX Runtime dev metric is computed, as the README shows a deployment calls the model.</summary>
    public const string OnnxScoring = "with each dev example run alone (batch 1, no padding), tokenized as the README shows";

    private static readonly string[] s_specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

    public static string MetricName(PrimaryMetric metric) => metric switch
    {
        PrimaryMetric.Accuracy => "accuracy",
        PrimaryMetric.Matthews => "matthews_correlation",
        PrimaryMetric.F1Accuracy => "mean_of_f1_and_accuracy",
        PrimaryMetric.PearsonSpearman => "mean_of_pearson_and_spearman",
        _ => metric.ToString().ToLowerInvariant(),
    };

    /// <summary>The contract of models trained on <paramref name="task"/> with <paramref name="encoder"/> at <paramref name="maxLength"/> tokens.</summary>
    public static ModelContract Contract(TaskDataset task, ITextEncoder encoder, int maxLength)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(encoder);
        var (kind, lower) = encoder switch
        {
            BertTextEncoder b => ("bert-wordpiece", b.LowerCase),
            WordLevelEncoder => ("word-level", false),
            _ => throw new ArgumentException($"no tokenizer files can be written for a {encoder.GetType().Name}; use a BERT vocab.txt"),
        };
        return new ModelContract(task.Name, task.Kind == TaskKind.Regression ? "regression" : "classification", [.. task.LabelNames],
            MetricName(task.PrimaryMetric), kind, maxLength, lower, encoder.VocabSize, VocabSha256(Vocabulary(encoder)));
    }

    /// <summary>The vocabulary in id order.</summary>
    public static string[] Vocabulary(ITextEncoder encoder)
    {
        var vocab = new string[encoder.VocabSize];
        for (int i = 0; i < vocab.Length; i++) vocab[i] = encoder.IdToToken(i);
        return vocab;
    }

    /// <summary>SHA-256 of the lines joined by "\n", lower-case hex (what <see cref="ModelContract.VocabSha256"/> holds).</summary>
    public static string VocabSha256(IReadOnlyList<string> vocab) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n', vocab))));

    /// <summary>Writes vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json into <paramref name="folder"/>.</summary>
    public static void WriteTokenizer(string folder, ITextEncoder encoder, ModelContract contract)
    {
        var vocab = Vocabulary(encoder);
        if (VocabSha256(vocab) != contract.VocabSha256)
            throw new ArgumentException("the encoder's vocabulary is not the one the contract names");
        AtomicFile.WriteAllText(Path.Combine(folder, VocabFile), string.Join('\n', vocab) + "\n");
        AtomicFile.WriteAllText(Path.Combine(folder, TokenizerFile), TokenizerJson(vocab, contract).ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
        AtomicFile.WriteAllText(Path.Combine(folder, TokenizerConfigFile), TokenizerConfig(contract).ToJsonString(Indented));
        AtomicFile.WriteAllText(Path.Combine(folder, SpecialTokensFile), SpecialTokensMap().ToJsonString(Indented));
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private static JsonObject SpecialTokensMap() => new()
    {
        ["unk_token"] = "[UNK]", ["sep_token"] = "[SEP]", ["pad_token"] = "[PAD]", ["cls_token"] = "[CLS]", ["mask_token"] = "[MASK]",
    };

    /// <summary>transformers' tokenizer_config.json: the class, lower-casing, max length and truncation rule.</summary>
    internal static JsonObject TokenizerConfig(ModelContract c)
    {
        var config = new JsonObject
        {
            ["tokenizer_class"] = c.Tokenizer == "bert-wordpiece" ? "BertTokenizer" : "PreTrainedTokenizerFast",
            ["do_lower_case"] = c.DoLowerCase,
            ["strip_accents"] = null, // follows do_lower_case, as in BERT
            ["tokenize_chinese_chars"] = true,
            ["model_max_length"] = c.MaxLength,
            ["truncation_side"] = c.TruncationSide,
            ["truncation_strategy"] = c.TruncationStrategy,
            ["padding_side"] = "right",
            ["clean_up_tokenization_spaces"] = true,
        };
        foreach (var (k, v) in SpecialTokensMap()) config[k] = v!.DeepClone();
        return config;
    }

    /// <summary>
    /// The fast tokenizer's own file (loaded by Hugging Face <c>tokenizers</c> in Python, Rust and
    /// Node, and by transformers): normalizer, pre-tokenizer, model with the vocabulary inline,
    /// [CLS] A [SEP] B [SEP] template, and truncation set to the contract's max length, longest-first.
    /// </summary>
    internal static JsonObject TokenizerJson(IReadOnlyList<string> vocab, ModelContract c)
    {
        var ids = new JsonObject();
        for (int i = 0; i < vocab.Count; i++) ids[vocab[i]] = i;
        int Id(string token) => ids[token]!.GetValue<int>();
        bool wordPiece = c.Tokenizer == "bert-wordpiece";
        JsonObject Special(string id, int typeId) => new() { ["SpecialToken"] = new JsonObject { ["id"] = id, ["type_id"] = typeId } };
        JsonObject Sequence(string id, int typeId) => new() { ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = typeId } };
        JsonObject SpecialEntry(string t) => new() { ["id"] = t, ["ids"] = new JsonArray(Id(t)), ["tokens"] = new JsonArray(t) };
        var added = new JsonArray();
        if (wordPiece) // matched in the raw text, as bert-base-uncased's tokenizer.json does (the word-level encoder treats them as words)
            foreach (var t in s_specials)
                added.Add(new JsonObject { ["id"] = Id(t), ["content"] = t, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true });
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = new JsonObject { ["direction"] = "Right", ["max_length"] = c.MaxLength, ["strategy"] = "LongestFirst", ["stride"] = 0 },
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = wordPiece
                ? new JsonObject { ["type"] = "BertNormalizer", ["clean_text"] = true, ["handle_chinese_chars"] = true, ["strip_accents"] = null, ["lowercase"] = c.DoLowerCase }
                : null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = wordPiece ? "BertPreTokenizer" : "WhitespaceSplit" },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(Special("[CLS]", 0), Sequence("A", 0), Special("[SEP]", 0)),
                ["pair"] = new JsonArray(Special("[CLS]", 0), Sequence("A", 0), Special("[SEP]", 0), Sequence("B", 1), Special("[SEP]", 1)),
                ["special_tokens"] = new JsonObject { ["[CLS]"] = SpecialEntry("[CLS]"), ["[SEP]"] = SpecialEntry("[SEP]") },
            },
            ["decoder"] = wordPiece ? new JsonObject { ["type"] = "WordPiece", ["prefix"] = "##", ["cleanup"] = true } : null,
            ["model"] = wordPiece
                ? new JsonObject { ["type"] = "WordPiece", ["unk_token"] = "[UNK]", ["continuing_subword_prefix"] = "##", ["max_input_chars_per_word"] = 100, ["vocab"] = ids }
                : new JsonObject { ["type"] = "WordLevel", ["vocab"] = ids, ["unk_token"] = "[UNK]" },
        };
    }

    public static void WriteDeployment(string folder, Deployment deployment) =>
        AtomicFile.WriteAllText(Path.Combine(folder, DeploymentFile), JsonSerializer.Serialize(deployment, Search.SearchJson.Indented));

    public static void WriteReadme(string folder, Deployment deployment) =>
        AtomicFile.WriteAllText(Path.Combine(folder, ReadmeFile), Readme(deployment));

    /// <summary>The run folder's README: what is in it, the contract, and how to call the model.</summary>
    public static string Readme(Deployment d)
    {
        var inv = CultureInfo.InvariantCulture;
        var c = d.Contract;
        var md = new StringBuilder();
        void Line(string s = "") => md.Append(s).Append('\n');
        var first = d.Winners.Count > 0 ? d.Winners[0].OnnxFile : "best.onnx";
        Line($"# Deployable model: {c.Task}");
        Line();
        Line("This folder is a complete package: the int8 ONNX model(s), the tokenizer in Hugging Face's layout and the contract below. " +
             "`report.md` tells how the models were found and measured; `deployment.json` holds the same contract and every figure as JSON.");
        Line();
        Line("| file | what |");
        Line("|---|---|");
        foreach (var w in d.Winners)
            Line(string.Create(inv, $"| `{w.OnnxFile}` | {w.Arch}, for the {w.BoundMs:G4} ms bound (measured median {w.Verdict.Measurement.MedianMs:F3} ms); checkpoint `{w.CheckpointFile}`; the same weights as a Hugging Face folder `{w.HuggingFaceFolder}/` |"));
        Line($"| `{VocabFile}`, `{TokenizerFile}`, `{TokenizerConfigFile}`, `{SpecialTokensFile}` | the tokenizer ({c.Tokenizer}, {(c.DoLowerCase ? "lower-cased, accents stripped" : "cased")}) |");
        Line($"| `{DeploymentFile}` | contract, winners, notes |");
        Line();
        Line("## Contract");
        Line();
        Line($"- task `{c.Task}` ({c.TaskKind}); output `logits` of shape (batch, {(c.TaskKind == "regression" ? "1" : c.Labels.Count.ToString(inv))})" +
             (c.TaskKind == "regression" ? ": the predicted score." : $"; label of logit i, in order: {string.Join(", ", c.Labels.Select((l, i) => $"{i} = `{l}`"))}."));
        Line($"- inputs `input_ids`, `attention_mask`, `token_type_ids`: int64, shape (batch, sequence). Text is encoded as `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` " +
             $"(token types 0 for a, 1 for b), at most **{c.MaxLength} tokens**, pairs truncated **longest-first** from the right exactly as Hugging Face's fast tokenizer " +
             "(`tokenizers`) does: the shorter part is kept if it fits in half the budget, else both get half and the longer one the odd token.");
        Line($"- the model has position embeddings for a fixed number of tokens (`position_limit` in the ONNX metadata); longer inputs cannot run. " +
             "The same contract is in each ONNX file's `metadata_props` (`task`, `labels`, `metric`, `max_length`, `truncation_strategy`, `vocab_sha256`, …).");
        Line($"- metric: `{c.Metric}` on the task's dev split.");
        Line();
        Line("## Scores and what they depend on");
        Line();
        Line($"The ONNX Runtime dev metric in `report.md` is computed {OnnxScoring}. int8 dynamic quantization takes one activation scale per tensor at run time, " +
             "so in a padded batch the padding and the other rows change every row's scale: outputs depend slightly on padding and batch composition.");
        foreach (var w in d.Winners.Where(w => w.Padding is not null))
        {
            var p = w.Padding!;
            Line(string.Create(inv, $"- `{w.OnnxFile}`: alone {w.OnnxRuntime.Metric:F4}, in padded batches of {p.BatchSize} {p.BatchedMetric:F4}; logits moved by up to {p.MaxAbsLogitDelta:G3}, top class changed on {p.TopClassChanges} of {p.Examples} dev examples."));
        }
        Line();
        Line("## C# (this project's library, SpeedLimit.Core)");
        Line();
        Line("```csharp");
        Line("using SpeedLimit.Data;");
        Line("using SpeedLimit.Onnx;");
        Line();
        Line(c.Tokenizer == "bert-wordpiece"
            ? $"var encoder = BertTextEncoder.FromVocabFile(\"{VocabFile}\", lowerCase: {(c.DoLowerCase ? "true" : "false")});"
            : $"var encoder = new WordLevelEncoder(File.ReadAllLines(\"{VocabFile}\").Skip(5)); // ids 0..4 are the special tokens");
        Line($"using var runner = new OnnxRunner(\"{first}\");");
        Line("var contract = runner.Contract!;                       // task, labels, max length from the ONNX metadata");
        Line("var enc = encoder.Encode(\"first text\", \"second text\" /* pair tasks; null for one text */, contract.MaxLength);");
        Line("float[] logits = runner.Predict([enc.InputIds], [enc.TokenTypeIds], batchSize: 1)[0];");
        Line(c.TaskKind == "regression" ? "Console.WriteLine(logits[0]);" : "Console.WriteLine(contract.Labels[Array.IndexOf(logits, logits.Max())]);");
        Line("```");
        Line();
        Line("## Python (onnxruntime + transformers)");
        Line();
        Line("```python");
        Line("import json, numpy as np, onnxruntime as ort");
        Line("from transformers import AutoTokenizer");
        Line();
        Line("tok = AutoTokenizer.from_pretrained(\".\")             # this folder: tokenizer.json, tokenizer_config.json, vocab.txt");
        Line($"sess = ort.InferenceSession(\"{first}\")");
        Line("meta = sess.get_modelmeta().custom_metadata_map");
        Line("labels, max_length = json.loads(meta[\"labels\"]), int(meta[\"max_length\"])");
        Line("enc = tok(\"first text\", \"second text\", truncation=\"longest_first\", max_length=max_length, return_tensors=\"np\")");
        Line("feed = {k: enc[k].astype(np.int64) for k in (\"input_ids\", \"attention_mask\", \"token_type_ids\")}");
        Line("logits = sess.run([\"logits\"], feed)[0][0]");
        Line(c.TaskKind == "regression" ? "print(logits[0])" : "print(labels[int(logits.argmax())])");
        Line("```");
        Line();
        if (d.Winners.Count > 0)
        {
            Line("## Hugging Face transformers (the fp32 weights, to fine-tune further or run in your own stack)");
            Line();
            Line("```python");
            Line("from transformers import AutoModelForSequenceClassification, AutoTokenizer");
            Line();
            Line($"model = AutoModelForSequenceClassification.from_pretrained(\"{d.Winners[0].HuggingFaceFolder}\")");
            Line($"tok = AutoTokenizer.from_pretrained(\"{d.Winners[0].HuggingFaceFolder}\")");
            Line("logits = model(**tok(\"first text\", \"second text\", return_tensors=\"pt\")).logits");
            Line("```");
            Line();
        }
        Line("## Node (onnxruntime-node + tokenizers)");
        Line();
        Line("```js");
        Line("const { Tokenizer } = require('tokenizers');");
        Line("const ort = require('onnxruntime-node');");
        Line("const { contract } = require('./deployment.json');");
        Line();
        Line("(async () => {");
        Line("  const tok = Tokenizer.fromFile('tokenizer.json');   // truncation (longest-first, max length) is set in the file");
        Line("  const enc = await tok.encode('first text', 'second text');");
        Line("  const tensor = (a) => new ort.Tensor('int64', BigInt64Array.from(a, BigInt), [1, a.length]);");
        Line($"  const session = await ort.InferenceSession.create('{first}');");
        Line("  const { logits } = await session.run({");
        Line("    input_ids: tensor(enc.getIds()), attention_mask: tensor(enc.getAttentionMask()), token_type_ids: tensor(enc.getTypeIds()),");
        Line("  });");
        Line(c.TaskKind == "regression"
            ? "  console.log(logits.data[0]);"
            : "  const row = Array.from(logits.data);\n  console.log(contract.labels[row.indexOf(Math.max(...row))]);");
        Line("})();");
        Line("```");
        return md.ToString();
    }
}
