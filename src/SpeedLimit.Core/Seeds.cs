namespace SpeedLimit;

/// <summary>
/// Derives sub-seeds from a run's seed. Unlike <see cref="HashCode.Combine{T1,T2}"/>, which is
/// randomized per process, these are the same in every process, so a resumed run in a new process
/// draws exactly what the original would have.
/// </summary>
internal static class Seeds
{
    public static int Combine(int seed, long a, long b = 0)
    {
        ulong h = Mix((ulong)(uint)seed ^ 0x5EED_5EED_0000_0000UL);
        h = Mix(h ^ (ulong)a);
        h = Mix(h ^ (ulong)b);
        return (int)(h & 0x7FFF_FFFF);
    }

    /// <summary>SplitMix64's finalizer: a bijective avalanche of 64 bits.</summary>
    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
