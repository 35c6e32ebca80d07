namespace SpeedLimit.Data;

/// <summary>What <c>speedlimit data inspect</c> shows for one split.</summary>
public sealed record SplitSummary(
    string Split, int Examples, int Labeled,
    IReadOnlyList<(string Label, int Count)> LabelCounts,
    double? ScoreMin, double? ScoreMean, double? ScoreMax,
    int TokenizedExamples, int LengthP50, int LengthP90, int LengthP99, int LengthMax, int Truncated);

/// <summary>Summaries of a task's splits: sizes, label balance, token-length percentiles.</summary>
public static class DataInspector
{
    /// <summary>
    /// Summarizes every split. Token lengths (with special tokens, before truncation) come from a
    /// seeded sample of at most <paramref name="maxTokenized"/> examples per split, which keeps
    /// inspecting SST-2's 67k lines quick; <c>Truncated</c> counts sampled examples over <paramref name="maxLength"/>.
    /// </summary>
    public static List<SplitSummary> Summarize(TaskDataset task, ITextEncoder encoder, int maxLength = 128, int maxTokenized = 5000, int seed = 1234)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(encoder);
        var result = new List<SplitSummary>();
        foreach (var (name, split) in new[] { ("train", task.Train), ("dev", task.Dev), ("test", task.Test) })
        {
            if (split.Count == 0) continue;
            var labeled = split.Where(e => e.HasLabel).ToList();
            var counts = new List<(string, int)>();
            double? min = null, mean = null, max = null;
            if (task.Kind == TaskKind.Classification)
                for (int c = 0; c < task.LabelNames.Count; c++) counts.Add((task.LabelNames[c], labeled.Count(e => e.ClassId == c)));
            else if (labeled.Count > 0)
            {
                min = labeled.Min(e => e.Score); mean = labeled.Average(e => e.Score); max = labeled.Max(e => e.Score);
            }
            var indices = Enumerable.Range(0, split.Count).ToArray();
            if (indices.Length > maxTokenized)
            {
                new Random(seed).Shuffle(indices);
                indices = indices[..maxTokenized];
            }
            var lengths = indices.Select(i =>
            {
                var e = split[i];
                int specials = e.TextB is null ? 2 : 3;
                return encoder.Tokenize(e.TextA).Count + (e.TextB is null ? 0 : encoder.Tokenize(e.TextB).Count) + specials;
            }).Order().ToArray();
            result.Add(new SplitSummary(name, split.Count, labeled.Count, counts, min, mean, max, lengths.Length,
                Percentile(lengths, 0.50), Percentile(lengths, 0.90), Percentile(lengths, 0.99), lengths[^1], lengths.Count(l => l > maxLength)));
        }
        return result;
    }

    /// <summary>Nearest-rank percentile of sorted values.</summary>
    public static int Percentile(int[] sorted, double q)
    {
        if (sorted.Length == 0) throw new ArgumentException("no values");
        int rank = (int)Math.Ceiling(q * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}
