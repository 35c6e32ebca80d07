namespace SpeedLimit.Data;

/// <summary>Validation splits carved out of train for tasks that ship without one.</summary>
internal static class DataSplits
{
    /// <summary>
    /// Moves a seeded random <paramref name="fraction"/> of <paramref name="examples"/> into a
    /// validation split. With <paramref name="stratify"/>, each class gives the same fraction
    /// (rounded), so label balance is kept. Order inside both parts follows the input order.
    /// </summary>
    public static (List<TaskExample> Train, List<TaskExample> Validation) CarveValidation(
        IReadOnlyList<TaskExample> examples, double fraction, int seed, bool stratify)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (!(fraction > 0 && fraction < 1))
            throw new ArgumentException($"validation fraction {fraction} must be in (0, 1); e.g. 0.1", nameof(fraction));
        if (examples.Count < 2)
            throw new ArgumentException($"cannot carve a validation split out of {examples.Count} example(s); need at least 2");
        var rng = new Random(seed);
        var groups = stratify
            ? Enumerable.Range(0, examples.Count).GroupBy(i => examples[i].ClassId).OrderBy(g => g.Key).Select(g => g.ToArray()).ToList()
            : [Enumerable.Range(0, examples.Count).ToArray()];
        var isValidation = new bool[examples.Count];
        foreach (var group in groups)
        {
            rng.Shuffle(group);
            int take = (int)Math.Round(group.Length * fraction, MidpointRounding.AwayFromZero);
            // Every class with ≥ 2 examples gives at least one and keeps at least one; singletons stay in train.
            take = group.Length >= 2 ? Math.Clamp(take, 1, group.Length - 1) : 0;
            for (int i = 0; i < take; i++) isValidation[group[i]] = true;
        }
        var train = new List<TaskExample>();
        var validation = new List<TaskExample>();
        for (int i = 0; i < examples.Count; i++) (isValidation[i] ? validation : train).Add(examples[i]);
        if (validation.Count == 0)
            throw new ArgumentException($"no class has 2 or more of the {examples.Count} examples, so no validation split can be carved; provide a dev file");
        return (train, validation);
    }
}
