using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Training;

/// <summary>Settings of weight-sharing supermodel training.</summary>
public sealed record SupermodelOptions
{
    /// <summary>Random sub-models per step besides the largest and the smallest (the sandwich rule).</summary>
    public int RandomSubModels { get; init; } = 2;
    /// <summary>Weight of in-place distillation from the largest sub-model's logits for the other sub-models (0 = labels only).</summary>
    public float DistillWeight { get; init; } = 0.5f;
    public float Temperature { get; init; } = 1f;
    public float Dropout { get; init; } = 0.1f;
    /// <summary>
    /// Weight of hidden-state distillation from an external teacher (TinyBERT-style MSE, 0 = logits only):
    /// sub-model layer l of e matches teacher layer round(l·E/e) on its leading h channels, so the
    /// teacher's channels must be in the supermodel's order (the importance-reordered teacher).
    /// </summary>
    public float HiddenDistillWeight { get; init; }

    public void Validate()
    {
        if (RandomSubModels < 0) throw new ArgumentException($"random sub-models per step ({RandomSubModels}) must be ≥ 0");
        if (DistillWeight is < 0f or > 1f) throw new ArgumentException($"distillation weight {DistillWeight} must be in [0, 1]");
        if (!(Temperature > 0)) throw new ArgumentException($"distillation temperature {Temperature} must be positive");
        if (HiddenDistillWeight < 0 || !float.IsFinite(HiddenDistillWeight)) throw new ArgumentException($"hidden-state distillation weight {HiddenDistillWeight} must be a finite number ≥ 0");
    }
}

/// <summary>
/// Trains an <see cref="ElasticSupermodel"/> with the sandwich rule: each step runs the largest
/// architecture of the search space, the smallest, and n random ones on the same batch, adds
/// their gradients into the shared weights (averaged), and takes one optimizer step. The largest
/// learns from the labels; the others also distil from its logits (in-place distillation), which
/// needs no external teacher.
/// </summary>
internal sealed class SupermodelTrainer
{
    private readonly SupermodelOptions _options;
    private readonly Trainer _trainer;          // owns AdamW/schedule/clipping over the supermodel buffer
    // Storage for the sub-model being run (parameters, gradients): sub-models take turns within a step, and a new model
    // (its buffers allocated) per sampled architecture touched tens of MB of fresh pages per step, at 10–15 µs a page on a
    // VM that backs guest memory lazily. Sized for the supermodel, so it holds any of them.
    private float[] _subParameters = [], _subGradients = [];
    private readonly LogitGradientBuffer _dLogits = new();
    private BertActivations? _workspace;

    public SupermodelTrainer(ElasticSupermodel supermodel, SearchSpace space, TrainingOptions training, SupermodelOptions options, long totalSteps)
    {
        options.Validate();
        if (!space.Largest.FitsIn(supermodel.Config.Arch))
            throw new ArgumentException($"search space's largest architecture {space.Largest} does not fit in the supermodel {supermodel.Config.Arch}");
        if (space.Heads != supermodel.Config.Heads)
            throw new ArgumentException($"search space uses {space.Heads} heads but the supermodel has {supermodel.Config.Heads}");
        Supermodel = supermodel;
        Space = space;
        _options = options;
        _trainer = new Trainer(supermodel.Supermodel, training, totalSteps, options.Dropout);
    }

    public ElasticSupermodel Supermodel { get; }

    /// <summary>
    /// Sizes the activation workspaces (the sub-models' and the teacher's) for batches of up to <paramref name="batch"/>
    /// sequences of up to <paramref name="sequenceLength"/> tokens at once. Grown on demand, they were reallocated at each
    /// batch longer than any before, early in training, and each time the new buffers' pages were touched afresh.
    /// </summary>
    public void ReserveWorkspace(int batch, int sequenceLength)
    {
        _workspace = BertActivations.Ensure(_workspace, Supermodel.Config, batch, sequenceLength, 0);
        if (_teacher is not null) _teacher.Workspace = BertActivations.Ensure(_teacher.Workspace, _teacher.Config, batch, sequenceLength, 0);
    }

    /// <summary>
    /// An external teacher (e.g. a fine-tuned larger model, same vocabulary and head). When set,
    /// every sampled sub-model — the largest too — distils from its logits instead of from the largest's.
    /// </summary>
    public BertModel? Teacher
    {
        get => _teacher;
        set
        {
            if (value is not null && (value.Config.Head != Supermodel.Config.Head || value.Config.Labels != Supermodel.Config.Labels || value.Config.VocabSize != Supermodel.Config.VocabSize))
                throw new ArgumentException($"teacher {value.Config.Arch} ({value.Config.Head}, {value.Config.Labels} labels, vocabulary {value.Config.VocabSize}) does not match the supermodel's head, labels and vocabulary");
            _teacherFreeze?.Dispose();
            _teacher = value;
            // The teacher's weights do not change while it teaches: its forward passes reuse one packing of each weight.
            _teacherFreeze = value?.FreezeWeights();
        }
    }
    private BertModel? _teacher;
    private IDisposable? _teacherFreeze;
    public SearchSpace Space { get; }
    public AdamW Optimizer => _trainer.Optimizer;
    public long Steps => _trainer.OptimizerSteps;

