using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpeedLimit.Kernels;

/// <summary>
/// The right-hand operand of a GEMM, op(B) (K,N), packed once into the micro-kernels' panel layout, so
/// repeated products with it — a weight used by every forward pass of an evaluation, or by every
/// micro-batch of an accumulation group — skip the packing that otherwise costs a pass over B per call
/// (a sizeable share of the product when M is one sequence, 128 rows). A product with a packed matrix
/// is bit-identical to the unpacked <see cref="Gemm.Multiply(bool, bool, int, int, int, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, Span{float}, int, bool, int)"/>
/// on the same values, on any number of threads.
/// </summary>
/// <remarks>
/// The packing is a copy: after the source changes, call <see cref="Repack"/> (same shape, no allocation).
/// The storage is a pinned managed array (no finalizer, no native handle to dispose). Pinned is not rooted: code that
/// reads it through <see cref="Data"/> keeps the matrix alive until it is done (<see cref="GC.KeepAlive"/>).
/// </remarks>
public sealed unsafe class PackedMatrix
{
    private readonly float[] _storage;
    private readonly int _offset; // first 64-byte-aligned element of _storage

    private PackedMatrix(GemmPath path, bool transposed, int k, int n)
    {
        Path = path;
        Transposed = transposed;
        K = k;
        N = n;
        if (path == GemmPath.Scalar)
        {
            Npad = n;
            Kc = Math.Max(1, k);
        }
        else
        {
            Npad = GemmDriver.RoundUp(n, GemmDriver.TileCols(path));
            Kc = GemmDriver.DepthBlock(Math.Max(1, k));
        }
        long floats = (long)k * Npad;
        if (floats > Array.MaxLength - 16) throw new ArgumentException($"packed matrix ({k},{n}) is too large for one buffer");
        _storage = GC.AllocateUninitializedArray<float>((int)floats + 16, pinned: true);
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_storage));
        _offset = (int)(((64 - (address & 63)) & 63) / sizeof(float));
    }

    /// <summary>Depth of op(B) (rows).</summary>
    public int K { get; }
    /// <summary>Width of op(B) (columns): the product's N.</summary>
    public int N { get; }
    /// <summary>Whether the source was stored (N,K) and transposed (the linear-weight case).</summary>
    public bool Transposed { get; }
    /// <summary>The kernel path the panels are laid out for (products with this matrix run on it).</summary>
    public GemmPath Path { get; }

    internal int Npad { get; }
    internal int Kc { get; }
    internal float* Data => (float*)Unsafe.AsPointer(ref _storage[_offset]);
    internal PackedPanels Panels => new(Data, K, N, Npad, Kc, 0, prepacked: true);
    /// <summary>The scalar path's storage: op(B) row-major (K,N).</summary>
    internal ReadOnlySpan<float> Plain => _storage.AsSpan(_offset, K * N);

    /// <summary>Packs op(B) (K,N): B stored (K,N), or (N,K) when <paramref name="transB"/> is set, with leading dimension <paramref name="ldb"/>.</summary>
    public static PackedMatrix Pack(bool transB, int k, int n, ReadOnlySpan<float> b, int ldb, int threads = 0) =>
        Pack(Gemm.Path, transB, k, n, b, ldb, threads);

    /// <summary>As the public overload, for an explicit path (tests cover every path without global state).</summary>
    internal static PackedMatrix Pack(GemmPath path, bool transB, int k, int n, ReadOnlySpan<float> b, int ldb, int threads)
    {
        var p = Gemm.Resolve(path);
        if (k < 0 || n < 0) throw new ArgumentException($"packed matrix dimensions must be >= 0, got k={k}, n={n}.");
        var packed = new PackedMatrix(p, transB, k, n);
        packed.Repack(b, ldb, threads);
        return packed;
    }

    /// <summary>Packs new values of the same shape and layout into this matrix.</summary>
    public void Repack(ReadOnlySpan<float> b, int ldb, int threads = 0)
    {
        GemmChecks.ValidateOperand("B", Transposed ? N : K, Transposed ? K : N, b.Length, ldb, "ldb");
        threads = GemmChecks.Threads(threads);
        if (K == 0 || N == 0) return;
        if (Path == GemmPath.Scalar)
        {
            var dst = _storage.AsSpan(_offset, K * N);
            for (int p = 0; p < K; p++)
                for (int j = 0; j < N; j++)
                    dst[p * N + j] = Transposed ? b[j * ldb + p] : b[p * ldb + j];
            return;
        }
        // Packing is memory-bound: a second thread helps only on large matrices.
        int parts = (long)K * N >= 1 << 18 ? threads : 1;
        fixed (float* pb = b)
        {
            var panels = Panels;
            GemmDriver.PackShared(pb, ldb, Transposed, Path, in panels, parts);
        }
        GC.KeepAlive(this); // the packing writes the storage through a pointer (see Gemm.Multiply)
    }
}
