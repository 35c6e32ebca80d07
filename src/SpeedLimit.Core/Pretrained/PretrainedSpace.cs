using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Pretrained;

/// <summary>
/// How a search space is derived from a pretrained model's shape (E, H, F) with its head count
/// fixed. Each grid ends exactly at the pretrained size, so the supermodel is the pretrained model.
/// Unset values take the defaults below.
/// </summary>
public sealed record PretrainedSpaceOptions
{
    /// <summary>Fewest layers (default 1).</summary>
    public int? MinLayers { get; init; }
    /// <summary>Smallest hidden size (default a quarter of the pretrained one, rounded up to the grid).</summary>
    public int? MinHidden { get; init; }
    /// <summary>Hidden step, a multiple of the head count (default: the head count, the finest grid that keeps the heads).</summary>
    public int? HiddenStep { get; init; }
    /// <summary>Smallest FFN size (default an eighth of the pretrained one, rounded up to the grid).</summary>
    public int? MinFfn { get; init; }
    /// <summary>FFN step (default 1/64 of the pretrained FFN size, at least 1).</summary>
    public int? FfnStep { get; init; }
}

/// <summary>The search space of a pretrained model: derived from its shape, or a given space checked against it.</summary>
internal static class PretrainedSpace
{
    /// <summary>
    /// e ∈ {min..E}, h ∈ {…, H − step, H}, f ∈ {…, F − step, F} with the model's head count. For
    /// all-MiniLM-L6-v2 (6, 384, 1536, 12 heads) the defaults give e 1..6, h 96..384 step 12,
    /// f 192..1536 step 24 (6 × 25 × 57 = 8,550 architectures, the paper's Table 1 has 13,125).
    /// </summary>
    public static SearchSpace Derive(BertConfig pretrained, PretrainedSpaceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(pretrained);
        var o = options ?? new PretrainedSpaceOptions();
        int heads = pretrained.Heads, E = pretrained.Layers, H = pretrained.Hidden, F = pretrained.Ffn;
        int hStep = o.HiddenStep ?? heads;
        if (hStep < 1 || hStep % heads != 0)
            throw new UserInputException($"hidden step {hStep} is not a positive multiple of the model's {heads} heads; the head count is fixed by the pretrained model, so use a multiple of {heads}");
        int fStep = o.FfnStep ?? Math.Max(1, F / 64);
        if (fStep < 1) throw new UserInputException($"FFN step {fStep} must be at least 1");
        int minE = o.MinLayers ?? 1;
        int minH = o.MinHidden ?? Math.Max(heads, H / 4);
        int minF = o.MinFfn ?? Math.Max(1, F / 8);
        if (minE < 1 || minE > E) throw new UserInputException($"minimum layers {minE} must be between 1 and the pretrained model's {E} layers");
        if (minH < 1 || minH > H) throw new UserInputException($"minimum hidden size {minH} must be between 1 and the pretrained model's hidden size {H}");
        if (minF < 1 || minF > F) throw new UserInputException($"minimum FFN size {minF} must be between 1 and the pretrained model's FFN size {F}");
        // Grids counted down from the pretrained size, so the largest point is the pretrained model itself.
        int AlignedMin(int max, int min, int step) => max - (max - min) / step * step;
        int lowH = AlignedMin(H, minH, hStep);
        if (lowH < heads) lowH += hStep;
        return new SearchSpace(new DimensionRange(minE, E, 1), new DimensionRange(lowH, H, hStep), new DimensionRange(AlignedMin(F, minF, fStep), F, fStep), heads);
    }

    /// <summary>
    /// Throws a <see cref="UserInputException"/> naming the dimension and the fix when
    /// <paramref name="space"/> asks for more than the pretrained model has (e ≤ layers, h ≤ hidden,
    /// f ≤ FFN) or for another head count.
    /// </summary>
    public static void Check(SearchSpace space, BertConfig pretrained, string source = "the pretrained model")
    {
        ArgumentNullException.ThrowIfNull(space);
        ArgumentNullException.ThrowIfNull(pretrained);
        if (space.Heads != pretrained.Heads)
            throw new UserInputException($"the search space uses {space.Heads} heads but {source} has {pretrained.Heads}; the head count is fixed by the model, so use a space with {pretrained.Heads} heads (hidden sizes multiples of {pretrained.Heads}), or omit --space to derive it from the model");
        var big = space.Largest;
        var problems = new List<string>();
        if (big.Layers > pretrained.Layers) problems.Add($"layers {big.Layers} > {pretrained.Layers}");
        if (big.Hidden > pretrained.Hidden) problems.Add($"hidden {big.Hidden} > {pretrained.Hidden}");
        if (big.Ffn > pretrained.Ffn) problems.Add($"FFN {big.Ffn} > {pretrained.Ffn}");
        if (problems.Count > 0)
            throw new UserInputException($"the search space's largest architecture {big} exceeds {source}'s shape {pretrained.Arch} ({string.Join(", ", problems)}); sub-models are slices of the pretrained weights, so lower the space's maxima to at most {pretrained.Arch}, or omit --space to derive it from the model");
    }
}
