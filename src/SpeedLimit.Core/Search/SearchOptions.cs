using System.Text.Json.Serialization;
using SpeedLimit.Latency;

namespace SpeedLimit.Search;

/// <summary>
/// Settings of the evolutionary search (paper Algorithm 1, AutoTinyBERT-style mutation).
/// Defaults are sized for the demo; AutoTinyBERT used 25 generations and an explore rate of 0.5,
/// the SpeedLimit paper four rounds per latency target.
/// </summary>
public sealed record SearchOptions
{
    /// <summary>T: generations (rounds). Paper: 4; AutoTinyBERT: 25.</summary>
    public int Generations { get; init; } = 4;

    /// <summary>S: new candidates per generation.</summary>
    public int CandidatesPerGeneration { get; init; } = 8;

    /// <summary>k: the best candidates seen so far (by metric) that seed the next generation.</summary>
    public int Parents { get; init; } = 4;

    /// <summary>p_m: chance a slot mutates a parent rather than drawing fresh from A* (AutoTinyBERT: 0.5).</summary>
    public double MutationProbability { get; init; } = 0.5;

    /// <summary>Chance each of (e, h, f) moves in a mutation; at least one always moves.</summary>
    public double DimensionMutationProbability { get; init; } = 0.5;

    /// <summary>Largest move of the layer count, in grid steps (AutoTinyBERT: ±1).</summary>
    public int LayerMaxSteps { get; init; } = 1;

    /// <summary>Largest move of the hidden size, in grid steps (AutoTinyBERT: ±1).</summary>
    public int HiddenMaxSteps { get; init; } = 1;

    /// <summary>Largest move of the FFN size, in grid steps (AutoTinyBERT: ±2).</summary>
    public int FfnMaxSteps { get; init; } = 2;

    /// <summary>Mutation tries per slot before falling back to a fresh sample from A*.</summary>
    public int MutationAttempts { get; init; } = 10;

    /// <summary>New measurements verification may take per bound (best metric first) before giving up; candidates already measured (for another bound) are always considered.</summary>
    public int MaxVerifications { get; init; } = 5;

    /// <summary>The quantile the bounds are on (<see cref="LatencyBound"/> decides what meets them); MLPerf single-stream uses p90.</summary>
    public BoundStatistic VerifyStatistic { get; init; } = BoundStatistic.P90;

    /// <summary>Largest space the search will enumerate to narrow it (each point costs one prediction).</summary>
    public long MaxEnumeratedArchitectures { get; init; } = 2_000_000;

    /// <summary>
    /// Candidates fine-tuned side by side, the training threads shared among them; 0: as many as there are training
    /// threads (at most 4), one thread each. Small models use several threads poorly, so side by side evaluates more
    /// candidates per hour. Not part of a run's fingerprint: the results are the same bits either way (the engine does
    /// not depend on its thread count).
    /// </summary>
    [JsonIgnore]
    public int ConcurrentCandidates { get; init; }

    /// <summary>How many candidates run side by side on <paramref name="trainThreads"/> threads, and the threads of each.</summary>
    public (int Candidates, int ThreadsEach) SideBySide(int trainThreads)
    {
        int candidates = Math.Clamp(ConcurrentCandidates == 0 ? Math.Min(trainThreads, 4) : ConcurrentCandidates, 1, Math.Max(1, trainThreads));
        return (candidates, Math.Max(1, trainThreads / candidates));
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public void Validate()
    {
        if (ConcurrentCandidates < 0) throw new ArgumentException($"--concurrent-candidates {ConcurrentCandidates} must be 0 (one per training thread) or more");
        Positive(Generations, nameof(Generations));
        Positive(CandidatesPerGeneration, nameof(CandidatesPerGeneration));
        Positive(Parents, nameof(Parents));
        Probability(MutationProbability, nameof(MutationProbability));
        Probability(DimensionMutationProbability, nameof(DimensionMutationProbability));
        Positive(LayerMaxSteps, nameof(LayerMaxSteps));
        Positive(HiddenMaxSteps, nameof(HiddenMaxSteps));
        Positive(FfnMaxSteps, nameof(FfnMaxSteps));
        Positive(MutationAttempts, nameof(MutationAttempts));
        Positive(MaxVerifications, nameof(MaxVerifications));
        if (MaxEnumeratedArchitectures < 1) throw new ArgumentException($"search options: {nameof(MaxEnumeratedArchitectures)} must be at least 1, got {MaxEnumeratedArchitectures}");
        if (!Enum.IsDefined(VerifyStatistic)) throw new ArgumentException($"search options: unknown {nameof(VerifyStatistic)} {VerifyStatistic}");
    }

    private static void Positive(int value, string name)
    {
        if (value < 1) throw new ArgumentException($"search options: {name} must be at least 1, got {value}");
    }

    private static void Probability(double value, string name)
    {
        if (!(value >= 0 && value <= 1)) throw new ArgumentException($"search options: {name} must be a probability in [0, 1], got {value}");
    }
}
