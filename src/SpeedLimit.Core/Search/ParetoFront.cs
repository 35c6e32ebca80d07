namespace SpeedLimit.Search;

/// <summary>Accuracy-vs-latency Pareto front: lower latency and higher metric both win.</summary>
internal static class ParetoFront
{
    /// <summary>
    /// The items no other item beats on both axes, fastest first. An item is kept when its metric
    /// is strictly above every faster (or equally fast) item's metric.
    /// </summary>
    public static List<T> Compute<T>(IEnumerable<T> items, Func<T, double> latencyMs, Func<T, double> metric)
    {
        var sorted = items.OrderBy(latencyMs).ThenByDescending(metric).ToList();
        var front = new List<T>();
        double best = double.NegativeInfinity;
        foreach (var item in sorted)
        {
            var m = metric(item);
            if (m > best)
            {
                front.Add(item);
                best = m;
            }
        }
        return front;
    }
}
