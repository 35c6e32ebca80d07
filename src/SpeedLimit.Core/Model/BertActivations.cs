namespace SpeedLimit.Model;

/// <summary>
/// Everything one forward pass keeps for its backward pass, plus backward scratch. Sized for a
/// (batch, sequence) and reused while later batches fit, so training allocates once.
/// </summary>
internal sealed class BertActivations
{
    private BertActivations(BertConfig c, int tokens, int batch, long scores, int mlmRows)
    {
        Config = c; CapacityTokens = tokens; CapacityBatch = batch; CapacityScores = scores; CapacityMlm = mlmRows;
        int H = c.Hidden, F = c.Ffn, nh = tokens * H, probs = checked((int)(scores * c.Heads));
        EmbeddingSum = new float[nh]; EmbLnMean = new float[tokens]; EmbLnRstd = new float[tokens]; EmbDropMask = new float[nh];
        Hidden = Enumerable.Range(0, c.Layers + 1).Select(_ => new float[nh]).ToArray();
        Layers = Enumerable.Range(0, c.Layers).Select(_ => new LayerActivations(tokens, H, F, probs)).ToArray();
        int headRows = c.Head == HeadKind.MaskedLm ? Math.Max(mlmRows, 1) : batch;
        int logitWidth = c.Head == HeadKind.MaskedLm ? c.VocabSize : c.Labels;
        HeadIn = new float[headRows * H]; HeadPre = new float[headRows * H]; HeadAct = new float[headRows * H]; HeadOut = new float[headRows * H];
        HeadDropMask = new float[headRows * H]; HeadLnMean = new float[headRows]; HeadLnRstd = new float[headRows];
        Logits = new float[headRows * logitWidth];
        DHiddenA = new float[nh]; DHiddenB = new float[nh]; DContext = new float[nh]; DQ = new float[nh]; DK = new float[nh]; DV = new float[nh];
        DFfn1 = new float[tokens * F]; DFfn2 = new float[tokens * F];
        DHead1 = new float[headRows * H]; DHead2 = new float[headRows * H];
        AttentionScratch = new float[probs];
        LnScratch = new float[2 * H];
    }

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
            Math.Max(scores, current.CapacityScores), Math.Max(mlmRows, current.CapacityMlm));
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

/// <summary>One encoder block's saved activations.</summary>
internal sealed class LayerActivations(int tokens, int hidden, int ffn, int probs)
{
    public readonly float[] Q = new float[tokens * hidden], K = new float[tokens * hidden], V = new float[tokens * hidden];
    public readonly float[] Probs = new float[probs];                 // (B, heads, T, T)
    public readonly float[] Context = new float[tokens * hidden];
    public readonly float[] Residual1 = new float[tokens * hidden], X1 = new float[tokens * hidden];
    public readonly float[] Ln1Mean = new float[tokens], Ln1Rstd = new float[tokens];
    public readonly float[] PreGelu = new float[tokens * ffn], PostGelu = new float[tokens * ffn];
    public readonly float[] Residual2 = new float[tokens * hidden];
    public readonly float[] Ln2Mean = new float[tokens], Ln2Rstd = new float[tokens];
    public readonly float[] AttnDropMask = new float[tokens * hidden], FfnDropMask = new float[tokens * hidden];
}
