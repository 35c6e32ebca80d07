using SpeedLimit.Model;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Pretrained;

/// <summary>How the importance of a unit (channel, head dimension, neuron) is measured.</summary>
public enum ImportanceKind
{
    /// <summary>
    /// DynaBERT's first-order estimate from the task loss: per batch, |Σ w·∂L/∂w| over the weights
    /// that belong to the unit (the loss change when the unit is removed), summed over batches.
    /// Needs labelled task batches and a trained task head.
    /// </summary>
    Gradient,
    /// <summary>
    /// NNCF BootstrapNAS's default: the L1 norm of the unit's weights. Each tensor's per-unit L1
    /// norms are normalized to sum to 1 before tensors are added, so a 30k-row embedding does not
    /// outvote a LayerNorm scale. Needs no data.
    /// </summary>
    Magnitude,
}

/// <summary>
/// The permutations that reorder a model so the leading slices <see cref="ElasticSupermodel"/>
/// takes hold the most important units. Each array is a gather: new index i takes old index
/// <c>perm[i]</c>. Per-head permutations (<see cref="QueryKey"/>, <see cref="ValueOutput"/>) have
/// length Hidden and keep every index inside its head's block of HeadSize dimensions, because a
/// sub-model keeps the first h/heads dimensions of every head.
/// </summary>
/// <param name="Residual">Residual-stream channels (Hidden): embeddings, every LayerNorm, every weight's residual side.</param>
/// <param name="Pooler">Pooler output units (Hidden), null for a masked-LM head.</param>
/// <param name="QueryKey">Per layer: the per-head dimensions Q and K share (the score q·k is unchanged).</param>
/// <param name="ValueOutput">Per layer: the per-head dimensions V and the attention output's input share.</param>
/// <param name="Ffn">Per layer: FFN neurons (intermediate rows, output columns).</param>
public sealed record ImportanceOrder(int[] Residual, int[]? Pooler, int[][] QueryKey, int[][] ValueOutput, int[][] Ffn)
{
    /// <summary>The order that changes nothing.</summary>
    public static ImportanceOrder Identity(BertConfig config)
    {
        int[] Id(int n) => Enumerable.Range(0, n).ToArray();
        return new ImportanceOrder(Id(config.Hidden), config.Head == HeadKind.MaskedLm ? null : Id(config.Hidden),
            Enumerable.Range(0, config.Layers).Select(_ => Id(config.Hidden)).ToArray(),
            Enumerable.Range(0, config.Layers).Select(_ => Id(config.Hidden)).ToArray(),
            Enumerable.Range(0, config.Layers).Select(_ => Id(config.Ffn)).ToArray());
    }

    /// <summary>Throws an <see cref="ArgumentException"/> unless every array is a permutation of the right size (per-head ones within heads).</summary>
    public void Validate(BertConfig config)
    {
        CheckPermutation(Residual, config.Hidden, "residual", null);
        if (config.Head == HeadKind.MaskedLm) { if (Pooler is not null) throw new ArgumentException("a masked-LM model has no pooler to permute"); }
        else CheckPermutation(Pooler ?? throw new ArgumentException("a classification/regression model needs a pooler permutation"), config.Hidden, "pooler", null);
        foreach (var (list, name, size, block) in new[] { (QueryKey, "query/key", config.Hidden, (int?)config.HeadSize), (ValueOutput, "value/output", config.Hidden, config.HeadSize), (Ffn, "FFN", config.Ffn, null) })
        {
            if (list.Length != config.Layers) throw new ArgumentException($"{name} permutations: {list.Length} given for {config.Layers} layers");
            for (int l = 0; l < list.Length; l++) CheckPermutation(list[l], size, $"layer {l} {name}", block);
        }
    }

    private static void CheckPermutation(int[] perm, int size, string what, int? headSize)
    {
        if (perm.Length != size) throw new ArgumentException($"{what} permutation has {perm.Length} entries; the model needs {size}");
        var seen = new bool[size];
        for (int i = 0; i < size; i++)
        {
            int p = perm[i];
            if ((uint)p >= (uint)size || seen[p]) throw new ArgumentException($"{what} permutation is not a permutation of 0..{size - 1} (entry {i} = {p})");
            if (headSize is int hs && p / hs != i / hs) throw new ArgumentException($"{what} permutation moves dimension {p} of head {p / hs} into head {i / hs}; per-head permutations must stay inside each head");
            seen[p] = true;
        }
    }
}

