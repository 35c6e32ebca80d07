using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SpeedLimit.Model.Layers;

/// <summary>
/// Inverted dropout with a stored mask (0 or 1/(1−p)), driven by a seeded generator so a step
/// is reproducible and finite-difference checks can replay the same mask.
/// </summary>
public static class Dropout
{
    /// <summary>Fills the first x.Length values of <paramref name="mask"/> and writes y = x ⊙ mask (in place allowed).</summary>
    /// <remarks>Each 64-bit draw gives four 16-bit uniforms (rate resolution 1/65536): the mask is
    /// the hot part of dropout on a 2-core machine, and this quarters the generator calls.</remarks>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y, float[] mask, float rate, ref SplitMix64 rng, int threads = 1)
    {
        FillMask(mask, x.Length, rate, ref rng, threads);
        System.Numerics.Tensors.TensorPrimitives.Multiply(x, mask.AsSpan(0, x.Length), y);
    }

    /// <summary>Fills <paramref name="mask"/> with 0 or 1/(1−p) from the generator (what <see cref="Forward"/> multiplies by).</summary>
    public static void FillMask(Span<float> mask, float rate, ref SplitMix64 rng)
    {
        int done = VectorFill ? FillMaskVector(mask, rate, ref rng) : 0;
        FillMaskScalar(mask[done..], rate, ref rng);
    }

    /// <summary>Whether whole groups of 32 mask values are drawn eight draws at a time (64-bit vector multiplies: AVX-512 DQ).</summary>
    internal static bool VectorFill { get; } = Vector512.IsHardwareAccelerated && Avx512DQ.IsSupported;

    /// <summary>
    /// The mask values of whole groups of 32 (eight draws) at the start of <paramref name="mask"/>, the scalar fill's bits:
    /// draw k of SplitMix64 mixes state + k·γ, so eight consecutive draws are eight lanes; the four 16-bit uniforms of a
    /// draw are its four 16-bit lanes, low first, as the scalar fill shifts them out. Returns how many values it filled
    /// (the generator moved past their draws); the scalar fill does the rest.
    /// </summary>
    internal static int FillMaskVector(Span<float> mask, float rate, ref SplitMix64 rng)
    {
        int groups = mask.Length / 32;
        if (groups == 0) return 0;
        var keep = Vector512.Create(1f / (1f - rate));
        var threshold = Vector512.Create((uint)MathF.Round(rate * 65536f));
        var state = Vector512.Create(rng.State) + Vector512.Create(1UL, 2, 3, 4, 5, 6, 7, 8) * Vector512.Create(SplitMix64.Gamma);
        var step = Vector512.Create(unchecked(8 * SplitMix64.Gamma));
        ref float m = ref MemoryMarshal.GetReference(mask);
        for (int g = 0; g < groups; g++, state += step)
        {
            var (low, high) = Vector512.Widen(SplitMix64.Mix(state).AsUInt16());
            Vector512.ConditionalSelect(Vector512.LessThan(low, threshold).AsSingle(), Vector512<float>.Zero, keep).StoreUnsafe(ref m, (nuint)(32 * g));
            Vector512.ConditionalSelect(Vector512.LessThan(high, threshold).AsSingle(), Vector512<float>.Zero, keep).StoreUnsafe(ref m, (nuint)(32 * g + 16));
        }
        rng.Skip((ulong)groups * 8);
        return 32 * groups;
    }

    /// <summary>The mask one value at a time: the definition <see cref="FillMaskVector"/> reproduces.</summary>
    internal static void FillMaskScalar(Span<float> mask, float rate, ref SplitMix64 rng)
    {
        float keep = 1f / (1f - rate);
        uint threshold = (uint)MathF.Round(rate * 65536f);
        ulong bits = 0;
        int left = 0;
        for (int i = 0; i < mask.Length; i++)
        {
            if (left == 0) { bits = rng.Next(); left = 4; }
            mask[i] = (uint)(bits & 0xFFFF) < threshold ? 0f : keep;
            bits >>= 16;
            left--;
        }
    }

    /// <summary>
    /// The same mask as <see cref="FillMask(Span{float}, float, ref SplitMix64)"/> (the same bits, and the generator
    /// left in the same state), filled in parts on up to <paramref name="threads"/> threads: SplitMix64's draw k
    /// depends only on its starting state and k, so each part starts its own generator at its first draw.
    /// </summary>
    internal static void FillMask(float[] mask, int length, float rate, ref SplitMix64 rng, int threads)
    {
        // Split by draws (four values each), so every part starts on a draw boundary.
        var start = rng;
        Kernels.EngineParallel.SplitRows((length + 3) / 4, 4, threads, (d0, d1) =>
        {
            var part = start;
            part.Skip((ulong)d0);
            int first = 4 * d0;
            FillMask(mask.AsSpan(first, Math.Min(4 * d1, length) - first), rate, ref part);
        });
        rng.Skip((ulong)((length + 3) / 4));
    }
}

/// <summary>A small, fast, seedable generator (SplitMix64) for per-element randomness.</summary>
public struct SplitMix64(ulong seed)
{
    internal const ulong Gamma = 0x9E3779B97F4A7C15UL;
    private const ulong M1 = 0xBF58476D1CE4E5B9UL, M2 = 0x94D049BB133111EBUL;
    private ulong _state = seed;

    /// <summary>The state the next draw adds <see cref="Gamma"/> to.</summary>
    internal readonly ulong State => _state;

    public ulong Next()
    {
        ulong z = _state += Gamma;
        z = (z ^ (z >> 30)) * M1;
        z = (z ^ (z >> 27)) * M2;
        return z ^ (z >> 31);
    }

    /// <summary>The output of <see cref="Next"/> for eight states at once (the states already advanced by γ).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<ulong> Mix(Vector512<ulong> z)
    {
        z = (z ^ Vector512.ShiftRightLogical(z, 30)) * Vector512.Create(M1);
        z = (z ^ Vector512.ShiftRightLogical(z, 27)) * Vector512.Create(M2);
        return z ^ Vector512.ShiftRightLogical(z, 31);
    }

    /// <summary>Moves the generator past <paramref name="draws"/> draws without making them.</summary>
    public void Skip(ulong draws) => _state += draws * Gamma;

    /// <summary>Uniform in [0, 1) with 24 bits.</summary>
    public float NextFloat() => (Next() >> 40) * (1f / (1 << 24));
}
