using System.Numerics.Tensors;
using SpeedLimit.Kernels;
using SpeedLimit.Model.Layers;
using SpeedLimit.Quantization;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Model;

/// <summary>
/// A BERT encoder with its task head, trained by explicit forward/backward passes (no autograd).
/// All parameters live in one flat buffer carved by <see cref="BertParameterLayout"/>; gradients
/// in a second buffer of the same layout. <see cref="Forward"/> keeps the activations that
/// <see cref="Backward"/> needs; Backward accumulates (+=) into <see cref="Gradients"/>.
/// </summary>
public sealed class BertModel
{
    private BertActivations? _act;

    public BertModel(BertConfig config, float[]? parameters = null)
    {
        Config = config;
        Layout = new BertParameterLayout(config);
        if (Layout.TotalLength > Array.MaxLength) throw new ArgumentException($"model {config.Arch} with vocabulary {config.VocabSize} is too large for one buffer");
        if (parameters is not null && parameters.Length != Layout.TotalLength)
            throw new ArgumentException($"parameter buffer holds {parameters.Length} floats but {config.Arch} needs {Layout.TotalLength}");
        Parameters = parameters ?? new float[Layout.TotalLength];
    }

    /// <summary>
    /// A model that lives in reused storage (<see cref="Pipeline.CandidateMemory"/>): its parameters and gradients are the
    /// first <see cref="BertParameterLayout.TotalLength"/> floats of buffers that may be longer, so a search's candidates of
    /// different sizes take turns with the same memory instead of each touching fresh pages. The parameters are left as
    /// they are (the caller writes all of them), and so are the gradients: call <see cref="ZeroGradients"/> before the first
    /// <see cref="Backward"/> (a <see cref="Training.Trainer"/> does). Code that takes the whole <see cref="Parameters"/> array
    /// (checkpoints, ONNX export) refuses such a model, as it checks the length.
    /// </summary>
    internal BertModel(BertConfig config, float[] parameterStorage, float[] gradientStorage)
    {
        Config = config;
        Layout = new BertParameterLayout(config);
        if (parameterStorage.Length < Layout.TotalLength || gradientStorage.Length != parameterStorage.Length)
            throw new ArgumentException($"storage of {parameterStorage.Length}/{gradientStorage.Length} floats cannot hold {config.Arch} ({Layout.TotalLength} parameters and as many gradients)");
        Parameters = parameterStorage;
        Gradients = gradientStorage;
    }

    public BertConfig Config { get; }
    public BertParameterLayout Layout { get; }
    /// <summary>The flat parameter buffer: exactly <see cref="BertParameterLayout.TotalLength"/> floats, longer only for a model in reused storage.</summary>
    public float[] Parameters { get; }
    /// <summary>Gradient buffer (same layout), allocated by <see cref="EnsureGradients"/>.</summary>
    public float[] Gradients { get; private set; } = [];
    /// <summary>The parameters, exactly as many as the layout has (<see cref="Parameters"/> may be longer storage).</summary>
    internal Memory<float> ParameterMemory => Parameters.AsMemory(0, (int)Layout.TotalLength);
    /// <summary>The gradients, exactly as many as the layout has.</summary>
    internal Memory<float> GradientMemory => EnsureGradients().AsMemory(0, (int)Layout.TotalLength);
    /// <summary>Threads for the matrix products and attention.</summary>
    public int Threads { get; set; } = Gemm.DefaultThreads;

    /// <summary>BERT's initialization: N(0, std) weights and embeddings, zero biases, unit LayerNorm scales.</summary>
    public static BertModel CreateRandom(BertConfig config, int seed, float std = 0.02f)
    {
        var model = new BertModel(config);
        var rng = new Random(seed);
        foreach (var t in model.Layout.Tensors)
        {
            var span = model.Parameters.AsSpan((int)t.Offset, (int)t.Length);
            if (t.Name.Contains("LayerNorm.weight", StringComparison.Ordinal)) span.Fill(1f);
            else if (t.Shape.Length == 1) span.Clear();
            else for (int i = 0; i < span.Length; i++) span[i] = std * NextGaussian(rng);
        }
        return model;
    }

