using SpeedLimit.Model;

namespace SpeedLimit.Training;

/// <summary>What one micro-batch step did.</summary>
/// <param name="Loss">Task loss (plus weighted distillation loss when a teacher was given).</param>
/// <param name="OptimizerStepped">True when this micro-batch completed an accumulation group and the weights moved.</param>
/// <param name="SkippedNonFinite">Non-null when the gradients held NaN/Inf: the step was skipped, not trained on.</param>
internal sealed record StepResult(float Loss, bool OptimizerStepped, double GradientNorm, float LearningRate, NonFiniteReport? SkippedNonFinite);

/// <summary>Wall seconds a <see cref="Trainer"/> spent in each phase of its steps since the last <see cref="Reset"/> (for profiles; a timestamp per phase).</summary>
public sealed class TrainingPhaseTimes
{
    public double ForwardSeconds { get; internal set; }
    public double LossSeconds { get; internal set; }
    public double BackwardSeconds { get; internal set; }
    /// <summary>NaN/Inf check and global-norm clipping.</summary>
    public double GradientCheckSeconds { get; internal set; }
    public double OptimizerSeconds { get; internal set; }
    public int MicroBatches { get; internal set; }

    public void Reset() => (ForwardSeconds, LossSeconds, BackwardSeconds, GradientCheckSeconds, OptimizerSeconds, MicroBatches) = (0, 0, 0, 0, 0, 0);

    internal static double Since(ref long t0)
    {
        long now = System.Diagnostics.Stopwatch.GetTimestamp();
        double s = (now - t0) / (double)System.Diagnostics.Stopwatch.Frequency;
        t0 = now;
        return s;
    }
}

/// <summary>
/// Trains one <see cref="BertModel"/>: forward, loss, backward, and every
/// <see cref="TrainingOptions.AccumulationSteps"/> micro-batches a NaN/Inf check, global-norm
/// clipping and an AdamW step on the linear warm-up/decay schedule. Optional soft-target
/// distillation from a teacher's logits (temperature, weight).
/// </summary>
internal sealed class Trainer
{
    private readonly TrainingOptions _options;
    private readonly LearningRateSchedule _schedule;
    private readonly GradientAccumulator _accumulator;
    private readonly LogitGradientBuffer _dLogits = new();
    private ulong _dropoutCounter;
    private IDisposable? _groupFreeze; // an accumulation group's micro-batches share one packing of each weight
    // A classification model's word-embedding rows that the group's batches looked up (null for masked-LM, whose tied
    // decoder writes every row), and whether every micro-batch of the group came through Step, so none is unknown.
    private readonly TouchedEmbeddingRows? _touched;
    private bool _rowsKnown = true;

    /// <param name="totalOptimizerSteps">Length of the learning-rate schedule.</param>
    public Trainer(BertModel model, TrainingOptions options, long totalOptimizerSteps, float dropout = 0.1f)
        : this(model, options, totalOptimizerSteps, dropout, null) { }

    /// <param name="momentStorage">Reused buffers for AdamW's moments, at least as long as the model (see <see cref="AdamW"/>'s constructors).</param>
    internal Trainer(BertModel model, TrainingOptions options, long totalOptimizerSteps, float dropout, (float[] First, float[] Second)? momentStorage)
    {
        options.Validate();
        if (dropout is < 0f or >= 1f) throw new ArgumentException($"dropout rate {dropout} must be in [0, 1)");
        Model = model;
        _options = options;
        Dropout = dropout;
        Optimizer = AdamW.ForLayout(model.Layout, options, momentStorage);
        _schedule = LearningRateSchedule.FromOptions(options, Math.Max(1, totalOptimizerSteps));
        _accumulator = new GradientAccumulator(options.AccumulationSteps);
        _dropoutCounter = (ulong)options.Seed * 0x9E3779B97F4A7C15UL;
        if (model.Config.Head == HeadKind.Classification)
        {
            var word = model.Layout[BertParameterLayout.Names.WordEmbeddings];
            _touched = new TouchedEmbeddingRows(new ParameterRange(word.Offset, word.Length), model.Config.Hidden);
        }
        if (options.Threads > 0) model.Threads = options.Threads;
        model.ZeroGradients();
    }

