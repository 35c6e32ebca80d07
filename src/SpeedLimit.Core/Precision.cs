namespace SpeedLimit;

/// <summary>Numeric precision of an exported/deployed model.</summary>
public enum Precision { Fp32, Int8 }

/// <summary>The one parser of precision words, so every command accepts the same ones.</summary>
public static class Precisions
{
    /// <summary>Parses "fp32" / "int8" (case-insensitive).</summary>
    public static Precision Parse(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        "fp32" => Precision.Fp32,
        "int8" => Precision.Int8,
        _ => throw new UserInputException($"unknown precision '{text}'; use fp32 or int8"),
    };

    /// <summary>The word <see cref="Parse"/> accepts for <paramref name="precision"/>.</summary>
    public static string Name(this Precision precision) => precision.ToString().ToLowerInvariant();
}