    internal static float NextGaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }

    /// <summary>
    /// The activation buffers of the last pass. A supermodel's workspace holds any of its
    /// sub-models' passes (buffers are used as prefixes), so training many sampled architectures
    /// can share one workspace instead of allocating per architecture.
    /// </summary>
    internal BertActivations? Workspace { get => _act; set => _act = value; }

    private int _freezeDepth;
    private Dictionary<string, PackedMatrix>? _packs;

    /// <summary>Whether a <see cref="FreezeWeights"/> scope is open.</summary>
    public bool WeightsFrozen => _freezeDepth > 0;

    /// <summary>
    /// Declares the parameters fixed until the returned scope is disposed: meanwhile every linear layer packs its
    /// weight once (in the layouts its forward and input-gradient products read, <see cref="PackedMatrix"/>) and
    /// reuses the packing in every pass — evaluation over many batches, a distillation teacher, the micro-batches
    /// of one accumulation group — instead of repacking it per call. Writing parameters while frozen would leave
    /// the passes on the old values, so don't; a <see cref="Training.Trainer"/> refuses to step a frozen model.
    /// Scopes nest; the packings are dropped when the last one closes. Results are bit-identical either way.
    /// </summary>
    public IDisposable FreezeWeights()
    {
        _freezeDepth++;
        return new FreezeScope(this);
    }

    private sealed class FreezeScope(BertModel model) : IDisposable
    {
        private bool _closed;

        public void Dispose()
        {
            if (_closed) return;
            _closed = true;
            if (--model._freezeDepth == 0) model._packs = null;
        }
    }

    /// <summary>The named (out,in) weight packed as the product with it needs — forward: op(B) = Wᵀ; input gradient: op(B) = W — or null when not frozen.</summary>
    private PackedMatrix? PackOf(string weight, int outDim, int inDim, bool forward)
    {
        if (_freezeDepth == 0) return null;
        _packs ??= new Dictionary<string, PackedMatrix>(StringComparer.Ordinal);
        string key = forward ? weight : weight + "|dx";
        if (!_packs.TryGetValue(key, out var packed))
            _packs[key] = packed = forward
                ? PackedMatrix.Pack(true, inDim, outDim, Tensor(weight), inDim, Threads)
                : PackedMatrix.Pack(false, outDim, inDim, Tensor(weight), inDim, Threads);
        return packed;
    }

    public float[] EnsureGradients()
    {
        if (Gradients.Length != Parameters.Length) Gradients = new float[Parameters.Length];
        return Gradients;
    }

    /// <summary>Zeroes the gradient buffer, split over <see cref="Threads"/> (it is as large as the model); a new buffer is zero already, and its pages are left untouched.</summary>
    public void ZeroGradients()
    {
        if (Gradients.Length != Parameters.Length)
        {
            Gradients = new float[Parameters.Length];
            return;
        }
        EngineParallel.Clear(Gradients, (int)Layout.TotalLength, Threads);
    }

    public Span<float> Tensor(string name) => Slice(Parameters, name);
    /// <summary>The named parameter tensor as memory (for parallel loops, which cannot capture spans).</summary>
    internal ReadOnlyMemory<float> TensorMemory(string name)
    {
        var t = Layout[name];
        return Parameters.AsMemory((int)t.Offset, (int)t.Length);
    }
    public Span<float> Gradient(string name) => Slice(Gradients, name);

    private Span<float> Slice(float[] buffer, string name)
    {
        var t = Layout[name];
        return buffer.AsSpan((int)t.Offset, (int)t.Length);
    }

    /// <summary>Hidden states after the embeddings (index 0) and after each encoder layer (1..e), each (B·T, H), from the last forward.</summary>
    public ReadOnlySpan<float> HiddenState(int index) => Activations.Hidden[index].AsSpan(0, Activations.Tokens * Config.Hidden);

    private BertActivations Activations => _act ?? throw new InvalidOperationException("run Forward before reading activations or calling Backward");

    /// <summary>
    /// Runs the encoder and head. Classification/regression: returns logits (B, labels).
    /// Masked-LM: returns logits (M, vocab) for the M flat token positions in <paramref name="mlmPositions"/>
    /// (only masked positions are decoded, which keeps a 30k vocabulary affordable).
    /// </summary>
    /// <param name="dropout">Dropout rate in training (0 for evaluation).</param>
    /// <param name="dropoutSeed">Seed of this step's dropout masks.</param>
    /// <param name="int8">When given, every quantizable linear layer runs as the int8 ONNX graph would (evaluation only).</param>
    public ReadOnlySpan<float> Forward(EncoderInput input, float dropout = 0f, ulong dropoutSeed = 0, int[]? mlmPositions = null, Int8Simulation? int8 = null)
    {
        if (int8 is not null && dropout > 0) throw new ArgumentException("int8 simulation is for evaluation; run it with dropout 0");
        input.Validate(Config);
        if (dropout is < 0f or >= 1f) throw new ArgumentException($"dropout rate {dropout} must be in [0, 1)");
        if (Config.Head == HeadKind.MaskedLm && mlmPositions is null) throw new ArgumentException("a masked-LM head needs the masked positions to decode");
        int B = input.Batch, T = input.SequenceLength, H = Config.Hidden, F = Config.Ffn, Ntok = B * T;
        var a = _act = BertActivations.Ensure(_act, Config, B, T, mlmPositions?.Length ?? 0);
        a.Input = input;
        a.Dropout = dropout;
        a.MlmPositions = mlmPositions;
        var rng = new SplitMix64(dropoutSeed);
        int threads = Threads;
        int nh = Ntok * H;
        // y = x·Wᵀ + b for the named layer (or x·Wᵀ alone when a fused pass adds the bias), in fp32 or as the int8 graph computes it.
        void Dense(string weight, string bias, ReadOnlySpan<float> x, Span<float> y, int rows, int inDim, int outDim, bool addBias = true)
        {
            var b = addBias ? Tensor(bias) : default;
            if (int8 is not null && int8.Covers(weight)) int8.Forward(weight, x, b, y, rows, threads);
            else Linear.Forward(x, Tensor(weight), b, y, rows, inDim, outDim, threads, PackOf(weight, outDim, inDim, forward: true));
        }
        float[]? DropoutMask(float[] mask, ref SplitMix64 rng)
        {
            if (dropout == 0f) return null;
            Dropout.FillMask(mask, nh, dropout, ref rng, threads);
            return mask;
        }

        // Embeddings: e0 = word[id] + pos[t] + type[tt]  (B·T, H)
        // and its LayerNorm, rows split over threads (each row is independent)
        var wordMemory = TensorMemory(N.WordEmbeddings); var posMemory = TensorMemory(N.PositionEmbeddings); var typeMemory = TensorMemory(N.TokenTypeEmbeddings);
        var lnWeight = TensorMemory(N.EmbeddingsLayerNormWeight); var lnBias = TensorMemory(N.EmbeddingsLayerNormBias);
        EngineParallel.SplitRows(Ntok, H, threads, (r0, r1) =>
        {
            var word = wordMemory.Span; var pos = posMemory.Span; var type = typeMemory.Span;
            for (int n = r0; n < r1; n++)
            {
                var row = a.EmbeddingSum.AsSpan(n * H, H);
                TensorPrimitives.Add(word.Slice(input.InputIds[n] * H, H), pos.Slice((n % T) * H, H), row);
                TensorPrimitives.Add(row, type.Slice(input.TokenTypeIds[n] * H, H), row);
            }
            LayerNorm.Forward(a.EmbeddingSum.AsSpan(r0 * H, (r1 - r0) * H), lnWeight.Span, lnBias.Span, a.Hidden[0].AsSpan(r0 * H, (r1 - r0) * H),
                a.EmbLnMean.AsSpan(r0, r1 - r0), a.EmbLnRstd.AsSpan(r0, r1 - r0), r1 - r0, H, Config.LayerNormEps);
        });
        ApplyDropout(a.Hidden[0].AsSpan(0, nh), a.EmbDropMask, dropout, ref rng, threads);

        for (int l = 0; l < Config.Layers; l++)
        {
            var L = a.Layers[l];
            var x = a.Hidden[l];
            Dense(N.Query(l, "weight"), N.Query(l, "bias"), x, L.Q, Ntok, H, H);
            Dense(N.Key(l, "weight"), N.Key(l, "bias"), x, L.K, Ntok, H, H);
            Dense(N.Value(l, "weight"), N.Value(l, "bias"), x, L.V, Ntok, H, H);
            Attention.Forward(L.Q, L.K, L.V, input.AttentionMask, L.Probs, L.Context, B, T, H, Config.Heads, threads);
            // r1 = x + dropout(ctx·Woᵀ + bo); x1 = LN(r1): bias, dropout, residual and LN in one pass per row
            Dense(N.AttentionOutput(l, "weight"), N.AttentionOutput(l, "bias"), L.Context, L.Residual1, Ntok, H, H, addBias: false);
            LayerNorm.BiasResidualForward(L.Residual1, TensorMemory(N.AttentionOutput(l, "bias")), DropoutMask(L.AttnDropMask, ref rng), x,
                TensorMemory(N.AttentionLayerNorm(l, "weight")), TensorMemory(N.AttentionLayerNorm(l, "bias")),
                L.X1, L.Ln1Mean, L.Ln1Rstd, Ntok, H, Config.LayerNormEps, threads);
            // FFN: u = x1·Wiᵀ + bi (B·T,F); g = gelu(u) (bias and GELU in one pass); r2 = x1 + dropout(g·Woᵀ + bo); out = LN(r2)
            Dense(N.Intermediate(l, "weight"), N.Intermediate(l, "bias"), L.X1, L.PreGelu, Ntok, H, F, addBias: false);
            Gelu.BiasForward(L.PreGelu, TensorMemory(N.Intermediate(l, "bias")), L.PostGelu, Ntok, F, threads);
            Dense(N.Output(l, "weight"), N.Output(l, "bias"), L.PostGelu, L.Residual2, Ntok, F, H, addBias: false);
            LayerNorm.BiasResidualForward(L.Residual2, TensorMemory(N.Output(l, "bias")), DropoutMask(L.FfnDropMask, ref rng), L.X1,
                TensorMemory(N.OutputLayerNorm(l, "weight")), TensorMemory(N.OutputLayerNorm(l, "bias")),
                a.Hidden[l + 1], L.Ln2Mean, L.Ln2Rstd, Ntok, H, Config.LayerNormEps, threads);
        }

        var last = a.Hidden[Config.Layers];
        if (Config.Head == HeadKind.MaskedLm)
        {
            int M = mlmPositions!.Length, V = Config.VocabSize;
            for (int i = 0; i < M; i++)
            {
                if ((uint)mlmPositions[i] >= (uint)Ntok) throw new ArgumentException($"masked position {mlmPositions[i]} is outside the batch's {Ntok} tokens");
                last.AsSpan(mlmPositions[i] * H, H).CopyTo(a.HeadIn.AsSpan(i * H, H));
            }
            Dense(N.MlmTransformWeight, N.MlmTransformBias, a.HeadIn, a.HeadPre, M, H, H);
            Gelu.Forward(a.HeadPre.AsSpan(0, M * H), a.HeadAct);
            LayerNorm.Forward(a.HeadAct, Tensor(N.MlmLayerNormWeight), Tensor(N.MlmLayerNormBias), a.HeadOut, a.HeadLnMean, a.HeadLnRstd, M, H, Config.LayerNormEps);
            // decoder tied to the word embeddings: logits = t·Wordᵀ + bias (M,V)
            Linear.Forward(a.HeadOut, Tensor(N.WordEmbeddings), Tensor(N.MlmDecoderBias), a.Logits, M, H, V, threads);
            return a.Logits.AsSpan(0, M * V);
        }
        else
        {
            int C = Config.Labels;
            for (int b = 0; b < B; b++) last.AsSpan(b * T * H, H).CopyTo(a.HeadIn.AsSpan(b * H, H)); // first token
            Dense(N.PoolerWeight, N.PoolerBias, a.HeadIn, a.HeadPre, B, H, H);
            Gelu.Tanh(a.HeadPre.AsSpan(0, B * H), a.HeadAct);
            a.HeadAct.AsSpan(0, B * H).CopyTo(a.HeadOut);
            ApplyDropout(a.HeadOut.AsSpan(0, B * H), a.HeadDropMask, dropout, ref rng);
            Dense(N.ClassifierWeight, N.ClassifierBias, a.HeadOut, a.Logits, B, H, C);
            return a.Logits.AsSpan(0, B * C);
        }
    }

    /// <summary>
    /// Backpropagates d(loss)/d(logits) of the last <see cref="Forward"/> and accumulates parameter
    /// gradients. <paramref name="hiddenGradients"/>, when given, adds d(loss)/d(hidden state i)
    /// (i = 0..e, as in <see cref="HiddenState"/>; null entries are skipped), e.g. for hidden-state distillation.
    /// </summary>
    public void Backward(ReadOnlySpan<float> dLogits, IReadOnlyList<float[]?>? hiddenGradients = null)
    {
        var a = Activations;
        EnsureGradients();
        var input = a.Input!;
        int B = input.Batch, T = input.SequenceLength, H = Config.Hidden, F = Config.Ffn, Ntok = B * T, nh = Ntok * H;
        int threads = Threads;
        var dHidden = a.DHiddenA; var dOther = a.DHiddenB;
        EngineParallel.Clear(dHidden, nh, threads);
        var lnScratch = a.LnScratch;

        if (Config.Head == HeadKind.MaskedLm)
        {
            int M = a.MlmPositions!.Length, V = Config.VocabSize;
            CheckLength(dLogits, M * V);
            Array.Clear(a.DHead1, 0, M * H);
            Linear.Backward(a.HeadOut, Tensor(N.WordEmbeddings), dLogits, a.DHead1, Gradient(N.WordEmbeddings), Gradient(N.MlmDecoderBias), M, H, V, threads);
            Array.Clear(a.DHead2, 0, M * H);
            LayerNorm.Backward(a.HeadAct, Tensor(N.MlmLayerNormWeight), a.HeadLnMean, a.HeadLnRstd, a.DHead1, a.DHead2,
                Gradient(N.MlmLayerNormWeight), Gradient(N.MlmLayerNormBias), M, H, lnScratch);
            Array.Clear(a.DHead1, 0, M * H);
            Gelu.Backward(a.HeadPre.AsSpan(0, M * H), a.DHead2, a.DHead1);
            Array.Clear(a.DHead2, 0, M * H);
            Linear.Backward(a.HeadIn, Tensor(N.MlmTransformWeight), a.DHead1, a.DHead2, Gradient(N.MlmTransformWeight), Gradient(N.MlmTransformBias), M, H, H, threads, PackOf(N.MlmTransformWeight, H, H, forward: false));
            for (int i = 0; i < M; i++)
            {
                var dst = dHidden.AsSpan(a.MlmPositions[i] * H, H);
                TensorPrimitives.Add(dst, a.DHead2.AsSpan(i * H, H), dst);
            }
        }
        else
        {
            int C = Config.Labels;
            CheckLength(dLogits, B * C);
            Array.Clear(a.DHead1, 0, B * H);
            Linear.Backward(a.HeadOut, Tensor(N.ClassifierWeight), dLogits, a.DHead1, Gradient(N.ClassifierWeight), Gradient(N.ClassifierBias), B, H, C, threads, PackOf(N.ClassifierWeight, C, H, forward: false));
            if (a.Dropout > 0) TensorPrimitives.Multiply(a.DHead1.AsSpan(0, B * H), a.HeadDropMask.AsSpan(0, B * H), a.DHead1.AsSpan(0, B * H));
            Array.Clear(a.DHead2, 0, B * H);
            Gelu.TanhBackward(a.HeadAct.AsSpan(0, B * H), a.DHead1.AsSpan(0, B * H), a.DHead2);
            Array.Clear(a.DHead1, 0, B * H);
            Linear.Backward(a.HeadIn, Tensor(N.PoolerWeight), a.DHead2, a.DHead1, Gradient(N.PoolerWeight), Gradient(N.PoolerBias), B, H, H, threads, PackOf(N.PoolerWeight, H, H, forward: false));
            for (int b = 0; b < B; b++) a.DHead1.AsSpan(b * H, H).CopyTo(dHidden.AsSpan(b * T * H, H));
        }
        AddHiddenGradient(hiddenGradients, Config.Layers, dHidden, nh);

        // Buffers a layer writes whole (an input gradient, the attention's dQ/dK/dV) are written, not added to:
        // clearing them first would cost a pass over memory each.
        for (int l = Config.Layers - 1; l >= 0; l--)
        {
            var L = a.Layers[l];
            // out = LN(r2): dR2 (into dOther)
            LayerNorm.Backward(L.Residual2, Tensor(N.OutputLayerNorm(l, "weight")), L.Ln2Mean, L.Ln2Rstd, dHidden, dOther,
                Gradient(N.OutputLayerNorm(l, "weight")), Gradient(N.OutputLayerNorm(l, "bias")), Ntok, H, lnScratch, threads, accumulateDx: false);
            // r2 = x1 + drop(dense(g)): dX1 = dR2 (residual, into dHidden) ; dDense = dR2 ⊙ mask
            SplitResidualGradient(dOther, dHidden, a.Dropout > 0 ? L.FfnDropMask : null, nh, threads);
            Linear.Backward(L.PostGelu, Tensor(N.Output(l, "weight")), dOther, a.DFfn1, Gradient(N.Output(l, "weight")), Gradient(N.Output(l, "bias")), Ntok, F, H, threads, PackOf(N.Output(l, "weight"), H, F, forward: false), accumulateDx: false);
            Gelu.Backward(L.PreGelu, a.DFfn1, a.DFfn2, Ntok * F, threads, accumulate: false);
            Linear.Backward(L.X1, Tensor(N.Intermediate(l, "weight")), a.DFfn2, dHidden, Gradient(N.Intermediate(l, "weight")), Gradient(N.Intermediate(l, "bias")), Ntok, H, F, threads, PackOf(N.Intermediate(l, "weight"), F, H, forward: false));
            // x1 = LN(r1): dR1 (into dOther)
            LayerNorm.Backward(L.Residual1, Tensor(N.AttentionLayerNorm(l, "weight")), L.Ln1Mean, L.Ln1Rstd, dHidden, dOther,
                Gradient(N.AttentionLayerNorm(l, "weight")), Gradient(N.AttentionLayerNorm(l, "bias")), Ntok, H, lnScratch, threads, accumulateDx: false);
            // r1 = x + drop(dense(ctx)): dX = dR1 (residual path, into dHidden) ; dDense = dR1 ⊙ mask
            SplitResidualGradient(dOther, dHidden, a.Dropout > 0 ? L.AttnDropMask : null, nh, threads);
            Linear.Backward(L.Context, Tensor(N.AttentionOutput(l, "weight")), dOther, a.DContext, Gradient(N.AttentionOutput(l, "weight")), Gradient(N.AttentionOutput(l, "bias")), Ntok, H, H, threads, PackOf(N.AttentionOutput(l, "weight"), H, H, forward: false), accumulateDx: false);
            Attention.Backward(L.Q, L.K, L.V, L.Probs, a.DContext, a.DQ, a.DK, a.DV, a.AttentionScratch, B, T, H, Config.Heads, threads, accumulate: false);
            var x = a.Hidden[l];
            Linear.Backward(x, Tensor(N.Query(l, "weight")), a.DQ, dHidden, Gradient(N.Query(l, "weight")), Gradient(N.Query(l, "bias")), Ntok, H, H, threads, PackOf(N.Query(l, "weight"), H, H, forward: false));
            Linear.Backward(x, Tensor(N.Key(l, "weight")), a.DK, dHidden, Gradient(N.Key(l, "weight")), Gradient(N.Key(l, "bias")), Ntok, H, H, threads, PackOf(N.Key(l, "weight"), H, H, forward: false));
            Linear.Backward(x, Tensor(N.Value(l, "weight")), a.DV, dHidden, Gradient(N.Value(l, "weight")), Gradient(N.Value(l, "bias")), Ntok, H, H, threads, PackOf(N.Value(l, "weight"), H, H, forward: false));
            AddHiddenGradient(hiddenGradients, l, dHidden, nh);
        }

        // embeddings: hidden0 = drop(LN(e0))
        if (a.Dropout > 0) MultiplyInPlace(dHidden, a.EmbDropMask, nh, threads);
        LayerNorm.Backward(a.EmbeddingSum, Tensor(N.EmbeddingsLayerNormWeight), a.EmbLnMean, a.EmbLnRstd, dHidden, dOther,
            Gradient(N.EmbeddingsLayerNormWeight), Gradient(N.EmbeddingsLayerNormBias), Ntok, H, lnScratch, threads, accumulateDx: false);
        EmbeddingBackward(dOther, input, threads);
    }

    /// <summary>
    /// The embedding tables' gradients from d(e0): each token's row added to its word, position and type rows.
    /// The columns are split over threads (runs of 16), and every element still adds the tokens in order, so the bits
    /// do not depend on the thread count (several threads cannot split the tokens: two may share a word).
    /// </summary>
    private void EmbeddingBackward(float[] dEmbedding, EncoderInput input, int threads)
    {
        int H = Config.Hidden, T = input.SequenceLength, Ntok = input.Batch * T;
        var g = Gradients;
        int word = (int)Layout[N.WordEmbeddings].Offset, pos = (int)Layout[N.PositionEmbeddings].Offset, type = (int)Layout[N.TokenTypeEmbeddings].Offset;
        EngineParallel.SplitColumns(Ntok, H, threads, (c0, c1) =>
        {
            int width = c1 - c0;
            for (int n = 0; n < Ntok; n++)
            {
                var d = dEmbedding.AsSpan(n * H + c0, width);
                var w = g.AsSpan(word + input.InputIds[n] * H + c0, width); TensorPrimitives.Add(w, d, w);
                var p = g.AsSpan(pos + (n % T) * H + c0, width); TensorPrimitives.Add(p, d, p);
                var t = g.AsSpan(type + input.TokenTypeIds[n] * H + c0, width); TensorPrimitives.Add(t, d, t);
            }
        });
    }

    /// <summary>A residual block's gradient split in one pass: dResidual = dSum (the skip path), dSum ⊙= mask (the dropout path; no mask: no dropout).</summary>
    private static void SplitResidualGradient(float[] dSum, float[] dResidual, float[]? mask, int count, int threads) =>
        EngineParallel.Split(count, EngineParallel.MinElementsPerPart, threads, (start, end) =>
        {
            var d = dSum.AsSpan(start, end - start);
            d.CopyTo(dResidual.AsSpan(start, end - start));
            if (mask is not null) TensorPrimitives.Multiply(d, mask.AsSpan(start, end - start), d);
        });

    private static void MultiplyInPlace(float[] x, float[] mask, int count, int threads) =>
        EngineParallel.Split(count, EngineParallel.MinElementsPerPart, threads, (start, end) =>
            TensorPrimitives.Multiply(x.AsSpan(start, end - start), mask.AsSpan(start, end - start), x.AsSpan(start, end - start)));

    private static void AddHiddenGradient(IReadOnlyList<float[]?>? extra, int index, float[] dHidden, int count)
    {
        if (extra is null || index >= extra.Count || extra[index] is not { } g) return;
        if (g.Length < count) throw new ArgumentException($"hidden-state gradient {index} holds {g.Length} floats, needs {count}");
        TensorPrimitives.Add(dHidden.AsSpan(0, count), g.AsSpan(0, count), dHidden.AsSpan(0, count));
    }

    private static void CheckLength(ReadOnlySpan<float> dLogits, int expected)
    {
        if (dLogits.Length != expected) throw new ArgumentException($"logit gradient holds {dLogits.Length} values; the last forward produced {expected}");
    }

    /// <summary>Dropout in place; with rate 0 nothing (the masks are then not read: backward skips them too).</summary>
    private static void ApplyDropout(Span<float> x, float[] mask, float rate, ref SplitMix64 rng, int threads = 1)
    {
        if (rate == 0f) return;
        Dropout.Forward(x, x, mask, rate, ref rng, threads);
    }
}
