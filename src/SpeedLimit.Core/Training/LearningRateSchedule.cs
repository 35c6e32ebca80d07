namespace SpeedLimit.Training;

public enum LearningRateScheduleKind
{
    /// <summary>Linear warm-up from 0 to the peak, then linear decay to 0 at the last step.</summary>
    LinearWarmupLinearDecay,
    /// <summary>Linear warm-up, then the peak rate held.</summary>
    Constant,
}

/// <summary>
/// Learning rate by optimizer step (0-based). Warm-up uses (step + 1) / warmup so the first
/// step already moves the weights (Hugging Face's schedule gives step 0 a rate of 0);
/// decay is peak · (total − step) / (total − warmup), which is positive on every step before
/// <c>TotalSteps</c> and 0 from there on.
/// </summary>
internal sealed class LearningRateSchedule
{
    public LearningRateSchedule(float peakLearningRate, long totalSteps, long warmupSteps,
        LearningRateScheduleKind kind = LearningRateScheduleKind.LinearWarmupLinearDecay)
    {
        if (!(peakLearningRate > 0) || !float.IsFinite(peakLearningRate)) throw new ArgumentException($"peak learning rate {peakLearningRate} must be a positive finite number");
        if (totalSteps < 1) throw new ArgumentException($"total steps {totalSteps} must be at least 1");
        if (warmupSteps < 0 || warmupSteps > totalSteps) throw new ArgumentException($"warm-up steps {warmupSteps} must be in [0, total steps {totalSteps}]");
        PeakLearningRate = peakLearningRate;
        TotalSteps = totalSteps;
        WarmupSteps = warmupSteps;
        Kind = kind;
    }

    /// <summary>Warm-up steps = ceil(ratio × total), as Hugging Face computes them.</summary>
    public static LearningRateSchedule FromRatio(float peakLearningRate, long totalSteps, float warmupRatio,
        LearningRateScheduleKind kind = LearningRateScheduleKind.LinearWarmupLinearDecay)
    {
        if (!(warmupRatio >= 0 && warmupRatio <= 1)) throw new ArgumentException($"warm-up ratio {warmupRatio} must be in [0, 1]");
        return new LearningRateSchedule(peakLearningRate, totalSteps, (long)Math.Ceiling((double)warmupRatio * totalSteps), kind);
    }

    public static LearningRateSchedule FromOptions(TrainingOptions options, long totalSteps)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return FromRatio(options.LearningRate, totalSteps, options.WarmupRatio, options.Schedule);
    }

    public float PeakLearningRate { get; }
    public long TotalSteps { get; }
    public long WarmupSteps { get; }
    public LearningRateScheduleKind Kind { get; }

    /// <summary>The rate for optimizer step <paramref name="step"/> (0-based).</summary>
    public float At(long step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be ≥ 0");
        if (step < WarmupSteps) return (float)(PeakLearningRate * ((double)(step + 1) / WarmupSteps));
        if (Kind == LearningRateScheduleKind.Constant) return PeakLearningRate;
        if (step >= TotalSteps) return 0f;
        return (float)(PeakLearningRate * ((double)(TotalSteps - step) / (TotalSteps - WarmupSteps)));
    }
}
