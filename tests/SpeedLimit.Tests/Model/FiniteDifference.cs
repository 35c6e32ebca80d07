namespace SpeedLimit.Tests.Model;

/// <summary>
/// Central finite differences in float32 (the engine's precision) against analytic gradients.
/// With eps = 1e-2 on O(1) activations the truncation error is ~eps² and the float rounding noise
/// ~1e-6/eps, so |fd − analytic| ≤ AbsTol + RelTol·max(|fd|, |analytic|) with AbsTol 1e-3, RelTol 3e-2.
/// </summary>
internal static class FiniteDifference
{
    public const double AbsTol = 1e-3, RelTol = 3e-2;

    /// <param name="loss">Recomputes the scalar loss from the current parameter values (in double).</param>
    /// <param name="parameter">The values being perturbed (a live view into the model's buffer).</param>
    /// <param name="analytic">The analytic gradient for the same values.</param>
    public static void Check(string what, Func<double> loss, float[] parameter, int offset, int length, float[] analytic, int analyticOffset,
        Random rng, int samples = 12, float eps = 1e-2f)
    {
        var indices = length <= samples ? Enumerable.Range(0, length) : Enumerable.Range(0, samples).Select(_ => rng.Next(length));
        foreach (int i in indices)
        {
            int p = offset + i;
            float saved = parameter[p];
            parameter[p] = saved + eps; double up = loss();
            parameter[p] = saved - eps; double down = loss();
            parameter[p] = saved;
            double fd = (up - down) / (2 * eps);
            double an = analytic[analyticOffset + i];
            double tol = AbsTol + RelTol * Math.Max(Math.Abs(fd), Math.Abs(an));
            Assert.True(Math.Abs(fd - an) <= tol, $"{what}[{i}]: finite difference {fd:G6} vs analytic {an:G6} (tolerance {tol:G3})");
        }
    }

    public static float[] RandomArray(Random rng, int n, float scale = 1f) =>
        Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();

    public static double Dot(ReadOnlySpan<float> a, float[] c)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += (double)a[i] * c[i];
        return s;
    }
}
