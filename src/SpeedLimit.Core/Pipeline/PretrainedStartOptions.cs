using SpeedLimit.Pretrained;

namespace SpeedLimit.Pipeline;

/// <summary>
/// Starting the supermodel from a pretrained encoder (<c>--pretrained</c>): the source, how its
/// teacher is fine-tuned when none is given, how it is importance-reordered, and how the search
/// space is derived from its shape.
/// </summary>
public sealed record PretrainedStartOptions
{
    /// <summary>A Hugging Face folder, an ONNX export, or a built-in name (<c>minilm-l6</c>).</summary>
    public string Source { get; init; } = "";
    /// <summary>Vocabulary for an ONNX file without one beside it.</summary>
    public string? VocabPath { get; init; }
    /// <summary>How units are ranked before the supermodel starts (DynaBERT's gradient importance by default).</summary>
    public ImportanceKind Importance { get; init; } = ImportanceKind.Gradient;
    /// <summary>Task batches the gradient importance is accumulated over.</summary>
    public int ImportanceBatches { get; init; } = 16;
    /// <summary>Teacher fine-tuning when no <c>--teacher</c> is given (Hugging Face's recipe: AdamW, warm-up 10 %, batch 32).</summary>
    public int TeacherEpochs { get; init; } = 3;
    public float TeacherLearningRate { get; init; } = 5e-5f;
    public int TeacherBatchSize { get; init; } = 32;
    /// <summary>Derive the search space from the model's shape (true unless the user gave <c>--space</c>, which is then checked against it).</summary>
    public bool DeriveSpace { get; init; } = true;
    public PretrainedSpaceOptions SpaceSteps { get; init; } = new();

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Source)) throw new ArgumentException("no pretrained model given; use --pretrained PATH or --pretrained minilm-l6");
        if (VocabPath is { } v && !File.Exists(v)) throw new ArgumentException($"vocabulary '{v}' (--vocab) does not exist; give the vocab.txt of the pretrained model");
        if (!Enum.IsDefined(Importance)) throw new ArgumentException($"unknown importance {Importance}; use --importance gradient or magnitude");
        if (ImportanceBatches < 1) throw new ArgumentException($"importance batches {ImportanceBatches} must be at least 1");
        if (TeacherEpochs < 1) throw new ArgumentException($"--teacher-epochs {TeacherEpochs} must be at least 1");
        if (!(TeacherLearningRate > 0) || !float.IsFinite(TeacherLearningRate)) throw new ArgumentException($"teacher learning rate {TeacherLearningRate} must be a positive number (2e-5 to 5e-5 is usual)");
        if (TeacherBatchSize < 1) throw new ArgumentException($"teacher batch size {TeacherBatchSize} must be at least 1");
    }
}
