using SpeedLimit.Model;

namespace SpeedLimit.Training;

/// <summary>
/// The loss on a head's logits, shared by the fine-tuning and supermodel trainers: the task loss
/// (cross-entropy over <c>classes</c>, or MSE for regression) weighted (1 − w), plus w times the
/// distillation loss against a teacher's logits when one is given (soft targets at a
/// temperature, or MSE for regression). Gradients are added into <c>grad</c>, scaled by
/// <c>gradScale</c> (accumulation, sandwich averaging).
/// </summary>
internal static class LogitLoss
{
    /// <returns>The unweighted task and distillation losses (distillation 0 when not applied).</returns>
    public static (float Task, float Distill) Accumulate(HeadKind head, int classes, ReadOnlySpan<float> logits, int[]? labels, float[]? targets,
        float[]? teacher, float distillWeight, float temperature, Span<float> grad, float gradScale)
    {
        bool distil = teacher is not null && distillWeight > 0;
        float taskScale = gradScale * (distil ? 1f - distillWeight : 1f);
        float task = head == HeadKind.Regression
            ? Losses.MeanSquaredError(logits, targets!, grad, taskScale)
            : Losses.SoftmaxCrossEntropy(logits, labels!, classes, grad, taskScale);
        if (!distil) return (task, 0f);
        float distill = head == HeadKind.Regression
            ? Losses.MeanSquaredError(logits, teacher!, grad, gradScale * distillWeight)
            : Losses.SoftTargetDistillation(logits, teacher!, classes, temperature, grad, gradScale * distillWeight);
        return (task, distill);
    }
}

/// <summary>A reusable, cleared-on-request buffer for d(loss)/d(logits).</summary>
internal sealed class LogitGradientBuffer
{
    private float[] _buffer = [];

    public Span<float> Cleared(int length)
    {
        if (_buffer.Length < length) _buffer = new float[length];
        var d = _buffer.AsSpan(0, length);
        d.Clear();
        return d;
    }
}
