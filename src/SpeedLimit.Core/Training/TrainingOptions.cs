namespace SpeedLimit.Training;

/// <summary>User-facing optimisation settings (mutable; validated by <see cref="Validate"/>).</summary>
public sealed class TrainingOptions
{
    /// <summary>Peak learning rate reached after warm-up.</summary>
    public float LearningRate { get; set; } = 1e-4f;
    /// <summary>Fraction of the total optimizer steps spent warming up linearly from 0.</summary>
    public float WarmupRatio { get; set; } = 0.1f;
    /// <summary>Decoupled weight decay, applied only to tensors the layout marks decayed.</summary>
    public float WeightDecay { get; set; } = 0.01f;
    public float Beta1 { get; set; } = 0.9f;
    public float Beta2 { get; set; } = 0.999f;
    public float Epsilon { get; set; } = 1e-8f;
    /// <summary>Global L2 gradient norm clip; 0 or less disables clipping.</summary>
    public float MaxGradNorm { get; set; } = 1f;
    /// <summary>Micro-batches whose gradients are averaged into one optimizer step.</summary>
    public int AccumulationSteps { get; set; } = 1;
    /// <summary>Linear decay to 0 after warm-up, or a constant rate after warm-up.</summary>
    public LearningRateScheduleKind Schedule { get; set; } = LearningRateScheduleKind.LinearWarmupLinearDecay;
    public int Seed { get; set; } = 42;
    /// <summary>Worker threads for the kernels; 0 means all cores.</summary>
    public int Threads { get; set; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting and its valid range.</summary>
    public void Validate()
    {
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ArgumentException($"learning rate {LearningRate} must be a positive finite number (e.g. 1e-4)");
        if (!(WarmupRatio >= 0 && WarmupRatio <= 1)) throw new ArgumentException($"warm-up ratio {WarmupRatio} must be in [0, 1] (e.g. 0.1)");
        if (!(WeightDecay >= 0) || !float.IsFinite(WeightDecay)) throw new ArgumentException($"weight decay {WeightDecay} must be a finite number ≥ 0 (e.g. 0.01)");
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentException($"beta1 {Beta1} must be in [0, 1) (e.g. 0.9)");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentException($"beta2 {Beta2} must be in [0, 1) (e.g. 0.999)");
        if (!(Epsilon > 0) || !float.IsFinite(Epsilon)) throw new ArgumentException($"epsilon {Epsilon} must be a positive finite number (e.g. 1e-8)");
        if (float.IsNaN(MaxGradNorm) || float.IsPositiveInfinity(MaxGradNorm)) throw new ArgumentException($"max gradient norm {MaxGradNorm} must be finite (0 disables clipping)");
        if (AccumulationSteps < 1) throw new ArgumentException($"accumulation steps {AccumulationSteps} must be at least 1");
        if (Threads < 0) throw new ArgumentException($"thread count {Threads} must be ≥ 0 (0 = all cores)");
    }
}
