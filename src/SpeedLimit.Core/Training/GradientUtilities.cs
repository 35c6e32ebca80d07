using System.Numerics.Tensors;
using SpeedLimit.Model;

namespace SpeedLimit.Training;

/// <summary>
/// Thrown instead of an optimizer step when a gradient holds NaN or ±Infinity; names the
/// tensor so the trainer can report which part of the model blew up.
/// </summary>
internal sealed class NonFiniteException(NonFiniteReport report)
    : Exception($"non-finite gradient: {report.Value} in tensor '{report.TensorName}' at element {report.ElementIndex} (flat index {report.FlatIndex}); lower the learning rate or enable gradient clipping")
{
    public NonFiniteReport Report { get; } = report;
}

/// <summary>Where the first non-finite value was found.</summary>
/// <param name="TensorName">Layout name of the tensor (or "buffer" without a layout).</param>
/// <param name="ElementIndex">Index inside that tensor.</param>
/// <param name="FlatIndex">Index in the flat buffer.</param>
internal sealed record NonFiniteReport(string TensorName, long ElementIndex, long FlatIndex, float Value);

/// <summary>Global-norm computation, clipping, finiteness checks and accumulation scaling.</summary>
internal static class GradientUtilities
{
    // Short enough that most chunks of a word-embedding table miss a batch's rows (see Inspect), long enough that
    // a chunk's call overhead stays small beside its 8 KiB of memory traffic.
    private const int ChunkLength = 2048;

    /// <summary>
    /// √(Σ g²) over the whole buffer. Partial sums are float over short chunks and double
    /// across them, so large buffers do not lose precision. NaN/Inf in the input give NaN/Inf.
    /// </summary>
    public static double GlobalL2Norm(ReadOnlySpan<float> gradients) => Math.Sqrt(SumOfSquares(gradients));

    private static double SumOfSquares(ReadOnlySpan<float> x)
    {
        double sum = 0;
        for (int start = 0; start < x.Length; start += ChunkLength)
            sum += ChunkSquares(x.Slice(start, Math.Min(ChunkLength, x.Length - start)));
        return sum;
    }

    /// <summary>
    /// Σ v² of one chunk, summed in float; a chunk whose float sum overflows is summed again in double (finite
    /// values whose squares overflow float). NaN or ±Infinity in the chunk give a non-finite result.
    /// </summary>
    private static double ChunkSquares(ReadOnlySpan<float> chunk)
    {
        float squares = TensorPrimitives.SumOfSquares(chunk);
        if (!float.IsPositiveInfinity(squares)) return squares;
        double d = 0;
        foreach (float v in chunk) d += (double)v * v;
        return d;
    }

    /// <summary>Index of the first NaN/±Infinity in <paramref name="chunk"/>, or −1.</summary>
    private static int FirstNonFinite(ReadOnlySpan<float> chunk)
    {
        for (int i = 0; i < chunk.Length; i++) if (!float.IsFinite(chunk[i])) return i;
        return -1;
    }

    /// <summary>The report for a non-finite value at flat index <paramref name="flat"/>, named by its tensor when there is a layout.</summary>
    private static NonFiniteReport Report(BertParameterLayout? layout, long flat, float value)
    {
        if (layout is null) return new NonFiniteReport("buffer", flat, flat, value);
        var t = TensorAt(layout, flat);
        return new NonFiniteReport(t.Name, flat - t.Offset, flat, value);
    }

    /// <summary>
    /// Scales the gradients so their global L2 norm is at most <paramref name="maxNorm"/>
    /// (PyTorch's <c>clip_grad_norm_</c>: factor maxNorm / (norm + 1e-6), applied only when it is
    /// below 1). Returns the norm before clipping. A non-finite norm leaves the buffer untouched
    /// and is returned as is, so check <see cref="FindNonFinite(ReadOnlySpan{float}, BertParameterLayout?)"/>.
    /// </summary>
    public static double ClipGlobalNorm(Span<float> gradients, double maxNorm)
    {
        if (!(maxNorm > 0) || double.IsInfinity(maxNorm)) throw new ArgumentException($"max gradient norm {maxNorm} must be a positive finite number");
        double norm = GlobalL2Norm(gradients);
        float factor = ClipFactor(norm, maxNorm);
        if (factor < 1) TensorPrimitives.Multiply(gradients, factor, gradients);
        return norm;
    }

    /// <summary>
    /// The first NaN/±Infinity in the buffer with the layout name of its tensor, or null when
    /// every value is finite. Cheap when all is well: one vectorised sum per chunk, a scalar
    /// scan only of a chunk whose sum is not finite.
    /// </summary>
    public static NonFiniteReport? FindNonFinite(ReadOnlySpan<float> gradients, BertParameterLayout? layout = null)
    {
        if (layout is not null && layout.TotalLength != gradients.Length)
            throw new ArgumentException($"gradient buffer has {gradients.Length} values but the layout for {layout.Config.Arch} has {layout.TotalLength}");
        for (int start = 0; start < gradients.Length; start += ChunkLength)
        {
            var chunk = gradients.Slice(start, Math.Min(ChunkLength, gradients.Length - start));
            // NaN and ±Inf always make the sum non-finite; a finite chunk whose sum overflows
            // is a false alarm that the scan below clears.
            if (float.IsFinite(TensorPrimitives.Sum(chunk))) continue;
            int i = FirstNonFinite(chunk);
            if (i >= 0) return Report(layout, start + i, chunk[i]);
        }
        return null;
    }