/// <summary>Importance per unit, in the same groups as <see cref="ImportanceOrder"/> (higher = keep first).</summary>
public sealed record ImportanceScores(ImportanceKind Kind, double[] Residual, double[]? Pooler, double[][] QueryKey, double[][] ValueOutput, double[][] Ffn);

/// <summary>
/// Importance reordering of a (pretrained or fine-tuned) BERT before supermodel training, as
/// DynaBERT and BootstrapNAS do: score every unit, then permute the weights so that the leading
/// slices a sub-model takes (<see cref="ElasticSupermodel"/>: first h residual channels, first
/// h/heads dimensions of each head, first f FFN neurons) are the most important units.
/// <para>
/// Every permutation is function-preserving for the full model: a residual channel is moved in
/// every tensor that reads or writes the residual stream (embeddings, all LayerNorms — mean and
/// variance do not depend on channel order — every weight's residual side, the pooler's input,
/// the masked-LM transform), a Q/K head dimension in Q's and K's rows together (q·k is a sum over
/// the dimension), a V dimension in V's rows and the attention output's columns, an FFN neuron
/// in the intermediate rows and the output columns, a pooler unit in the pooler rows and the
/// classifier columns. One table (<see cref="Groups"/>) lists those tensors; scoring and
/// permuting both read it.
/// </para>
/// </summary>
public static partial class ImportanceReordering
{
    /// <summary>Sorts each group's units by descending score (ties keep the lower index first); per-head groups sort inside each head.</summary>
    public static ImportanceOrder OrderFrom(ImportanceScores scores, BertConfig config)
    {
        ArgumentNullException.ThrowIfNull(scores);
        int[] Sort(double[] s, int? block)
        {
            int size = s.Length, b = block ?? size;
            var perm = new int[size];
            for (int start = 0; start < size; start += b)
            {
                var idx = Enumerable.Range(start, b).OrderByDescending(i => s[i]).ThenBy(i => i).ToArray();
                idx.CopyTo(perm, start);
            }
            return perm;
        }
        var order = new ImportanceOrder(Sort(scores.Residual, null), scores.Pooler is null ? null : Sort(scores.Pooler, null),
            scores.QueryKey.Select(s => Sort(s, config.HeadSize)).ToArray(),
            scores.ValueOutput.Select(s => Sort(s, config.HeadSize)).ToArray(),
            scores.Ffn.Select(s => Sort(s, null)).ToArray());
        order.Validate(config);
        return order;
    }

