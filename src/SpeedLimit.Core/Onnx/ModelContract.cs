using System.Globalization;
using System.Text.Json;

namespace SpeedLimit.Onnx;

/// <summary>
/// What a deployed model expects and what its output means: the task, the label names in logit
/// order, the metric it was scored with, and the tokenizer rule (vocabulary, lower-casing, max
/// length, truncation). The exporter writes it into the ONNX file's <c>metadata_props</c>; the run
/// folder's <c>model.json</c> and tokenizer files carry the same values.
/// </summary>
/// <param name="Task">Task name, e.g. "sst2".</param>
/// <param name="TaskKind">"classification" or "regression".</param>
/// <param name="Labels">Label names in logit order (empty for regression: one output, the score).</param>
/// <param name="Metric">The task's primary dev metric, e.g. "accuracy".</param>
/// <param name="Tokenizer">"bert-wordpiece" (vocab.txt, Hugging Face's BertTokenizer rules) or "word-level" (whitespace words).</param>
/// <param name="MaxLength">Tokens per input after truncation, special tokens included.</param>
/// <param name="DoLowerCase">Lower-case (and strip accents) before WordPiece.</param>
/// <param name="VocabSize">Entries of the vocabulary (ids 0..VocabSize−1).</param>
/// <param name="VocabSha256">SHA-256 of the vocabulary's lines joined by "\n" (so CRLF copies match), lower-case hex.</param>
public sealed record ModelContract(
    string Task, string TaskKind, IReadOnlyList<string> Labels, string Metric,
    string Tokenizer, int MaxLength, bool DoLowerCase, int VocabSize, string VocabSha256)
{
    /// <summary>Pairs are cut longest-first, as Hugging Face's fast tokenizer does (see <see cref="Data.EncodedText.LongestFirst"/>).</summary>
    public string TruncationStrategy => "longest_first";
    /// <summary>Tokens are dropped from the end of a part.</summary>
    public string TruncationSide => "right";

    /// <summary>Metadata keys of the ONNX file (the exporter adds <see cref="BertOnnxExporter.PositionLimitKey"/> and the architecture itself).</summary>
    public IReadOnlyDictionary<string, string> ToMetadata() => new Dictionary<string, string>
    {
        ["task"] = Task,
        ["task_kind"] = TaskKind,
        ["labels"] = JsonSerializer.Serialize(Labels),
        ["metric"] = Metric,
        ["tokenizer"] = Tokenizer,
        ["max_length"] = MaxLength.ToString(CultureInfo.InvariantCulture),
        ["do_lower_case"] = DoLowerCase ? "true" : "false",
        ["truncation_strategy"] = TruncationStrategy,
        ["truncation_side"] = TruncationSide,
        ["vocab_size"] = VocabSize.ToString(CultureInfo.InvariantCulture),
        ["vocab_sha256"] = VocabSha256,
    };

    /// <summary>
    /// Reads a contract back from ONNX metadata; null when the file carries none or only part of one
    /// (a bare <c>speedlimit export</c>, or another tool's file whose keys merely overlap).
    /// </summary>
    public static ModelContract? FromMetadata(IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        string? Get(string key) => metadata.TryGetValue(key, out var v) ? v : null;
        if (Get("task") is not { } task || Get("task_kind") is not { } kind || Get("labels") is not { } labelsJson || Get("metric") is not { } metric
            || Get("tokenizer") is not { } tokenizer || Get("vocab_sha256") is not { } sha
            || !int.TryParse(Get("max_length"), NumberStyles.None, CultureInfo.InvariantCulture, out var maxLength)
            || !int.TryParse(Get("vocab_size"), NumberStyles.None, CultureInfo.InvariantCulture, out var vocabSize))
            return null;
        string[]? labels;
        try { labels = JsonSerializer.Deserialize<string[]>(labelsJson); }
        catch (JsonException) { return null; }
        return labels is null ? null : new ModelContract(task, kind, labels, metric, tokenizer, maxLength, Get("do_lower_case") == "true", vocabSize, sha);
    }
}