    public BertModel Model { get; }
    public AdamW Optimizer { get; }
    public float Dropout { get; }
    public long OptimizerSteps => Optimizer.StepCount;
    /// <summary>Where the steps' time went (forward, loss, backward, gradient check, optimizer).</summary>
    public TrainingPhaseTimes PhaseTimes { get; } = new();
    public int SkippedSteps { get; private set; }
    /// <summary>False: check and update every word-embedding row as dense (the tests' reference).</summary>
    internal bool SkipUntouchedEmbeddingRows { get; set; } = true;

    private bool _deferringRows;

    /// <summary>
    /// Lets AdamW defer the updates of word-embedding rows that a step's batches did not touch
    /// (<see cref="AdamW.DeferUntouchedRows"/>), replaying them exactly when a row is next used: a short fine-tuning of a
    /// small model otherwise spends most of its optimizer time streaming the rows that earlier batches woke, every step.
    /// The same bits in the end; each step first brings the rows its batch reads up to date. Call
    /// <see cref="SettleParameters"/> before anything else reads the model's parameters or the optimizer's moments. For
    /// trainers fed by <see cref="Step(LabeledBatch, float[], float, float)"/> only (a masked-LM head writes every row, so
    /// nothing is deferred there).
    /// </summary>
    public void DeferUntouchedEmbeddingRows()
    {
        if (_touched is not null) _deferringRows = Optimizer.DeferUntouchedRows(_touched.Table);
    }

    /// <summary>Applies any deferred updates (<see cref="DeferUntouchedEmbeddingRows"/>): parameters and moments are then what updating every row at every step leaves.</summary>
    public void SettleParameters() => Optimizer.SettleAll(Model.Parameters, Model.Threads);

    /// <summary>One micro-batch of task training, optionally distilling from <paramref name="teacherLogits"/> (B × labels).</summary>
    public StepResult Step(LabeledBatch batch, float[]? teacherLogits = null, float temperature = 1f, float distillWeight = 0f)
    {
        batch.Validate(Model.Config);
        FreezeForGroup();
        long t = System.Diagnostics.Stopwatch.GetTimestamp();
        _touched?.Mark(batch.Input.InputIds);
        if (_deferringRows) Optimizer.SettleRows(Model.Parameters, batch.Input.InputIds, Model.Config.Hidden);
        var logits = Model.Forward(batch.Input, Dropout, NextDropoutSeed());
        PhaseTimes.ForwardSeconds += TrainingPhaseTimes.Since(ref t);
        var d = _dLogits.Cleared(logits.Length);
        var (task, distill) = LogitLoss.Accumulate(Model.Config.Head, Model.Config.Labels, logits, batch.Labels, batch.Targets,
            teacherLogits, distillWeight, temperature, d, _accumulator.LossScale);
        float taskWeight = teacherLogits is null ? 1f : 1f - distillWeight;
        PhaseTimes.LossSeconds += TrainingPhaseTimes.Since(ref t);
        Model.Backward(d);
        PhaseTimes.BackwardSeconds += TrainingPhaseTimes.Since(ref t);
        return Complete(task * taskWeight + distillWeight * distill);
    }

