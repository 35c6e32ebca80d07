using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using SpeedLimit.Model;

namespace SpeedLimit.Training;

/// <summary>A run of the flat parameter buffer, in floats.</summary>
public readonly record struct ParameterRange(long Offset, long Length);

/// <summary>
/// AdamW (Loshchilov &amp; Hutter) over one flat parameter span and its gradient span, as
/// PyTorch's <c>torch.optim.AdamW</c> computes it: decoupled decay p ← p·(1 − lr·wd) first,
/// then p ← p − lr · m̂ / (√v̂ + ε) with bias-corrected moments. Weight decay applies only inside
/// the decayed ranges (for BERT: 2-D weights, not biases or LayerNorm; see
/// <see cref="ParameterTensor.IsDecayed"/>). The state (m, v, step) can be exported and restored
/// for resumable training.
/// </summary>
public sealed class AdamW
{
    private readonly float[] _m;
    private readonly float[] _v;
    // alternating segments of the buffer: (start, length, decayed)
    private readonly (int Start, int Length, bool Decayed)[] _segments;

    public AdamW(long parameterCount, IEnumerable<ParameterRange> decayedRanges, TrainingOptions options)
        : this(parameterCount, decayedRanges, options, null) { }

    /// <param name="momentStorage">Buffers for m and v that may be longer than the parameter count (reused from an
    /// earlier optimizer, so its pages are not touched afresh); the first <paramref name="parameterCount"/> of each are
    /// cleared. Null: new buffers.</param>
    internal AdamW(long parameterCount, IEnumerable<ParameterRange> decayedRanges, TrainingOptions options,
        (float[] First, float[] Second)? momentStorage)
    {
        ArgumentNullException.ThrowIfNull(decayedRanges);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (parameterCount < 0 || parameterCount > Array.MaxLength)
            throw new ArgumentException($"parameter count {parameterCount} must be in [0, {Array.MaxLength}]");
        ParameterCount = (int)parameterCount;
        Beta1 = options.Beta1;
        Beta2 = options.Beta2;
        Epsilon = options.Epsilon;
        WeightDecay = options.WeightDecay;
        if (momentStorage is { } storage)
        {
            if (storage.First.Length < ParameterCount || storage.Second.Length < ParameterCount || storage.First == storage.Second)
                throw new ArgumentException($"moment storage of {storage.First.Length}/{storage.Second.Length} floats cannot hold two sets of {ParameterCount} moments");
            _m = storage.First;
            _v = storage.Second;
            Kernels.EngineParallel.Clear(_m, ParameterCount, options.Threads);
            Kernels.EngineParallel.Clear(_v, ParameterCount, options.Threads);
        }
        else
        {
            _m = new float[ParameterCount];
            _v = new float[ParameterCount];
        }
        _segments = BuildSegments(ParameterCount, decayedRanges);
        _live = new bool[(ParameterCount + BlockLength - 1) / BlockLength];
    }

    /// <summary>An optimizer for a BERT layout: decay exactly where <see cref="ParameterTensor.IsDecayed"/>.</summary>
    public static AdamW ForLayout(BertParameterLayout layout, TrainingOptions options) => ForLayout(layout, options, null);

    internal static AdamW ForLayout(BertParameterLayout layout, TrainingOptions options, (float[] First, float[] Second)? momentStorage)
    {
        ArgumentNullException.ThrowIfNull(layout);
        return new AdamW(layout.TotalLength,
            layout.Tensors.Where(t => t.IsDecayed).Select(t => new ParameterRange(t.Offset, t.Length)), options, momentStorage);
    }

    public int ParameterCount { get; }
    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Epsilon { get; }
    public float WeightDecay { get; }
    /// <summary>Optimizer steps taken so far (the t of the bias correction).</summary>
    public long StepCount { get; private set; }
    /// <summary>First moment m (exp_avg in PyTorch), one per parameter.</summary>
    public ReadOnlySpan<float> FirstMoment => _m.AsSpan(0, ParameterCount);
    /// <summary>Second moment v (exp_avg_sq in PyTorch), one per parameter.</summary>
    public ReadOnlySpan<float> SecondMoment => _v.AsSpan(0, ParameterCount);

