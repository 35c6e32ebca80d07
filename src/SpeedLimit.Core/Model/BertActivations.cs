namespace SpeedLimit.Model;

/// <summary>
/// Everything one forward pass keeps for its backward pass, plus backward scratch. Sized for a
/// (batch, sequence) and reused while later batches fit, so training allocates once.
/// </summary>
internal sealed class BertActivations
{
    /// <param name="reuse">A workspace this one replaces: each of its buffers that is long enough is kept (contents and all;
    /// every pass writes a buffer before it reads it), so growing one dimension reallocates only what that dimension sizes.</param>
    private BertActivations(BertConfig c, int tokens, int batch, long scores, int mlmRows, BertActivations? reuse = null)
    {
        Config = c; CapacityTokens = tokens; CapacityBatch = batch; CapacityScores = scores; CapacityMlm = mlmRows;
        int H = c.Hidden, F = c.Ffn, nh = tokens * H, probs = checked((int)(scores * c.Heads));
        var r = reuse;
        EmbeddingSum = Take(r?.EmbeddingSum, nh); EmbLnMean = Take(r?.EmbLnMean, tokens); EmbLnRstd = Take(r?.EmbLnRstd, tokens); EmbDropMask = Take(r?.EmbDropMask, nh);
        Hidden = Enumerable.Range(0, c.Layers + 1).Select(i => Take(r is not null && i < r.Hidden.Length ? r.Hidden[i] : null, nh)).ToArray();
        Layers = Enumerable.Range(0, c.Layers).Select(i => new LayerActivations(tokens, H, F, probs, r is not null && i < r.Layers.Length ? r.Layers[i] : null)).ToArray();
        int headRows = c.Head == HeadKind.MaskedLm ? Math.Max(mlmRows, 1) : batch;
        int logitWidth = c.Head == HeadKind.MaskedLm ? c.VocabSize : c.Labels;
        HeadIn = Take(r?.HeadIn, headRows * H); HeadPre = Take(r?.HeadPre, headRows * H); HeadAct = Take(r?.HeadAct, headRows * H); HeadOut = Take(r?.HeadOut, headRows * H);
        HeadDropMask = Take(r?.HeadDropMask, headRows * H); HeadLnMean = Take(r?.HeadLnMean, headRows); HeadLnRstd = Take(r?.HeadLnRstd, headRows);
        Logits = Take(r?.Logits, headRows * logitWidth);
        DHiddenA = Take(r?.DHiddenA, nh); DHiddenB = Take(r?.DHiddenB, nh); DContext = Take(r?.DContext, nh);
        DQ = Take(r?.DQ, nh); DK = Take(r?.DK, nh); DV = Take(r?.DV, nh);
        DFfn1 = Take(r?.DFfn1, tokens * F); DFfn2 = Take(r?.DFfn2, tokens * F);
        DHead1 = Take(r?.DHead1, headRows * H); DHead2 = Take(r?.DHead2, headRows * H);
        AttentionScratch = Take(r?.AttentionScratch, probs);
        LnScratch = Take(r?.LnScratch, 2 * H);
    }

    /// <summary><paramref name="old"/> when it holds <paramref name="length"/> floats, else a new buffer.</summary>
    internal static float[] Take(float[]? old, long length) => old is not null && old.Length >= length ? old : new float[length];

    /// <summary>
    /// Returns <paramref name="current"/> when it can hold this pass (a supermodel's workspace
    /// holds any of its sub-models': every buffer is used as a prefix), else a new one.
    /// </summary>
    public static BertActivations Ensure(BertActivations? current, BertConfig config, int batch, int seqLen, int mlmRows)
    {
        if (current is not null && current.Fits(config, batch, seqLen, mlmRows)) return current;
        // A new workspace holds this pass and everything the old one held: models of several shapes and batches of
        // several lengths that take turns with it (a search's candidates, training and dev batches) stop reallocating
        // after the first few passes instead of trading one size for another.
        long scores = (long)batch * seqLen * seqLen;
        if (current is null || current.Config.Head != config.Head || current.Config.Heads != config.Heads)
            return new BertActivations(config, batch * seqLen, batch, scores, mlmRows);
        var k = current.Config;
        var holdsBoth = config.WithArch(new Architecture(Math.Max(config.Layers, k.Layers), Math.Max(config.Hidden, k.Hidden), Math.Max(config.Ffn, k.Ffn)))
            with { VocabSize = Math.Max(config.VocabSize, k.VocabSize), Labels = Math.Max(config.Labels, k.Labels) };
        return new BertActivations(holdsBoth, Math.Max(batch * seqLen, current.CapacityTokens), Math.Max(batch, current.CapacityBatch),
            Math.Max(scores, current.CapacityScores), Math.Max(mlmRows, current.CapacityMlm), reuse: current);
    }

