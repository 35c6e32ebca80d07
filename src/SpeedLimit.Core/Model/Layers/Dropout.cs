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
    private ulong _state = seed;

    public ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Moves the generator past <paramref name="draws"/> draws without making them.</summary>
    public void Skip(ulong draws) => _state += draws * 0x9E3779B97F4A7C15UL;

    /// <summary>Uniform in [0, 1) with 24 bits.</summary>
    public float NextFloat() => (Next() >> 40) * (1f / (1 << 24));
}