    /// <summary>One micro-batch of masked-LM training.</summary>
    public StepResult Step(MaskedLmBatch batch)
    {
        FreezeForGroup();
        long t = System.Diagnostics.Stopwatch.GetTimestamp();
        var logits = Model.Forward(batch.Input, Dropout, NextDropoutSeed(), batch.Positions);
        PhaseTimes.ForwardSeconds += TrainingPhaseTimes.Since(ref t);
        var d = _dLogits.Cleared(logits.Length);
        var (loss, _) = LogitLoss.Accumulate(HeadKind.MaskedLm, Model.Config.VocabSize, logits, batch.Labels, null, null, 0f, 1f, d, _accumulator.LossScale);
        PhaseTimes.LossSeconds += TrainingPhaseTimes.Since(ref t);
        Model.Backward(d);
        PhaseTimes.BackwardSeconds += TrainingPhaseTimes.Since(ref t);
        return Complete(loss);
    }

    /// <summary>Ends a micro-batch whose gradients are already in <see cref="BertModel.Gradients"/> (used by supermodel training).</summary>
    public StepResult Finish(float loss)
    {
        if (_deferringRows) throw new InvalidOperationException("deferred embedding rows need the trainer's own forward passes (Step), not gradients computed elsewhere");
        _rowsKnown = false; // whoever computed these gradients did not say which embedding rows they wrote
        return Complete(loss);
    }

    private StepResult Complete(float loss)
    {
        PhaseTimes.MicroBatches++;
        if (!_accumulator.CompleteMicroBatch()) return new StepResult(loss, false, double.NaN, 0f, null);
        _groupFreeze?.Dispose();
        _groupFreeze = null;
        if (Model.WeightsFrozen)
            throw new InvalidOperationException("the model's weights are frozen (BertModel.FreezeWeights scope open); close the scope before training it");
        long t = System.Diagnostics.Stopwatch.GetTimestamp();
        var grads = Model.GradientMemory;
        int threads = Model.Threads;
        // One pass finds a non-finite value or the global norm; the clipping factor is applied as AdamW reads
        // each gradient, which also clears the buffer for the next group: the gradients are streamed twice, not five times.
        var touched = _rowsKnown && SkipUntouchedEmbeddingRows ? _touched : null;
        _rowsKnown = true;
        var (bad, norm) = float.IsFinite(loss) ? GradientUtilities.Inspect(grads, Model.Layout, threads, touched) : (new NonFiniteReport("loss", 0, -1, loss), double.NaN);
        if (bad is not null)
        {
            SkippedSteps++;
            Model.ZeroGradients();
            _touched?.Clear();
            PhaseTimes.GradientCheckSeconds += TrainingPhaseTimes.Since(ref t);
            return new StepResult(loss, false, double.NaN, 0f, bad);
        }
        float clip = _options.MaxGradNorm > 0 ? GradientUtilities.ClipFactor(norm, _options.MaxGradNorm) : 1f;
        PhaseTimes.GradientCheckSeconds += TrainingPhaseTimes.Since(ref t);
        float lr = _schedule.At(Optimizer.StepCount);
        Optimizer.Step(Model.ParameterMemory, grads, lr, clip, clearGradients: true, threads, touched);
        _touched?.Clear();
        PhaseTimes.OptimizerSeconds += TrainingPhaseTimes.Since(ref t);
        return new StepResult(loss, true, norm, lr, null);
    }

    /// <summary>
    /// After restoring weights and optimizer state saved after <paramref name="microBatches"/> micro-batches,
    /// continues the dropout seed sequence where it stopped, so a resumed run draws the masks an
    /// uninterrupted one would.
    /// </summary>
    public void ResumeDropoutAt(long microBatches)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(microBatches);
        _dropoutCounter = (ulong)_options.Seed * 0x9E3779B97F4A7C15UL + (ulong)microBatches;
    }

    private ulong NextDropoutSeed() => ++_dropoutCounter;

    /// <summary>With several micro-batches per optimizer step, the weights stay fixed over the group: pack them once for all of its passes.</summary>
    private void FreezeForGroup()
    {
        if (_options.AccumulationSteps > 1 && _groupFreeze is null && !Model.WeightsFrozen) _groupFreeze = Model.FreezeWeights();
    }
}
