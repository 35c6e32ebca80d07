using SpeedLimit.Model;

namespace SpeedLimit.Training;

/// <summary>A batch with its supervision: class ids (classification) or float targets (regression).</summary>
public sealed record LabeledBatch(EncoderInput Input, int[]? Labels = null, float[]? Targets = null)
{
    public void Validate(BertConfig config)
    {
        switch (config.Head)
        {
            case HeadKind.Classification:
                if (Labels is null || Labels.Length != Input.Batch) throw new ArgumentException($"a classification batch needs {Input.Batch} labels");
                foreach (var y in Labels)
                    if ((uint)y >= (uint)config.Labels) throw new ArgumentException($"label {y} is outside 0..{config.Labels - 1}");
                break;
            case HeadKind.Regression:
                if (Targets is null || Targets.Length != Input.Batch) throw new ArgumentException($"a regression batch needs {Input.Batch} targets");
                break;
            default:
                throw new ArgumentException("a masked-LM model trains on MaskedLmBatch, not LabeledBatch");
        }
    }
}

/// <summary>A masked-LM batch: the flat token positions that were masked and their original ids.</summary>
public sealed record MaskedLmBatch(EncoderInput Input, int[] Positions, int[] Labels);
