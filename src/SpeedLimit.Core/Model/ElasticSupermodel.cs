using System.Collections.Concurrent;
using System.Numerics.Tensors;

namespace SpeedLimit.Model;

/// <summary>
/// A weight-sharing supermodel (E, H, F): every sub-model (e ≤ E, h ≤ H, f ≤ F) with the same
/// head count uses the first e layers and the leading slices of every tensor, W[:out, :in],
/// biases/LayerNorm/embeddings [:h] (AutoTinyBERT's extraction). Attention projections are
/// sliced per head: a sub-model head keeps the first h/heads features of the supermodel head of
/// the same index, so heads keep their identity as the width shrinks.
///
/// Sub-models run on a gathered compact copy of their slices (so the GEMMs see contiguous
/// panels and per-head slicing is a plain copy); after backward their gradients are added back
/// into the supermodel's gradient buffer at exactly the slices they came from.
/// </summary>
public sealed class ElasticSupermodel
{
    private readonly ConcurrentDictionary<Architecture, Segment[]> _segments = new();

    public ElasticSupermodel(BertModel supermodel) => Supermodel = supermodel;

    public BertModel Supermodel { get; }
    public BertConfig Config => Supermodel.Config;

    /// <summary>A standalone model of <paramref name="arch"/> with copies of the shared weights.</summary>
    public BertModel Extract(Architecture arch)
    {
        var sub = new BertModel(SubConfig(arch)) { Threads = Supermodel.Threads };
        Gather(sub);
        return sub;
    }

    /// <summary>As <see cref="Extract(Architecture)"/>, into reused storage (<see cref="BertModel(BertConfig, float[], float[])"/>): every parameter is written.</summary>
    internal BertModel Extract(Architecture arch, float[] parameterStorage, float[] gradientStorage)
    {
        var sub = new BertModel(SubConfig(arch), parameterStorage, gradientStorage) { Threads = Supermodel.Threads };
        Gather(sub);
        return sub;
    }

    /// <summary>Copies the supermodel's current slices into <paramref name="sub"/> (reuse one model per architecture).</summary>
    public void Gather(BertModel sub)
    {
        var src = Supermodel.Parameters;
        var dst = sub.Parameters;
        foreach (var s in SegmentsFor(sub.Config.Arch))
            Array.Copy(src, s.SuperOffset, dst, s.SubOffset, s.Length);
    }

    /// <summary>Adds <paramref name="sub"/>'s gradients into the supermodel's gradient buffer at the shared slices.</summary>
    public void AccumulateGradients(BertModel sub)
    {
        var dst = Supermodel.EnsureGradients();
        var src = sub.Gradients;
        if (src.Length != sub.Parameters.Length) throw new InvalidOperationException("the sub-model has no gradients; run Backward first");
        foreach (var s in SegmentsFor(sub.Config.Arch))
        {
            var d = dst.AsSpan((int)s.SuperOffset, s.Length);
            TensorPrimitives.Add(d, src.AsSpan((int)s.SubOffset, s.Length), d);
        }
    }

    public BertConfig SubConfig(Architecture arch)
    {
        if (!arch.FitsIn(Config.Arch))
            throw new ArgumentException($"sub-model {arch} does not fit in the supermodel {Config.Arch}; every dimension must be at most the supermodel's");
        return Config.WithArch(arch); // validates the head size
    }

    /// <summary>Contiguous runs (sub offset, super offset, length) that together map every sub-model parameter to its source.</summary>
    internal Segment[] SegmentsFor(Architecture arch) => _segments.GetOrAdd(arch, a => BuildSegments(new BertParameterLayout(SubConfig(a)), Supermodel.Layout));

    internal readonly record struct Segment(long SubOffset, long SuperOffset, int Length);

    private enum Axis { Whole, Leading, PerHead }

    private static Segment[] BuildSegments(BertParameterLayout sub, BertParameterLayout super)
    {
        int hsSub = sub.Config.HeadSize, hsSuper = super.Config.HeadSize;
        var segments = new List<Segment>();
        foreach (var t in sub.Tensors)
        {
            var st = super[t.Name];
            var (rowAxis, colAxis) = AxesOf(t.Name);
            int rows = t.Rows, cols = t.Columns, superCols = st.Columns;
            for (int r = 0; r < rows; r++)
            {
                int superRow = MapIndex(rowAxis, r, hsSub, hsSuper);
                long subRowStart = t.Offset + (long)r * cols, superRowStart = st.Offset + (long)superRow * superCols;
                if (t.Shape.Length == 1)
                {
                    // 1-D tensors are treated as rows of one element; merged below.
                    segments.Add(new Segment(t.Offset + r, st.Offset + superRow, 1));
                }
                else if (colAxis == Axis.PerHead)
                {
                    for (int c = 0; c < cols; c += hsSub)
                        segments.Add(new Segment(subRowStart + c, superRowStart + MapIndex(Axis.PerHead, c, hsSub, hsSuper), hsSub));
                }
                else
                {
                    segments.Add(new Segment(subRowStart, superRowStart, cols));
                }
            }
        }
        return Merge(segments);
    }

    /// <summary>Joins runs that are adjacent in both buffers, so copies are few and long.</summary>
    private static Segment[] Merge(List<Segment> segments)
    {
        var merged = new List<Segment>(segments.Count);
        foreach (var s in segments)
        {
            if (merged.Count > 0)
            {
                var last = merged[^1];
                if (last.SubOffset + last.Length == s.SubOffset && last.SuperOffset + last.Length == s.SuperOffset)
                {
                    merged[^1] = last with { Length = last.Length + s.Length };
                    continue;
                }
            }
            merged.Add(s);
        }
        return merged.ToArray();
    }

    private static int MapIndex(Axis axis, int index, int hsSub, int hsSuper) =>
        axis == Axis.PerHead ? index / hsSub * hsSuper + index % hsSub : index;

    /// <summary>How each axis of a tensor is sliced, from its Hugging Face name.</summary>
    private static (Axis Row, Axis Col) AxesOf(string name)
    {
        bool qkv = name.Contains(".attention.self.", StringComparison.Ordinal);
        bool attnOut = name.Contains(".attention.output.dense.", StringComparison.Ordinal);
        if (qkv) return (Axis.PerHead, Axis.Leading);            // (h, h) rows per head; bias (h) per head
        if (attnOut && name.EndsWith(".weight", StringComparison.Ordinal)) return (Axis.Leading, Axis.PerHead); // consumes the per-head context
        // Vocabulary/position/type rows and the classifier's label rows are kept whole; their
        // hidden columns take the leading slice, as do all remaining rows and 1-D tensors.
        return (Axis.Leading, Axis.Leading);
    }
}
