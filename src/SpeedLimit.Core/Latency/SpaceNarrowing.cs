using SpeedLimit.Latency.Predictors;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Latency;

/// <summary>One architecture that meets the bound, with its point prediction and its prediction inflated by the margin.</summary>
public sealed record FeasibleArchitecture(Architecture Arch, double PredictedMs, double UpperMs);

/// <summary>How a narrowed space spreads over one dimension: each value and how many feasible architectures have it.</summary>
public sealed record DimensionSpread(string Dimension, int Min, int Max, int DistinctValues, IReadOnlyList<(int Value, int Count)> Histogram);

/// <summary>A* = {a ∈ A : L(a)·(1+m) ≤ bound}, the architectures a search may consider.</summary>
public sealed record NarrowedSpace(SearchSpace Space, double BoundMs, double RelativeMargin, IReadOnlyList<FeasibleArchitecture> Feasible,
    FeasibleArchitecture Fastest, FeasibleArchitecture Slowest)
{
    public int Count => Feasible.Count;
    public double Share => Count / (double)Space.Count;

    public IReadOnlyList<DimensionSpread> Spread() =>
    [
        SpreadOf("layers", a => a.Layers),
        SpreadOf("hidden", a => a.Hidden),
        SpreadOf("ffn", a => a.Ffn),
    ];

    private DimensionSpread SpreadOf(string name, Func<Architecture, int> pick)
    {
        var hist = Feasible.GroupBy(f => pick(f.Arch)).OrderBy(g => g.Key).Select(g => (g.Key, g.Count())).ToList();
        return new DimensionSpread(name, hist.Count == 0 ? 0 : hist[0].Item1, hist.Count == 0 ? 0 : hist[^1].Item1, hist.Count, hist);
    }

    public bool Contains(Architecture arch) => Feasible.Any(f => f.Arch == arch);
}

/// <summary>Narrows a search space to the architectures a latency predictor, with its margin, says meet a bound.</summary>
public static class SpaceNarrowing
{
    /// <summary>
    /// Keeps every a that meets <paramref name="boundMs"/> by prediction (<see cref="LatencyBound.MeetsPredicted"/>: predicted(a)·(1+margin) ≤ bound, ties included).
    /// Throws <see cref="UserInputException"/> naming the fastest architecture when none qualifies.
    /// </summary>
    public static NarrowedSpace Narrow(SearchSpace space, ILatencyPredictor predictor, double boundMs)
    {
        ArgumentNullException.ThrowIfNull(space);
        ArgumentNullException.ThrowIfNull(predictor);
        var bound = new LatencyBound(boundMs);
        double margin = predictor.RelativeMargin;
        LatencyBound.PredictedUpperMs(1, margin); // validates the margin

        var archs = space.Enumerate().ToArray();
        var predicted = new double[archs.Length];
        if (predictor is IBatchLatencyPredictor batch) batch.PredictMs(archs, predicted);
        else for (int i = 0; i < archs.Length; i++) predicted[i] = predictor.PredictMs(archs[i]);

        var feasible = new List<FeasibleArchitecture>();
        int fastest = 0, slowest = -1;
        for (int i = 0; i < archs.Length; i++)
        {
            if (predicted[i] < predicted[fastest]) fastest = i;
            if (bound.MeetsPredicted(predicted[i], margin))
            {
                feasible.Add(new FeasibleArchitecture(archs[i], predicted[i], LatencyBound.PredictedUpperMs(predicted[i], margin)));
                if (slowest < 0 || predicted[i] > predicted[slowest]) slowest = i;
            }
        }
        var fast = new FeasibleArchitecture(archs[fastest], predicted[fastest], LatencyBound.PredictedUpperMs(predicted[fastest], margin));
        if (feasible.Count == 0)
            throw new UserInputException(
                $"no architecture of the search space meets {boundMs:0.###} ms: the fastest, {fast.Arch}, is predicted at {fast.PredictedMs:0.###} ms " +
                $"({fast.UpperMs:0.###} ms with the {margin:P1} margin); raise the bound to at least {fast.UpperMs:0.###} ms or search a smaller space");
        var slow = new FeasibleArchitecture(archs[slowest], predicted[slowest], LatencyBound.PredictedUpperMs(predicted[slowest], margin));
        return new NarrowedSpace(space, boundMs, margin, feasible, fast, slow);
    }
}
