using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SpeedLimit.Model.Layers;

/// <summary>
/// e^x of sixteen values in single precision, for the fused layers (GELU, softmax). Vector512.Exp and TensorPrimitives.Exp
/// compute in double and took half of GELU's time and a fifth of a small model's forward pass (its softmax).
/// </summary>
internal static class SingleExp
{
    /// <summary>Inputs below this are taken as it: e^−87 ≈ 1.6e-38, the smallest 2ⁿ the exponent bits build is 2^−126.</summary>
    public const float Floor = -87f;

    /// <summary>
    /// e^x of sixteen values x ≤ 0 (x below <see cref="Floor"/> taken as the floor): x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2
    /// in two parts, so r is exact to a few ulps), e^r by its Taylor polynomial to r⁷ (truncation below 1e-8 relative), times
    /// 2ⁿ built in the exponent bits. Within 2 ulps of e^x.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> OfNonPositive(Vector512<float> x)
    {
        x = Vector512.Max(x, Vector512.Create(Floor));
        var n = Vector512.Round(x * Vector512.Create(1.44269504f));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-0.693145752f), x);   // ln 2, high part (exact in n·hi)
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-1.42860677e-6f), r);    // ln 2, low part
        var q = Vector512.FusedMultiplyAdd(Vector512.Create(1f / 5040), r, Vector512.Create(1f / 720));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(1f / 120));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(1f / 24));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(1f / 6));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(0.5f));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512<float>.One);
        q = Vector512.FusedMultiplyAdd(q, r, Vector512<float>.One);
        var scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle(); // 2ⁿ, n ≥ −126
        return q * scale;
    }
}