    public bool Fits(BertConfig c, int batch, int seqLen, int mlmRows)
    {
        var k = Config;
        return c.Head == k.Head && c.Heads == k.Heads && c.Layers <= k.Layers && c.Hidden <= k.Hidden && c.Ffn <= k.Ffn
            && c.VocabSize <= k.VocabSize && c.Labels <= k.Labels
            && batch <= CapacityBatch && (long)batch * seqLen <= CapacityTokens
            && (long)batch * seqLen * seqLen <= CapacityScores
            && mlmRows <= CapacityMlm;
    }

    public BertConfig Config { get; }
    public int CapacityTokens { get; }
    public int CapacityBatch { get; }
    /// <summary>Attention scores per head it holds: the largest batch·T² of the passes it was sized for.</summary>
    public long CapacityScores { get; }
    public int CapacityMlm { get; }

    public EncoderInput? Input { get; set; }
    public float Dropout { get; set; }
    public int[]? MlmPositions { get; set; }
    public int Tokens => Input!.Tokens;

    public float[] EmbeddingSum, EmbLnMean, EmbLnRstd, EmbDropMask;
    public float[][] Hidden;            // e+1 × (B·T, H)
    public LayerActivations[] Layers;
    public float[] HeadIn, HeadPre, HeadAct, HeadOut, HeadDropMask, HeadLnMean, HeadLnRstd, Logits;
    public float[] DHiddenA, DHiddenB, DContext, DQ, DK, DV, DFfn1, DFfn2, DHead1, DHead2, AttentionScratch, LnScratch;
}

/// <summary>One encoder block's saved activations (<paramref name="reuse"/>'s buffers kept where long enough).</summary>
internal sealed class LayerActivations(int tokens, int hidden, int ffn, int probs, LayerActivations? reuse = null)
{
    public readonly float[] Q = BertActivations.Take(reuse?.Q, tokens * hidden), K = BertActivations.Take(reuse?.K, tokens * hidden), V = BertActivations.Take(reuse?.V, tokens * hidden);
    public readonly float[] Probs = BertActivations.Take(reuse?.Probs, probs);                 // (B, heads, T, T)
    public readonly float[] Context = BertActivations.Take(reuse?.Context, tokens * hidden);
    public readonly float[] Residual1 = BertActivations.Take(reuse?.Residual1, tokens * hidden), X1 = BertActivations.Take(reuse?.X1, tokens * hidden);
    public readonly float[] Ln1Mean = BertActivations.Take(reuse?.Ln1Mean, tokens), Ln1Rstd = BertActivations.Take(reuse?.Ln1Rstd, tokens);
    public readonly float[] PreGelu = BertActivations.Take(reuse?.PreGelu, tokens * ffn), PostGelu = BertActivations.Take(reuse?.PostGelu, tokens * ffn);
    public readonly float[] Residual2 = BertActivations.Take(reuse?.Residual2, tokens * hidden);
    public readonly float[] Ln2Mean = BertActivations.Take(reuse?.Ln2Mean, tokens), Ln2Rstd = BertActivations.Take(reuse?.Ln2Rstd, tokens);
    public readonly float[] AttnDropMask = BertActivations.Take(reuse?.AttnDropMask, tokens * hidden), FfnDropMask = BertActivations.Take(reuse?.FfnDropMask, tokens * hidden);
}