    /// <summary>Uses the plain scalar loop (the test twin) instead of the vector one.</summary>
    internal bool ForceScalar { get; set; }

    /// <summary>Restores m, v and the step count saved from an optimizer over the same buffer.</summary>
    public void Restore(ReadOnlySpan<float> firstMoment, ReadOnlySpan<float> secondMoment, long stepCount)
    {
        if (firstMoment.Length != ParameterCount || secondMoment.Length != ParameterCount)
            throw new ArgumentException($"optimizer state has {firstMoment.Length}/{secondMoment.Length} moments but the model has {ParameterCount} parameters; the checkpoint belongs to another architecture");
        if (stepCount < 0) throw new ArgumentException($"optimizer step count {stepCount} must be ≥ 0");
        firstMoment.CopyTo(_m);
        secondMoment.CopyTo(_v);
        StepCount = stepCount;
        _settledSteps?.AsSpan().Fill(stepCount); // restored parameters come settled
        for (int b = 0; b < _live.Length; b++)
        {
            int at = b * BlockLength, length = Math.Min(BlockLength, ParameterCount - at);
            _live[b] = _m.AsSpan(at, length).IndexOfAnyExcept(0f) >= 0 || _v.AsSpan(at, length).IndexOfAnyExcept(0f) >= 0;
        }
    }

