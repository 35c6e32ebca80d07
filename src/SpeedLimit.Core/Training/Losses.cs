using System.Buffers;
using System.Numerics.Tensors;

namespace SpeedLimit.Training;

/// <summary>
/// Training losses as forward+backward in one call. Each returns the mean loss and, when the
/// gradient span is non-empty, ACCUMULATES (<c>+=</c>) <c>gradScale × d(mean loss)/d(input)</c>
/// into it, like every backward pass in the engine. <c>gradScale</c> lets a caller weight a
/// loss term or fold in gradient accumulation (1/n) without another pass. Pass an empty span
/// to compute the loss only.
/// </summary>
internal static class Losses
{
    /// <summary>Label value of rows that do not count (masked-LM positions not masked), as in PyTorch.</summary>
    public const int IgnoreIndex = -100;

    /// <summary>
    /// Softmax cross-entropy over <paramref name="logits"/> (N, C) against integer labels (N).
    /// Rows labelled <see cref="IgnoreIndex"/> contribute neither loss nor gradient; the mean is
    /// over counted rows (0 when none count). Stable through log-sum-exp.
    /// </summary>
    public static float SoftmaxCrossEntropy(ReadOnlySpan<float> logits, ReadOnlySpan<int> labels, int classes,
        Span<float> gradLogits = default, float gradScale = 1f)
    {
        if (classes < 1) throw new ArgumentException($"class count {classes} must be positive");
        int n = labels.Length;
        CheckLength(logits.Length, (long)n * classes, "logits", $"N×C = {n}×{classes}");
        bool wantGrad = !gradLogits.IsEmpty;
        if (wantGrad) CheckLength(gradLogits.Length, logits.Length, "gradLogits", "the logits length");

        int counted = 0;
        for (int i = 0; i < n; i++)
        {
            int y = labels[i];
            if (y == IgnoreIndex) continue;
            if ((uint)y >= (uint)classes)
                throw new ArgumentException($"label {y} at row {i} is outside [0, {classes}); use {IgnoreIndex} for rows that should not count");
            counted++;
        }
        if (counted == 0) return 0f;

        float[] rented = ArrayPool<float>.Shared.Rent(classes);
        try
        {
            var p = rented.AsSpan(0, classes);
            double total = 0;
            float g = gradScale / counted;
            for (int i = 0; i < n; i++)
            {
                int y = labels[i];
                if (y == IgnoreIndex) continue;
                var row = logits.Slice(i * classes, classes); // (C)
                float max = TensorPrimitives.Max(row);
                TensorPrimitives.Subtract(row, max, p);
                TensorPrimitives.Exp(p, p);
                float sum = TensorPrimitives.Sum(p);
                // -log softmax(row)[y] = logsumexp(row) - row[y]
                total += max + Math.Log(sum) - row[y];
                if (wantGrad)
                {
                    // d/dz = softmax(z) - onehot(y), scaled by gradScale / counted
                    TensorPrimitives.Multiply(p, g / sum, p);
                    var gr = gradLogits.Slice(i * classes, classes);
                    TensorPrimitives.Add(gr, p, gr);
                    gr[y] -= g;
                }
            }
            return (float)(total / counted);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Mean squared error over N predictions: mean((p - t)²). Gradient 2(p - t)/N.
    /// </summary>
    public static float MeanSquaredError(ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets,
        Span<float> gradPredictions = default, float gradScale = 1f)
    {
        CheckLength(predictions.Length, targets.Length, "predictions", "the targets length");
        bool wantGrad = !gradPredictions.IsEmpty;
        if (wantGrad) CheckLength(gradPredictions.Length, predictions.Length, "gradPredictions", "the predictions length");
        int n = predictions.Length;
        if (n == 0) return 0f;

        float[] rented = ArrayPool<float>.Shared.Rent(Math.Min(n, ChunkLength));
        try
        {
            double sumSq = 0;
            float g = 2f * gradScale / n;
            // chunks keep the scratch small and the float sums short
            for (int start = 0; start < n; start += ChunkLength)
            {
                int len = Math.Min(ChunkLength, n - start);
                var diff = rented.AsSpan(0, len);
                TensorPrimitives.Subtract(predictions.Slice(start, len), targets.Slice(start, len), diff);
                sumSq += TensorPrimitives.SumOfSquares(diff);
                if (wantGrad)
                {
                    var gr = gradPredictions.Slice(start, len);
                    TensorPrimitives.MultiplyAdd(diff, g, gr, gr);
                }
            }
            return (float)(sumSq / n);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Hidden-state distillation (TinyBERT-style): MSE between student and teacher states of the
    /// same shape, mean over all elements; gradient w.r.t. the student only.
    /// </summary>
    public static float HiddenStateMse(ReadOnlySpan<float> student, ReadOnlySpan<float> teacher,
        Span<float> gradStudent = default, float gradScale = 1f)
    {
        if (student.Length != teacher.Length)
            throw new ArgumentException($"student hidden states have {student.Length} values but the teacher's have {teacher.Length}; they must have the same shape (project the student first if widths differ)");
        return MeanSquaredError(student, teacher, gradStudent, gradScale);
    }

    /// <summary>
    /// Soft-target distillation (Hinton et al.): T² · mean over rows of KL(softmax(teacher/T) ‖
    /// softmax(student/T)), rows (N, C). Gradient w.r.t. the student logits only:
    /// T · (softmax(student/T) − softmax(teacher/T)) / N. When <paramref name="labels"/> is given
    /// (length N), rows labelled <see cref="IgnoreIndex"/> are skipped (masked-LM positions).
    /// The KL form equals the soft cross-entropy minus the teacher's entropy, so it is 0 when the
    /// distributions agree and has the same gradient.
    /// </summary>
    public static float SoftTargetDistillation(ReadOnlySpan<float> studentLogits, ReadOnlySpan<float> teacherLogits,
        int classes, float temperature, Span<float> gradStudent = default, float gradScale = 1f, ReadOnlySpan<int> labels = default)
    {
        if (classes < 1) throw new ArgumentException($"class count {classes} must be positive");
        if (!(temperature > 0) || !float.IsFinite(temperature)) throw new ArgumentException($"distillation temperature {temperature} must be a positive finite number (1 to 4 is usual)");
        CheckLength(teacherLogits.Length, studentLogits.Length, "teacherLogits", "the student logits length");
        if (studentLogits.Length % classes != 0)
            throw new ArgumentException($"student logits length {studentLogits.Length} is not a multiple of {classes} classes");
        int n = studentLogits.Length / classes;
        if (!labels.IsEmpty) CheckLength(labels.Length, n, "labels", $"the row count {n}");
        bool wantGrad = !gradStudent.IsEmpty;
        if (wantGrad) CheckLength(gradStudent.Length, studentLogits.Length, "gradStudent", "the student logits length");

        int counted = 0;
        for (int i = 0; i < n; i++)
            if (labels.IsEmpty || labels[i] != IgnoreIndex) counted++;
        if (counted == 0) return 0f;

        float[] rented = ArrayPool<float>.Shared.Rent(3 * classes);
        try
        {
            var ls = rented.AsSpan(0, classes);            // student log-probs
            var lt = rented.AsSpan(classes, classes);      // teacher log-probs
            var pt = rented.AsSpan(2 * classes, classes);  // teacher probs
            float invT = 1f / temperature;
            float g = gradScale * temperature / counted;
            double total = 0;
            for (int i = 0; i < n; i++)
            {
                if (!labels.IsEmpty && labels[i] == IgnoreIndex) continue;
                LogSoftmax(studentLogits.Slice(i * classes, classes), invT, ls, pt);
                LogSoftmax(teacherLogits.Slice(i * classes, classes), invT, lt, pt);
                TensorPrimitives.Exp(lt, pt);
                // KL = Σ p_t (log p_t − log p_s); log-probs are finite, so p_t = 0 terms add 0
                TensorPrimitives.Subtract(lt, ls, lt);
                total += TensorPrimitives.Dot(pt, lt);
                if (wantGrad)
                {
                    // d/dz_s of T²·KL(z/T) = T·(p_s − p_t)
                    TensorPrimitives.Exp(ls, ls);
                    TensorPrimitives.Subtract(ls, pt, ls);
                    var gr = gradStudent.Slice(i * classes, classes);
                    TensorPrimitives.MultiplyAdd(ls, g, gr, gr);
                }
            }
            return (float)(temperature * temperature * total / counted);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    private const int ChunkLength = 16384;

    /// <summary>destination = log softmax(row · scale), stable; scratch (same length) is clobbered.</summary>
    private static void LogSoftmax(ReadOnlySpan<float> row, float scale, Span<float> destination, Span<float> scratch)
    {
        TensorPrimitives.Multiply(row, scale, destination);
        float max = TensorPrimitives.Max(destination);
        TensorPrimitives.Subtract(destination, max, destination);
        TensorPrimitives.Exp(destination, scratch);
        TensorPrimitives.Subtract(destination, MathF.Log(TensorPrimitives.Sum(scratch)), destination);
    }

    private static void CheckLength(long actual, long expected, string what, string expectedText)
    {
        if (actual != expected)
            throw new ArgumentException($"{what} has length {actual} but must equal {expectedText} = {expected}");
    }
}