    /// <summary>The architectures one step trains, drawn from <paramref name="rng"/>: largest, smallest, then random ones.</summary>
    public IReadOnlyList<Architecture> SampleSandwich(Random rng)
    {
        var list = new List<Architecture> { Space.Largest };
        if (Space.Smallest != Space.Largest) list.Add(Space.Smallest);
        for (int i = 0; i < _options.RandomSubModels; i++) list.Add(Space.Sample(rng));
        return list;
    }

    /// <summary>One sandwich step on a labelled batch. Returns the largest sub-model's loss and the step outcome.</summary>
    public StepResult Step(LabeledBatch batch, Random rng)
    {
        float[]? teacherLogits = _teacher?.Forward(batch.Input).ToArray();
        float[][]? teacherHidden = null;
        if (_teacher is not null && _options.HiddenDistillWeight > 0)
        {
            if (_teacher.Config.Hidden < Space.Largest.Hidden)
                throw new InvalidOperationException($"hidden-state distillation needs a teacher at least as wide as the space's largest hidden size {Space.Largest.Hidden}; the teacher has {_teacher.Config.Hidden}");
            teacherHidden = Enumerable.Range(0, _teacher.Config.Layers + 1).Select(j => _teacher.HiddenState(j).ToArray()).ToArray();
        }
        return Sandwich(batch.Input, null, Supermodel.Config.Labels, batch.Labels, batch.Targets, teacherLogits, rng, teacherHidden);
    }

    /// <summary>One sandwich step of masked-LM pretraining.</summary>
    public StepResult Step(MaskedLmBatch batch, Random rng) =>
        Sandwich(batch.Input, batch.Positions, Supermodel.Config.VocabSize, batch.Labels, null, null, rng);

    /// <summary>
    /// Runs every sampled architecture on the batch, largest first; the others distil from the
    /// external teacher's logits when there is one, else from the largest's.
    /// </summary>
    private StepResult Sandwich(EncoderInput input, int[]? positions, int classes, int[]? labels, float[]? targets, float[]? teacher, Random rng, float[][]? teacherHidden = null)
    {
        var archs = SampleSandwich(rng);
        float gradScale = 1f / archs.Count;
        float largestLoss = 0;
        for (int i = 0; i < archs.Count; i++)
        {
            var model = ModelFor(archs[i]);
            model.Workspace = _workspace; // the largest runs first, so its buffers hold every later pass
            var logits = model.Forward(input, _options.Dropout, (ulong)rng.NextInt64(), positions);
            var d = _dLogits.Cleared(logits.Length);
            var (loss, _) = LogitLoss.Accumulate(model.Config.Head, classes, logits, labels, targets,
                teacher, _options.DistillWeight, _options.Temperature, d, gradScale);
            if (i == 0) { teacher ??= logits.ToArray(); largestLoss = loss; }
            var hiddenGrads = teacherHidden is null ? null : HiddenDistillation(model, teacherHidden, input.Tokens, gradScale * _options.HiddenDistillWeight);
            RunBackward(model, d, hiddenGrads);
            _workspace = model.Workspace;
        }
        return _trainer.Finish(largestLoss);
    }

    /// <summary>
    /// d/d(hidden) of weight × mean over layers of MSE(student layer l, teacher layer round(l·E/e)[:, :h]) for
    /// l = 1..e (the embeddings output is not matched), as hidden-state gradients for Backward.
    /// </summary>
    internal static float[]?[] HiddenDistillation(BertModel student, float[][] teacherHidden, int tokens, float weight)
    {
        int e = student.Config.Layers, h = student.Config.Hidden, E = teacherHidden.Length - 1, H = teacherHidden[0].Length / tokens;
        var grads = new float[]?[e + 1];
        var target = new float[tokens * h];
        for (int l = 1; l <= e; l++)
        {
            var t = teacherHidden[(int)Math.Round(l * (double)E / e)];
            for (int n = 0; n < tokens; n++) t.AsSpan(n * H, h).CopyTo(target.AsSpan(n * h, h)); // leading h channels, token by token
            var g = new float[tokens * h];
            Losses.HiddenStateMse(student.HiddenState(l), target, g, weight / e);
            grads[l] = g;
        }
        return grads;
    }

    private void RunBackward(BertModel model, Span<float> dLogits, IReadOnlyList<float[]?>? hiddenGradients = null)
    {
        var super = Supermodel.Supermodel;
        if (ReferenceEquals(model, super))
        {
            super.Backward(dLogits, hiddenGradients);
            return;
        }
        model.ZeroGradients();
        model.Backward(dLogits, hiddenGradients);
        Supermodel.AccumulateGradients(model);
    }

    /// <summary>The supermodel itself for its own architecture, else a compact copy of the shared weights in the sub-model storage.</summary>
    private BertModel ModelFor(Architecture arch)
    {
        var super = Supermodel.Supermodel;
        if (arch == super.Config.Arch) return super;
        if (_subParameters.Length == 0)
            (_subParameters, _subGradients) = (new float[super.Layout.TotalLength], new float[super.Layout.TotalLength]);
        return Supermodel.Extract(arch, _subParameters, _subGradients); // RunBackward clears its gradients
    }
}