    /// <summary>One update of every parameter with learning rate <paramref name="learningRate"/>.</summary>
    public void Step(Span<float> parameters, ReadOnlySpan<float> gradients, float learningRate)
    {
        CheckStep(parameters.Length, gradients.Length, learningRate);
        StepCount++;
        var k = new Coefficients(this, learningRate, StepCount);
        if (_settledSteps is not null) LogStep(k);
        // never written: clearing is off on this path
        var g = MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(gradients), gradients.Length);
        foreach (var (start, length, decayed) in _segments)
            Update(parameters.Slice(start, length), g.Slice(start, length), start, k, decayed ? k.DecayFactor : 1f, 1f, false, null, false);
    }

    /// <summary>
    /// One update of every parameter, as the trainer runs it: the gradients are read scaled by
    /// <paramref name="gradientScale"/> (a clipping factor, the same rounding as scaling the buffer first) and,
    /// with <paramref name="clearGradients"/>, zeroed in the same pass, so the buffer is streamed once instead of
    /// three times. The buffer is split over <paramref name="threads"/>; every element is computed by the same
    /// operations whatever the split, so results are bit-identical across thread counts.
    /// </summary>
    /// <remarks>
    /// Word-embedding rows that <paramref name="touched"/> knows to be zero are not read: a dormant block among them
    /// takes the decay alone.
    /// </remarks>
    public void Step(Memory<float> parameters, Memory<float> gradients, float learningRate, float gradientScale, bool clearGradients, int threads,
        TouchedEmbeddingRows? touched = null)
    {
        CheckStep(parameters.Length, gradients.Length, learningRate);
        if (!(gradientScale >= 0) || !float.IsFinite(gradientScale)) throw new ArgumentException($"gradient scale {gradientScale} must be a finite number ≥ 0");
        StepCount++;
        var k = new Coefficients(this, learningRate, StepCount);
        bool defer = _settledSteps is not null && touched is not null && touched.Table == _deferredTable;
        if (_settledSteps is not null) LogStep(k);
        if (defer)
        {
            HasDeferredUpdates = true;
            ListTouchedBlocks(touched!);
        }
        var pieces = Pieces(threads);
        Kernels.EngineParallel.For(pieces.Length, threads, i =>
        {
            var (start, length, decayed) = pieces[i];
            Update(parameters.Span.Slice(start, length), gradients.Span.Slice(start, length), start, k, decayed ? k.DecayFactor : 1f, gradientScale,
                clearGradients, touched, defer && decayed);
        });
    }

    private void CheckStep(int parameters, int gradients, float learningRate)
    {
        if (parameters != ParameterCount) throw new ArgumentException($"parameter span has {parameters} values, optimizer was built for {ParameterCount}");
        if (gradients != ParameterCount) throw new ArgumentException($"gradient span has {gradients} values, optimizer was built for {ParameterCount}");
        if (!(learningRate >= 0) || !float.IsFinite(learningRate)) throw new ArgumentException($"learning rate {learningRate} must be a finite number ≥ 0");
    }

    /// <summary>
    /// Updates p[start..] block by block. A dormant block (moments still exactly zero) whose gradient is zero this step
    /// gets p·decay alone, which is what the full update computes there (m̂ = v̂ = 0, so the step is 0/(√0 + ε) = 0):
    /// the same bits for a third of the memory traffic, and its moments' pages are never touched. Fine-tuning a small
    /// model leaves most of a 30k-word embedding table dormant: a batch uses a few hundred words.
    /// </summary>
    private void Update(Span<float> p, Span<float> g, int start, in Coefficients k, float decay, float scale, bool clear,
        TouchedEmbeddingRows? touched, bool defer)
    {
        int end = start + p.Length;
        for (int at = start; at < end;)
        {
            int block = at / BlockLength, next = Math.Min(end, (block + 1) * BlockLength), length = next - at;
            var pb = p.Slice(at - start, length);
            var gb = g.Slice(at - start, length);
            // A block of the deferred table (whole, so no other piece shares it) whose rows no batch of this step touched
            // waits, in a deferring step; otherwise it first catches up on the steps it missed.
            bool tracked = length == BlockLength && IsDeferred(block);
            if (tracked)
            {
                if (defer)
                {
                    // Untouched: skip to the next touched block (or the end of the range or of the table's whole blocks).
                    int i = Array.BinarySearch(_touchedBlocks, 0, _touchedBlockCount, block);
                    if (i < 0)
                    {
                        int following = ~i < _touchedBlockCount ? _touchedBlocks[~i] : int.MaxValue;
                        at = (int)Math.Min(end, (long)Math.Min(following, _deferredBlocksEnd) * BlockLength);
                        continue;
                    }
                }
                Settle(pb, block, StepCount - 1);
                _settledSteps![block] = StepCount; // this step's update follows
            }
            if (!_live[block] && (touched?.IsZero(at, length) == true
                                  || MemoryMarshal.Cast<float, uint>(gb).IndexOfAnyExcept(0u, 0x8000_0000u) < 0)) // ±0 only
            {
                if (decay != 1f) TensorPrimitives.Multiply(pb, decay, pb);
            }
            else
            {
                _live[block] = true; // a race between pieces sharing a block only ever writes true
                var m = _m.AsSpan(at, length);
                var v = _v.AsSpan(at, length);
                if (ForceScalar) UpdateScalar(pb, gb, m, v, k, decay, scale, clear);
                else UpdateVector(pb, gb, m, v, k, decay, scale, clear);
            }
            at = next;
        }
    }

    // Deferred rows (DeferUntouchedRows): in a step whose batches touched none of its rows, a block wholly inside the
    // deferred table (the word embeddings) is not updated. The step's coefficients are logged, and the block catches up
    // on the steps it missed, in order and by the same arithmetic as then (a dormant block: the decay factor alone; a
    // live one: the full update with a zero gradient), when a forward pass is about to read it (SettleRows), when a
    // batch touches it (Update) or when the training hands its weights on (SettleAll). So the same bits, while a row
    // nobody uses is streamed from memory once per fine-tuning instead of once per step.
    private ParameterRange _deferredTable;
    private int _deferredBlocksStart, _deferredBlocksEnd; // the table's whole blocks, [start, end)
    private Coefficients[] _stepLog = [];
    private int _logged;
    private long[]? _settledSteps; // per block: how many steps the block has had
    private static readonly float[] ZeroGradient = new float[BlockLength];

    /// <summary>
    /// Defers the updates of untouched rows of <paramref name="table"/> (see the field comments above). Whoever reads the
    /// parameters or moments must settle them first: <see cref="SettleRows"/> before a forward pass, <see cref="SettleAll"/>
    /// before anything else. Only the trainer's <see cref="Step(Memory{float}, Memory{float}, float, float, bool, int, TouchedEmbeddingRows?)"/>
    /// with its touched rows defers; the table must lie inside one decayed range (as the word embeddings do).
    /// </summary>
    /// <returns>False, deferring nothing, where the table's range does not start on a block boundary: its pieces
    /// (<see cref="Pieces"/>) could then split a block, which the deferral needs whole.</returns>
    public bool DeferUntouchedRows(ParameterRange table)
    {
        var segment = _segments.FirstOrDefault(x => x.Start <= table.Offset && table.Offset + table.Length <= x.Start + x.Length);
        if (table.Offset < 0 || table.Length <= 0 || table.Offset + table.Length > ParameterCount || segment.Length == 0 || !segment.Decayed)
            throw new ArgumentException($"deferred rows need a table inside one decayed range; [{table.Offset}, {table.Offset + table.Length}) is not");
        if (segment.Start % BlockLength != 0) return false;
        _deferredTable = table;
        _deferredBlocksStart = (int)((table.Offset + BlockLength - 1) / BlockLength);
        _deferredBlocksEnd = (int)((table.Offset + table.Length) / BlockLength);
        _settledSteps = new long[_live.Length];
        _settledSteps.AsSpan().Fill(StepCount);
        _stepLog = new Coefficients[(int)Math.Min(int.MaxValue / 2, StepCount + 64)];
        _logged = (int)StepCount; // the steps before this one were applied as they came; their slots are never read
        return true;
    }

    /// <summary>Whether some block may still wait for steps it missed (<see cref="SettleAll"/> clears it).</summary>
    public bool HasDeferredUpdates { get; private set; }

    /// <summary>Brings the blocks that hold rows <paramref name="rows"/> of the deferred table (each <paramref name="rowLength"/> floats) up to date.</summary>
    public void SettleRows(float[] parameters, ReadOnlySpan<int> rows, int rowLength)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (_settledSteps is null || !HasDeferredUpdates) return;
        long tableRows = _deferredTable.Length / rowLength;
        foreach (int row in rows)
        {
            if ((uint)row >= (ulong)tableRows) continue; // the forward pass rejects it
            var (first, last) = BlocksOfRow(_deferredTable, row, rowLength);
            for (int b = first; b <= last; b++)
                if (IsDeferred(b)) Settle(parameters.AsSpan(b * BlockLength, BlockLength), b, StepCount);
        }
    }

    /// <summary>Brings every deferred block up to date: parameters and moments are then what updating every row at every step leaves.</summary>
    public void SettleAll(float[] parameters, int threads)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (_settledSteps is null || !HasDeferredUpdates) return;
        int first = _deferredBlocksStart;
        Kernels.EngineParallel.SplitRows(_deferredBlocksEnd - first, BlockLength, threads, (b0, b1) =>
        {
            for (int b = first + b0; b < first + b1; b++) Settle(parameters.AsSpan(b * BlockLength, BlockLength), b, StepCount);
        });
        HasDeferredUpdates = false;
    }

    // The blocks of the deferred table that hold a row the step's batches touched, ascending (the first _touchedBlockCount).
    private int[] _touchedBlocks = [];
    private int _touchedBlockCount;

    private void ListTouchedBlocks(TouchedEmbeddingRows touched)
    {
        var rows = touched.Marked;
        int most = rows.Count * (touched.RowLength / BlockLength + 2);
        if (_touchedBlocks.Length < most) _touchedBlocks = new int[Math.Max(most, 2 * _touchedBlocks.Length)];
        int n = 0;
        foreach (int row in rows)
        {
            var (first, last) = BlocksOfRow(touched.Table, row, touched.RowLength);
            for (int b = first; b <= last; b++) _touchedBlocks[n++] = b;
        }
        Array.Sort(_touchedBlocks, 0, n);
        int distinct = 0;
        for (int i = 0; i < n; i++)
            if (distinct == 0 || _touchedBlocks[i] != _touchedBlocks[distinct - 1]) _touchedBlocks[distinct++] = _touchedBlocks[i];
        _touchedBlockCount = distinct;
    }

    private bool IsDeferred(int block) => _settledSteps is not null && block >= _deferredBlocksStart && block < _deferredBlocksEnd;

    /// <summary>The first and last block (inclusive) that hold row <paramref name="row"/> of <paramref name="table"/>.</summary>
    private static (int First, int Last) BlocksOfRow(ParameterRange table, int row, int rowLength)
    {
        long start = table.Offset + (long)row * rowLength;
        return ((int)(start / BlockLength), (int)((start + rowLength - 1) / BlockLength));
    }

    private void LogStep(in Coefficients k)
    {
        if (_logged == _stepLog.Length) Array.Resize(ref _stepLog, 2 * _stepLog.Length);
        _stepLog[_logged++] = k;
    }

    /// <summary>Gives block <paramref name="block"/> steps settled+1 … <paramref name="upTo"/>, in order, as each step would have (nothing when it is up to date).</summary>
    private void Settle(Span<float> pb, int block, long upTo)
    {
        long from = _settledSteps![block];
        if (from >= upTo) return;
        if (!_live[block])
        {
            // Dormant: its gradient was zero at every step it missed (a non-zero one would have woken it), so the decay alone.
            for (long s = from; s < upTo; s++)
            {
                float f = _stepLog[s].DecayFactor;
                if (f != 1f) TensorPrimitives.Multiply(pb, f, pb);
            }
        }
        else
        {
            int at = block * BlockLength;
            var m = _m.AsSpan(at, BlockLength);
            var v = _v.AsSpan(at, BlockLength);
            for (long s = from; s < upTo; s++)
            {
                ref readonly var k = ref _stepLog[s];
                if (ForceScalar) UpdateScalar(pb, ZeroGradient, m, v, k, k.DecayFactor);
                else UpdateVector(pb, ZeroGradient, m, v, k, k.DecayFactor);
            }
        }
        _settledSteps[block] = upTo;
    }

    /// <summary>Floats per dormancy flag: about one embedding row of a small model (a longer block is woken by any of its rows).</summary>
    internal const int BlockLength = 256;
    // per block: false while every moment in it is exactly zero (never given a non-zero gradient)
    private readonly bool[] _live;

    /// <summary>The segments cut into pieces of about a thread's share (at least <see cref="MinPiece"/> floats), a few per thread to balance a shared machine.</summary>
    private (int Start, int Length, bool Decayed)[] Pieces(int threads)
    {
        threads = Math.Max(1, threads);
        if (threads == _piecesFor && _pieces is not null) return _pieces;
        int target = (Math.Max(MinPiece, ParameterCount / (4 * threads) + 1) + BlockLength - 1) / BlockLength * BlockLength;
        var pieces = new List<(int, int, bool)>();
        foreach (var (start, length, decayed) in _segments)
            for (int at = 0; at < length; at += target)
                pieces.Add((start + at, Math.Min(target, length - at), decayed));
        _piecesFor = threads;
        return _pieces = pieces.ToArray();
    }

    private const int MinPiece = 64 * 1024;
    private (int Start, int Length, bool Decayed)[]? _pieces;
    private int _piecesFor;

    internal readonly struct Coefficients
    {
        public Coefficients(AdamW o, float lr, long t)
        {
            Beta1 = o.Beta1;
            Beta2 = o.Beta2;
            OneMinusBeta1 = 1f - o.Beta1;
            OneMinusBeta2 = 1f - o.Beta2;
            Epsilon = o.Epsilon;
            LearningRate = lr;
            // bias corrections computed in double: β^t underflows gracefully and stays exact enough
            InvBiasCorrection1 = (float)(1.0 / (1.0 - Math.Pow(o.Beta1, t)));
            InvBiasCorrection2 = (float)(1.0 / (1.0 - Math.Pow(o.Beta2, t)));
            DecayFactor = 1f - lr * o.WeightDecay;
        }
        public float Beta1 { get; }
        public float Beta2 { get; }
        public float OneMinusBeta1 { get; }
        public float OneMinusBeta2 { get; }
        public float Epsilon { get; }
        public float LearningRate { get; }
        public float InvBiasCorrection1 { get; }
        public float InvBiasCorrection2 { get; }
        public float DecayFactor { get; }
    }

    /// <summary>The reference: one element at a time, the same operation order as the vector loop.</summary>
    internal static void UpdateScalar(Span<float> p, Span<float> g, Span<float> m, Span<float> v, in Coefficients k, float decay,
        float scale = 1f, bool clear = false)
    {
        for (int i = 0; i < p.Length; i++)
        {
            float gi = g[i] * scale;
            if (clear) g[i] = 0f;
            float mi = k.Beta1 * m[i] + k.OneMinusBeta1 * gi;
            float vi = k.Beta2 * v[i] + k.OneMinusBeta2 * (gi * gi);
            m[i] = mi;
            v[i] = vi;
            float mHat = mi * k.InvBiasCorrection1;
            float vHat = vi * k.InvBiasCorrection2;
            p[i] = p[i] * decay - k.LearningRate * (mHat / (MathF.Sqrt(vHat) + k.Epsilon));
        }
    }

    /// <summary>
    /// One fused pass with <see cref="Vector{T}"/>: reads p, g, m, v once and writes p, m, v (and the cleared g)
    /// once (a chain of TensorPrimitives calls would stream the buffers ~8 times). Scaling by 1 is exact.
    /// </summary>
    internal static void UpdateVector(Span<float> p, Span<float> g, Span<float> m, Span<float> v, in Coefficients k, float decay,
        float scale = 1f, bool clear = false)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && p.Length >= Vector<float>.Count)
        {
            var b1 = new Vector<float>(k.Beta1);
            var b2 = new Vector<float>(k.Beta2);
            var c1 = new Vector<float>(k.OneMinusBeta1);
            var c2 = new Vector<float>(k.OneMinusBeta2);
            var bc1 = new Vector<float>(k.InvBiasCorrection1);
            var bc2 = new Vector<float>(k.InvBiasCorrection2);
            var eps = new Vector<float>(k.Epsilon);
            var lr = new Vector<float>(k.LearningRate);
            var dec = new Vector<float>(decay);
            var sc = new Vector<float>(scale);
            // refs + LoadUnsafe: the loop bound already keeps every access in range, and
            // slicing spans per iteration would cost more than the arithmetic
            ref float rp = ref MemoryMarshal.GetReference(p);
            ref float rg = ref MemoryMarshal.GetReference(g);
            ref float rm = ref MemoryMarshal.GetReference(m);
            ref float rv = ref MemoryMarshal.GetReference(v);
            int last = p.Length - Vector<float>.Count;
            for (; i <= last; i += Vector<float>.Count)
            {
                nuint at = (nuint)i;
                var gi = Vector.LoadUnsafe(ref rg, at) * sc;
                if (clear) Vector<float>.Zero.StoreUnsafe(ref rg, at);
                var mi = b1 * Vector.LoadUnsafe(ref rm, at) + c1 * gi;
                var vi = b2 * Vector.LoadUnsafe(ref rv, at) + c2 * (gi * gi);
                mi.StoreUnsafe(ref rm, at);
                vi.StoreUnsafe(ref rv, at);
                var update = (mi * bc1) / (Vector.SquareRoot(vi * bc2) + eps);
                (Vector.LoadUnsafe(ref rp, at) * dec - lr * update).StoreUnsafe(ref rp, at);
            }
        }
        if (i < p.Length) UpdateScalar(p.Slice(i), g.Slice(i), m.Slice(i), v.Slice(i), k, decay, scale, clear);
    }

    private static (int, int, bool)[] BuildSegments(int count, IEnumerable<ParameterRange> decayedRanges)
    {
        var mask = new bool[count];
        foreach (var r in decayedRanges)
        {
            if (r.Offset < 0 || r.Length < 0 || r.Offset + r.Length > count)
                throw new ArgumentException($"decayed range [{r.Offset}, {r.Offset + r.Length}) lies outside the {count} parameters");
            mask.AsSpan((int)r.Offset, (int)r.Length).Fill(true);
        }
        var segments = new List<(int, int, bool)>();
        int start = 0;
        for (int i = 1; i <= count; i++)
        {
            if (i == count || mask[i] != mask[start])
            {
                segments.Add((start, i - start, mask[start]));
                start = i;
            }
        }
        return segments.ToArray();
    }
}
