using System.Numerics.Tensors;
using SpeedLimit.Model;
using SpeedLimit.Training;

namespace SpeedLimit.Pretrained;

public static partial class ImportanceReordering
{
    /// <summary>L1 importance (BootstrapNAS): per unit, Σ|w| of each member tensor, each tensor's vector normalized to sum 1, added over tensors.</summary>
    public static ImportanceScores MagnitudeScores(BertModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var groups = Groups(model.Config);
        var scores = groups.Select(g => new double[g.Size]).ToArray();
        for (int gi = 0; gi < groups.Count; gi++)
        {
            var g = groups[gi];
            var part = new double[g.Size];
            foreach (var m in g.Members)
            {
                Array.Clear(part);
                var t = model.Layout[m.Tensor];
                SumPerUnit(model.Tensor(m.Tensor), default, t.Rows, t.Columns, m.Axis, part);
                double total = part.Sum();
                if (total > 0) for (int u = 0; u < g.Size; u++) scores[gi][u] += part[u] / total;
            }
        }
        return Pack(ImportanceKind.Magnitude, groups, scores);
    }

    /// <summary>
    /// Gradient importance (DynaBERT): for each batch, the task loss's gradients (no dropout), then per
    /// unit |Σ w·g| over all its member tensors' entries — the first-order loss change when the unit
    /// is zeroed — summed over batches. The model's gradient buffer is used and left zeroed.
    /// </summary>
    public static ImportanceScores GradientScores(BertModel model, IEnumerable<LabeledBatch> batches, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batches);
        var config = model.Config;
        if (config.Head == HeadKind.MaskedLm)
            throw new ArgumentException("gradient importance needs a task head (classification or regression); use magnitude importance for a masked-LM model");
        var groups = Groups(config);
        var scores = groups.Select(g => new double[g.Size]).ToArray();
        var signed = groups.Select(g => new double[g.Size]).ToArray();
        var dLogits = new LogitGradientBuffer();
        int seen = 0;
        foreach (var batch in batches)
        {
            cancel.ThrowIfCancellationRequested();
            batch.Validate(config);
            model.ZeroGradients();
            var logits = model.Forward(batch.Input);
            var d = dLogits.Cleared(logits.Length);
            LogitLoss.Accumulate(config.Head, config.Labels, logits, batch.Labels, batch.Targets, null, 0f, 1f, d, 1f);
            model.Backward(d);
            for (int gi = 0; gi < groups.Count; gi++)
            {
                var g = groups[gi];
                Array.Clear(signed[gi]);
                foreach (var m in g.Members)
                {
                    var t = model.Layout[m.Tensor];
                    SumPerUnit(model.Tensor(m.Tensor), model.Gradient(m.Tensor), t.Rows, t.Columns, m.Axis, signed[gi]);
                }
                for (int u = 0; u < g.Size; u++) scores[gi][u] += Math.Abs(signed[gi][u]);
            }
            seen++;
        }
        model.ZeroGradients();
        if (seen == 0) throw new ArgumentException("gradient importance got no batches; give it some task training data");
        return Pack(ImportanceKind.Gradient, groups, scores);
    }

    /// <summary>
    /// Adds, per unit of <paramref name="axis"/>, Σ w·g over the unit's entries (or Σ|w| when
    /// <paramref name="g"/> is empty) into <paramref name="into"/>. Tensor (rows, cols) row-major.
    /// </summary>
    private static void SumPerUnit(ReadOnlySpan<float> w, ReadOnlySpan<float> g, int rows, int cols, Axis axis, double[] into)
    {
        bool products = !g.IsEmpty;
        if (axis == Axis.Row)
        {
            for (int r = 0; r < rows; r++)
            {
                var wr = w.Slice(r * cols, cols);
                into[r] += products ? TensorPrimitives.Dot(wr, g.Slice(r * cols, cols)) : TensorPrimitives.SumOfMagnitudes(wr);
            }
            return;
        }
        // Column units: accumulate rows elementwise in float blocks of 256 rows, then into double.
        var acc = new float[cols];
        var tmp = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            var wr = w.Slice(r * cols, cols);
            if (products) TensorPrimitives.MultiplyAdd(wr, g.Slice(r * cols, cols), acc, acc);
            else { TensorPrimitives.Abs(wr, tmp); TensorPrimitives.Add(acc, tmp, acc); }
            if ((r & 255) == 255 || r == rows - 1)
            {
                for (int c = 0; c < cols; c++) into[c] += acc[c];
                Array.Clear(acc);
            }
        }
    }

    private static ImportanceScores Pack(ImportanceKind kind, IReadOnlyList<UnitGroup> groups, double[][] scores)
    {
        double[]? Find(GroupKind k) => groups.Select((g, i) => (g, i)).Where(x => x.g.Kind == k).Select(x => scores[x.i]).FirstOrDefault();
        double[][] PerLayer(GroupKind k) => groups.Select((g, i) => (g, i)).Where(x => x.g.Kind == k).OrderBy(x => x.g.Layer).Select(x => scores[x.i]).ToArray();
        return new ImportanceScores(kind, Find(GroupKind.Residual)!, Find(GroupKind.Pooler),
            PerLayer(GroupKind.QueryKey), PerLayer(GroupKind.ValueOutput), PerLayer(GroupKind.Ffn));
    }
}
