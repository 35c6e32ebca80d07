namespace SpeedLimit;

/// <summary>
/// The searched architecture tuple (e, h, f): encoder layers, hidden size (embeddings,
/// attention, pooler) and FFN inner size. Every encoder block has the same shape.
/// </summary>
public sealed record Architecture(int Layers, int Hidden, int Ffn)
{
    /// <summary>Parses "e,h,f" or "(e,h,f)".</summary>
    public static Architecture Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Trim().TrimStart('(').TrimEnd(')').Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 3 || !int.TryParse(parts[0], out var e) || !int.TryParse(parts[1], out var h) || !int.TryParse(parts[2], out var f))
            throw new ArgumentException($"architecture '{text}' is not of the form e,h,f (for example 4,256,1024)");
        return new Architecture(e, h, f);
    }

    /// <summary>True when every dimension is at most the supermodel's.</summary>
    public bool FitsIn(Architecture super) => Layers <= super.Layers && Hidden <= super.Hidden && Ffn <= super.Ffn;

    public override string ToString() => $"({Layers},{Hidden},{Ffn})";
}