    /// <summary>
    /// The trainer's one pass over the gradients before a step: the first non-finite value (as
    /// <see cref="FindNonFinite(ReadOnlySpan{float}, BertParameterLayout?)"/> finds it) and, when there is none, the
    /// global L2 norm (as <see cref="GlobalL2Norm"/> computes it, to the bit). Chunks are split over
    /// <paramref name="threads"/>; their partial sums are added in chunk order afterwards, so the norm does not
    /// depend on the thread count. Chunks that <paramref name="touched"/> knows to be zero (word-embedding rows no
    /// batch looked up) are not read: their Σ g² is +0, which leaves the sum's bits as they were.
    /// </summary>
    public static (NonFiniteReport? Bad, double Norm) Inspect(ReadOnlyMemory<float> gradients, BertParameterLayout? layout, int threads,
        TouchedEmbeddingRows? touched = null)
    {
        if (layout is not null && layout.TotalLength != gradients.Length)
            throw new ArgumentException($"gradient buffer has {gradients.Length} values but the layout for {layout.Config.Arch} has {layout.TotalLength}");
        int chunks = (gradients.Length + ChunkLength - 1) / ChunkLength;
        var partial = new double[chunks];
        var firstBad = new long[chunks]; // −1: finite chunk
        // a few parts per thread, taken in turn, so a thread whose parts are mostly skipped zeros takes more of them
        int parts = Math.Clamp(Math.Min(4 * threads, chunks / 64), 1, 256); // 64 chunks (512 KiB) at least per part
        Kernels.EngineParallel.For(parts, threads, part =>
        {
            int c0 = (int)((long)chunks * part / parts), c1 = (int)((long)chunks * (part + 1) / parts);
            for (int c = c0; c < c1; c++)
            {
                int start = c * ChunkLength, length = Math.Min(ChunkLength, gradients.Length - start);
                if (touched is not null && touched.IsZero(start, length))
                {
                    partial[c] = 0;
                    firstBad[c] = -1;
                    continue;
                }
                var chunk = gradients.Span.Slice(start, length);
                partial[c] = ChunkSquares(chunk);
                // only NaN/±Inf leave the chunk's sum non-finite (ChunkSquares sums overflowing finite values in double)
                firstBad[c] = double.IsFinite(partial[c]) ? -1 : start + FirstNonFinite(chunk);
            }
        });
        double sum = 0;
        for (int c = 0; c < chunks; c++)
        {
            if (firstBad[c] >= 0) return (Report(layout, firstBad[c], gradients.Span[(int)firstBad[c]]), double.NaN);
            sum += partial[c];
        }
        return (null, Math.Sqrt(sum));
    }

    /// <summary>The scale that clips a gradient of global norm <paramref name="norm"/> to <paramref name="maxNorm"/> (as <see cref="ClipGlobalNorm"/> applies it), or 1.</summary>
    public static float ClipFactor(double norm, double maxNorm)
    {
        if (!(maxNorm > 0) || double.IsInfinity(maxNorm)) throw new ArgumentException($"max gradient norm {maxNorm} must be a positive finite number");
        if (!double.IsFinite(norm)) return 1f;
        double factor = maxNorm / (norm + 1e-6);
        return factor < 1 ? (float)factor : 1f;
    }

    /// <summary>Throws <see cref="NonFiniteException"/> naming the tensor when any gradient is NaN/±Infinity.</summary>
    public static void EnsureFinite(ReadOnlySpan<float> gradients, BertParameterLayout? layout = null)
    {
        var report = FindNonFinite(gradients, layout);
        if (report is not null) throw new NonFiniteException(report);
    }

    /// <summary>Gradient accumulation: multiplies summed micro-batch gradients by 1/n to average them.</summary>
    public static void ScaleForAccumulation(Span<float> gradients, int microBatches)
    {
        if (microBatches < 1) throw new ArgumentException($"micro-batch count {microBatches} must be at least 1");
        if (microBatches > 1) TensorPrimitives.Multiply(gradients, 1f / microBatches, gradients);
    }

    private static ParameterTensor TensorAt(BertParameterLayout layout, long flat)
    {
        var tensors = layout.Tensors;
        int lo = 0, hi = tensors.Count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (tensors[mid].Offset <= flat) lo = mid; else hi = mid - 1;
        }
        return tensors[lo];
    }
}

/// <summary>
/// Counts micro-batches of one optimizer step. Pass <see cref="LossScale"/> (1/n) as the
/// losses' gradScale so the accumulated gradient is already the average.
/// </summary>
internal sealed class GradientAccumulator
{
    public GradientAccumulator(int microBatchesPerStep)
    {
        if (microBatchesPerStep < 1) throw new ArgumentException($"accumulation steps {microBatchesPerStep} must be at least 1");
        MicroBatchesPerStep = microBatchesPerStep;
    }

    public int MicroBatchesPerStep { get; }
    public int Pending { get; private set; }
    public float LossScale => 1f / MicroBatchesPerStep;

    /// <summary>Records one finished micro-batch; true when the optimizer should step now (then the count restarts).</summary>
    public bool CompleteMicroBatch()
    {
        Pending++;
        if (Pending < MicroBatchesPerStep) return false;
        Pending = 0;
        return true;
    }
}