    /// <summary>Permutes <paramref name="model"/>'s weights in place (its full-model outputs stay the same up to float rounding).</summary>
    public static void Apply(BertModel model, ImportanceOrder order)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(order);
        order.Validate(model.Config);
        var scratch = new float[Math.Max(model.Config.Hidden, model.Config.Ffn)];
        foreach (var g in Groups(model.Config))
        {
            var perm = g.Select(order);
            foreach (var m in g.Members)
            {
                var t = model.Layout[m.Tensor];
                var span = model.Tensor(m.Tensor);
                if (m.Axis == Axis.Row) PermuteRows(span, t.Rows, t.Columns, perm);
                else PermuteColumns(span, t.Rows, t.Columns, perm, scratch);
            }
        }
    }

    /// <summary>Scores <paramref name="model"/> by <paramref name="kind"/>, permutes it in place, and returns the order applied.</summary>
    /// <param name="batches">Labelled task batches (required for <see cref="ImportanceKind.Gradient"/>).</param>
    public static ImportanceOrder Reorder(BertModel model, ImportanceKind kind, IEnumerable<Training.LabeledBatch>? batches = null, CancellationToken cancel = default)
    {
        var scores = kind switch
        {
            ImportanceKind.Magnitude => MagnitudeScores(model),
            ImportanceKind.Gradient => GradientScores(model, batches ?? throw new ArgumentException("gradient importance needs labelled task batches"), cancel),
            _ => throw new ArgumentException($"unknown importance kind {kind}"),
        };
        var order = OrderFrom(scores, model.Config);
        Apply(model, order);
        return order;
    }

    /// <summary>Parses "gradient" or "magnitude" (alias "l1").</summary>
    public static ImportanceKind ParseKind(string text) => text.Trim().ToLowerInvariant() switch
    {
        "gradient" or "taylor" => ImportanceKind.Gradient,
        "magnitude" or "l1" => ImportanceKind.Magnitude,
        _ => throw new ArgumentException($"importance '{text}' is not known; use gradient (DynaBERT, from the task loss) or magnitude (L1, no data)"),
    };

    internal enum Axis { Row, Column }

    /// <summary>A tensor's axis that indexes a group's units (1-D tensors: Row).</summary>
    internal readonly record struct Member(string Tensor, Axis Axis);

    internal enum GroupKind { Residual, Pooler, QueryKey, ValueOutput, Ffn }

    /// <summary>Units that move together: <see cref="Size"/> of them, every member tensor permuted along its axis.</summary>
    internal sealed record UnitGroup(GroupKind Kind, int Layer, int Size, Member[] Members)
    {
        public int[] Select(ImportanceOrder o) => Kind switch
        {
            GroupKind.Residual => o.Residual,
            GroupKind.Pooler => o.Pooler!,
            GroupKind.QueryKey => o.QueryKey[Layer],
            GroupKind.ValueOutput => o.ValueOutput[Layer],
            _ => o.Ffn[Layer],
        };
    }

    /// <summary>The one table of which tensors move with which unit.</summary>
    internal static IReadOnlyList<UnitGroup> Groups(BertConfig c)
    {
        static Member R(string t) => new(t, Axis.Row);
        static Member C(string t) => new(t, Axis.Column);
        var residual = new List<Member>
        {
            C(N.WordEmbeddings), C(N.PositionEmbeddings), C(N.TokenTypeEmbeddings),
            R(N.EmbeddingsLayerNormWeight), R(N.EmbeddingsLayerNormBias),
        };
        var groups = new List<UnitGroup>();
        for (int l = 0; l < c.Layers; l++)
        {
            residual.AddRange([
                C(N.Query(l, "weight")), C(N.Key(l, "weight")), C(N.Value(l, "weight")),
                R(N.AttentionOutput(l, "weight")), R(N.AttentionOutput(l, "bias")),
                R(N.AttentionLayerNorm(l, "weight")), R(N.AttentionLayerNorm(l, "bias")),
                C(N.Intermediate(l, "weight")),
                R(N.Output(l, "weight")), R(N.Output(l, "bias")),
                R(N.OutputLayerNorm(l, "weight")), R(N.OutputLayerNorm(l, "bias")),
            ]);
            groups.Add(new UnitGroup(GroupKind.QueryKey, l, c.Hidden,
                [R(N.Query(l, "weight")), R(N.Query(l, "bias")), R(N.Key(l, "weight")), R(N.Key(l, "bias"))]));
            groups.Add(new UnitGroup(GroupKind.ValueOutput, l, c.Hidden,
                [R(N.Value(l, "weight")), R(N.Value(l, "bias")), C(N.AttentionOutput(l, "weight"))]));
            groups.Add(new UnitGroup(GroupKind.Ffn, l, c.Ffn,
                [R(N.Intermediate(l, "weight")), R(N.Intermediate(l, "bias")), C(N.Output(l, "weight"))]));
        }
        if (c.Head == HeadKind.MaskedLm)
        {
            // The transform's output feeds the decoder tied to the word embeddings: it lives in the residual space too.
            residual.AddRange([
                C(N.MlmTransformWeight), R(N.MlmTransformWeight), R(N.MlmTransformBias),
                R(N.MlmLayerNormWeight), R(N.MlmLayerNormBias),
            ]);
        }
        else
        {
            residual.Add(C(N.PoolerWeight));
            groups.Add(new UnitGroup(GroupKind.Pooler, -1, c.Hidden, [R(N.PoolerWeight), R(N.PoolerBias), C(N.ClassifierWeight)]));
        }
        groups.Insert(0, new UnitGroup(GroupKind.Residual, -1, c.Hidden, residual.ToArray()));
        return groups;
    }

    /// <summary>Row i of the result is row perm[i] of the input: (rows, cols).</summary>
    private static void PermuteRows(Span<float> t, int rows, int cols, int[] perm)
    {
        var copy = t.ToArray();
        for (int r = 0; r < rows; r++) copy.AsSpan(perm[r] * cols, cols).CopyTo(t.Slice(r * cols, cols));
    }

    /// <summary>Column j of the result is column perm[j] of the input, in every row: (rows, cols).</summary>
    private static void PermuteColumns(Span<float> t, int rows, int cols, int[] perm, float[] scratch)
    {
        var s = scratch.AsSpan(0, cols);
        for (int r = 0; r < rows; r++)
        {
            var row = t.Slice(r * cols, cols);
            row.CopyTo(s);
            for (int j = 0; j < cols; j++) row[j] = s[perm[j]];
        }
    }
}
