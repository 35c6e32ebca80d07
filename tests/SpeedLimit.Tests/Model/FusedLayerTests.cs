using System.Numerics.Tensors;
using SpeedLimit.Model.Layers;
using static SpeedLimit.Tests.Model.FiniteDifference;

namespace SpeedLimit.Tests.Model;

/// <summary>
/// The fused elementwise passes against the unfused composition they replace (bit for bit: the same operations in
/// the same order) on one and two threads, and their forward/backward pairs against finite differences.
/// </summary>
public class FusedLayerTests
{
    // (rows, cols): small, primes, and large enough that two threads split the rows.
    private static readonly (int Rows, int Cols)[] Shapes = [(1, 1), (3, 7), (17, 129), (64, 1016), (257, 263)];

    [Fact]
    public void VectorDropoutMaskIsTheScalarMaskBitForBit()
    {
        // Eight draws at a time against one value at a time: lengths below, at and around whole groups of 32, rates where
        // the 16-bit threshold is 0, small, and most of the range, from a generator already part-way; the generator must
        // continue from the same draw.
        if (!Dropout.VectorFill) return; // no AVX-512 DQ here: the scalar fill is what runs
        foreach (float rate in new[] { 0f, 0.1f, 0.5f, 0.9f })
            foreach (int length in new[] { 1, 31, 32, 33, 64, 95, 1000, 4099 })
            {
                var scalarGen = new SplitMix64(3); scalarGen.Next(); scalarGen.Next();
                var vectorGen = scalarGen;
                var scalar = new float[length]; var vector = new float[length];
                Dropout.FillMaskScalar(scalar, rate, ref scalarGen);
                Dropout.FillMask(vector, rate, ref vectorGen);
                AssertBitEqual(scalar, vector, $"mask of {length} at rate {rate}");
                Assert.Equal(scalarGen.Next(), vectorGen.Next());
            }
        var big = new float[1 << 16];
        var gen = new SplitMix64(9);
        Dropout.FillMask(big, 0.1f, ref gen);
        double dropped = big.Count(v => v == 0f) / (double)big.Length;
        Assert.InRange(dropped, 0.09, 0.11); // a real mask, not all kept or all dropped
    }

    [Fact]
    public void ParallelDropoutMaskIsTheSerialMaskBitForBit()
    {
        // Lengths around the part size (64 Ki) and not multiples of 4, on 1..3 threads, from a generator already part-way.
        foreach (int length in new[] { 1, 5, 65_535, 131_072, 131_077, 400_003 })
            foreach (int threads in new[] { 1, 2, 3 })
            {
                var serialGen = new SplitMix64(7); serialGen.Next();
                var parallelGen = serialGen;
                var serial = new float[length];
                Dropout.FillMask(serial, 0.1f, ref serialGen);
                var parallel = new float[length + 3];
                Dropout.FillMask(parallel, length, 0.1f, ref parallelGen, threads);
                AssertBitEqual(serial, parallel.AsSpan(0, length).ToArray(), $"mask of {length} on {threads} thread(s)");
                Assert.Equal(serialGen.Next(), parallelGen.Next()); // the generator continues from the same draw
                Assert.Equal(0f, parallel[length]);                  // nothing written past the length
            }
    }

    [Fact]
    public void OnePassGeluMatchesTheComposedPassesWithinTwoUlps()
    {
        // The one-pass kernels (Vector512, with a single-precision exp) against the TensorPrimitives chain (whose exp
        // computes in double), forward and backward (added and written), on lengths with and without a partial last vector;
        // values from the tails (|x| up to 12, where exp(−x²) underflows) to zero. Measured over [−12, 12]: forward within
        // 2·|x|·2⁻²⁴, the slope within 2 ulps of 0.5; the bounds below are those with a margin, far below a wrong
        // coefficient or a missing term (errors of 1e-3 and more).
        if (!Gelu.Fused) return; // no Vector512 here: the composed passes are what runs
        var rng = new Random(11);
        foreach (int n in new[] { 1, 7, 15, 16, 17, 31, 511, 512, 513, 1016, 4099 })
        {
            var x = RandomArray(rng, n, 12f); x[0] = 0f; var dy = RandomArray(rng, n); var dx0 = RandomArray(rng, n);
            var composed = new float[n]; var fused = new float[n];
            Gelu.ForwardComposed(x, composed);
            Gelu.ForwardFused(x, fused);
            for (int i = 0; i < n; i++)
                Assert.True(Math.Abs(fused[i] - composed[i]) <= 2.4e-7 * Math.Abs(x[i]) + 1e-37,
                    $"gelu({x[i]:R}) = {fused[i]:R}, the composed passes give {composed[i]:R}");
            foreach (bool accumulate in new[] { true, false })
            {
                var dComposed = (float[])dx0.Clone(); var dFused = (float[])dx0.Clone();
                Gelu.BackwardComposed(x, dy, dComposed, accumulate);
                Gelu.BackwardFused(x, dy, dFused, accumulate);
                for (int i = 0; i < n; i++)
                    Assert.True(Math.Abs(dFused[i] - dComposed[i]) <= 3e-7 * Math.Abs(dy[i]) + 1.2e-7 * Math.Abs(dComposed[i]) + 1e-37,
                        $"gelu backward at {x[i]:R} (dy {dy[i]:R}, accumulate={accumulate}) = {dFused[i]:R}, the composed passes give {dComposed[i]:R}");
            }
        }
    }

    [Fact]
    public void OnePassGeluGivesAValueTheSameBitsWhereverItLies()
    {
        // A last partial vector goes through a padded copy: every value must come out as it does inside a full vector, so a
        // split over threads or rows cannot change a bit.
        if (!Gelu.Fused) return;
        var rng = new Random(12);
        var x = RandomArray(rng, 100, 6f); var dy = RandomArray(rng, 100);
        var whole = new float[100]; var dWhole = new float[100];
        Gelu.ForwardFused(x, whole);
        Gelu.BackwardFused(x, dy, dWhole, false);
        for (int offset = 1; offset < 17; offset++)
        {
            var part = new float[100 - offset]; var dPart = new float[100 - offset];
            Gelu.ForwardFused(x.AsSpan(offset), part);
            Gelu.BackwardFused(x.AsSpan(offset), dy.AsSpan(offset), dPart, false);
            AssertBitEqual(whole[offset..], part, $"gelu from offset {offset}");
            AssertBitEqual(dWhole[offset..], dPart, $"gelu backward from offset {offset}");
        }
    }

    [Fact]
    public void BiasGeluIsTheBiasPassThenTheGeluPass()
    {
        var rng = new Random(1);
        foreach (var (rows, cols) in Shapes)
            foreach (int threads in new[] { 1, 2 })
            {
                var y = RandomArray(rng, rows * cols, 4f); var b = RandomArray(rng, cols);
                var u = (float[])y.Clone();
                for (int r = 0; r < rows; r++) TensorPrimitives.Add(u.AsSpan(r * cols, cols), b, u.AsSpan(r * cols, cols));
                var g = new float[rows * cols];
                Gelu.Forward(u, g);
                var fusedU = (float[])y.Clone(); var fusedG = new float[rows * cols];
                Gelu.BiasForward(fusedU, b, fusedG, rows, cols, threads);
                AssertBitEqual(u, fusedU, $"pre-activation ({rows},{cols}) t{threads}");
                AssertBitEqual(g, fusedG, $"gelu ({rows},{cols}) t{threads}");
            }
    }

    [Fact]
    public void BiasResidualLayerNormIsTheBiasDropoutResidualAndNormPasses()
    {
        var rng = new Random(2);
        foreach (var (rows, cols) in Shapes)
            foreach (bool dropout in new[] { false, true })
                foreach (int threads in new[] { 1, 2 })
                {
                    var y = RandomArray(rng, rows * cols, 2f); var b = RandomArray(rng, cols); var x = RandomArray(rng, rows * cols);
                    var gamma = RandomArray(rng, cols); var beta = RandomArray(rng, cols);
                    float[]? mask = null;
                    if (dropout)
                    {
                        mask = new float[rows * cols];
                        var gen = new SplitMix64(7);
                        Dropout.FillMask(mask, 0.1f, ref gen);
                    }
                    // Unfused: bias pass, dropout pass, residual pass, LayerNorm.
                    var r = (float[])y.Clone();
                    for (int i = 0; i < rows; i++) TensorPrimitives.Add(r.AsSpan(i * cols, cols), b, r.AsSpan(i * cols, cols));
                    if (mask is not null) TensorPrimitives.Multiply(r, mask, r);
                    TensorPrimitives.Add(r, x, r);
                    var outRef = new float[rows * cols]; var meanRef = new float[rows]; var rstdRef = new float[rows];
                    LayerNorm.Forward(r, gamma, beta, outRef, meanRef, rstdRef, rows, cols, 1e-12f);

                    var fused = (float[])y.Clone();
                    var output = new float[rows * cols]; var mean = new float[rows]; var rstd = new float[rows];
                    LayerNorm.BiasResidualForward(fused, b, mask, x, gamma, beta, output, mean, rstd, rows, cols, 1e-12f, threads);
                    string what = $"({rows},{cols}) dropout={dropout} t{threads}";
                    AssertBitEqual(r, fused, $"residual {what}");
                    AssertBitEqual(outRef, output, $"normalized {what}");
                    AssertBitEqual(meanRef, mean, $"mean {what}");
                    AssertBitEqual(rstdRef, rstd, $"rstd {what}");
                }
    }

    [Fact]
    public void ComposedMaskedSoftmaxIsScaleMaskShiftSoftmax()
    {
        var rng = new Random(3);
        foreach (int T in new[] { 1, 2, 7, 64, 129 })
        {
            var (row, mask) = ScoreRow(rng, T);
            float scale = 1f / MathF.Sqrt(11);
            var reference = (float[])row.Clone();
            TensorPrimitives.Multiply(reference, scale, reference);
            for (int s = 0; s < T; s++) if (mask[s] != 0) reference[s] += Attention.MaskedScore;
            TensorPrimitives.Subtract(reference, TensorPrimitives.Max(reference), reference);
            TensorPrimitives.SoftMax(reference, reference);
            var composed = (float[])row.Clone();
            Attention.MaskedSoftmaxComposed(composed, scale, mask);
            // Unmasked scores are rounded as by the multiply alone, and masked probabilities are 0 either way: the same bits.
            AssertBitEqual(reference, composed, $"softmax T={T}");
            for (int s = 0; s < T; s++) if (mask[s] != 0) Assert.Equal(0f, composed[s]);
        }
    }

    [Fact]
    public void FusedMaskedSoftmaxMatchesADoublePrecisionSoftmaxAndTheComposedForm()
    {
        // The Vector512 kernel (single-precision exp within 2 ulps, a float sum over sixteen lanes) against the same scaled,
        // masked and shifted scores exponentiated and summed in double. Measured: within 6e-7 relative of either (rows up to 300 scores);
        // the bound allows 2e-6, far below a wrong shift, a lost tail or a missing term (errors of 1e-3 and more). Masked
        // probabilities must be exactly 0, as the composed form's underflow gives.
        if (!Attention.FusedSoftmax) return; // no Vector512 here: the composed form is what runs
        var rng = new Random(5);
        foreach (int T in new[] { 1, 2, 7, 15, 16, 17, 31, 33, 64, 127, 128, 129, 300 })
            foreach (float spread in new[] { 1f, 30f, 400f })
            {
                var (row, mask) = ScoreRow(rng, T, spread);
                float scale = 1f / MathF.Sqrt(11);
                var shifted = row.Select((x, s) => MathF.FusedMultiplyAdd(x, scale, mask[s])).ToArray();
                float max = shifted.Max();
                var exps = shifted.Select(x => Math.Exp(x - max)).ToArray(); // the shift in float, as both forms do it
                double sum = exps.Sum();
                // In a longer buffer whose next values (the next row's scores) must stay as they are.
                var buffer = row.Concat(Enumerable.Repeat(123f, 17)).ToArray();
                Attention.MaskedSoftmaxFused(buffer.AsSpan(0, T), scale, mask);
                Assert.All(buffer[T..], x => Assert.Equal(123f, x));
                var fused = buffer[..T];
                var composed = (float[])row.Clone();
                Attention.MaskedSoftmaxComposed(composed, scale, mask);
                for (int s = 0; s < T; s++)
                {
                    double expected = exps[s] / sum;
                    string where = $"T={T}, spread {spread}, score {s}";
                    if (mask[s] != 0) { Assert.Equal(0f, fused[s]); continue; }
                    Assert.True(Math.Abs(fused[s] - expected) <= 2e-6 * expected + 1e-37, $"{where}: {fused[s]:R}, in double {expected:R}");
                    Assert.True(Math.Abs(fused[s] - composed[s]) <= 2e-6 * composed[s] + 1e-37, $"{where}: {fused[s]:R}, composed {composed[s]:R}");
                }
                Assert.True(Math.Abs(fused.Sum() - 1.0) <= 1e-5, $"T={T}, spread {spread}: probabilities sum to {fused.Sum():R}");
            }
    }

    [Fact]
    public void ANaNScoreMakesTheWholeSoftmaxRowNaNInBothForms()
    {
        // The training loop's divergence guard must see a NaN forward pass, however the hardware max treats NaN.
        var rng = new Random(6);
        foreach (int T in new[] { 5, 16, 40 })
            foreach (int at in new[] { 0, T / 2, T - 1 })
            {
                var (row, mask) = ScoreRow(rng, T);
                row[at] = float.NaN;
                var composed = (float[])row.Clone();
                Attention.MaskedSoftmaxComposed(composed, 0.25f, mask);
                Assert.All(composed, p => Assert.True(float.IsNaN(p), $"composed T={T}, NaN at {at}"));
                if (!Attention.FusedSoftmax) continue;
                var fused = (float[])row.Clone();
                Attention.MaskedSoftmaxFused(fused, 0.25f, mask);
                Assert.All(fused, p => Assert.True(float.IsNaN(p), $"fused T={T}, NaN at {at}"));
            }
    }

    [Fact]
    public void OnePassSoftmaxBackwardGivesTheBitsOfItsThreePasses()
    {
        var rng = new Random(7);
        foreach (int T in new[] { 1, 7, 8, 9, 15, 16, 17, 33, 64, 128, 129, 300 })
        {
            var p = RandomArray(rng, T); var d = RandomArray(rng, T, 3f);
            float dot = TensorPrimitives.Dot(p, d), scale = 1f / MathF.Sqrt(13);
            var passes = (float[])d.Clone();
            TensorPrimitives.Subtract(passes, dot, passes);
            TensorPrimitives.Multiply(passes, p, passes);
            TensorPrimitives.Multiply(passes, scale, passes);
            var onePass = (float[])d.Clone();
            Attention.SoftmaxBackwardRow(p, onePass, dot, scale);
            AssertBitEqual(passes, onePass, $"softmax backward T={T}");
        }
    }

    /// <summary>A random score row and an additive mask that masks about a third of the positions after the first.</summary>
    private static (float[] Row, float[] Mask) ScoreRow(Random rng, int T, float spread = 30f)
    {
        var row = RandomArray(rng, T, spread);
        var mask = Enumerable.Range(0, T).Select(s => s > 0 && rng.Next(3) == 0 ? Attention.MaskedScore : 0f).ToArray();
        return (row, mask);
    }

    [Fact]
    public void BiasGeluBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(4);
        int rows = 4, cols = 9;
        var y = RandomArray(rng, rows * cols, 3f); var b = RandomArray(rng, cols); var c = RandomArray(rng, rows * cols);
        var u = new float[y.Length]; var g = new float[y.Length];
        double Loss()
        {
            y.CopyTo(u, 0);
            Gelu.BiasForward(u, b, g, rows, cols, 1);
            return Dot(g, c);
        }
        Loss();
        // Backward of the fused pass: dy = gelu'(u)·c, db = Σ_rows dy (what Linear.Backward sums).
        var dy = new float[y.Length];
        Gelu.Backward(u, c, dy);
        var db = new float[cols];
        for (int r = 0; r < rows; r++) TensorPrimitives.Add(db, dy.AsSpan(r * cols, cols), db);
        Check("dy", Loss, y, 0, y.Length, dy, 0, rng, samples: 20);
        Check("db", Loss, b, 0, cols, db, 0, rng);
    }

    [Fact]
    public void BiasResidualLayerNormBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(5);
        int rows = 3, cols = 8;
        var y = RandomArray(rng, rows * cols, 2f); var b = RandomArray(rng, cols); var x = RandomArray(rng, rows * cols);
        var gamma = RandomArray(rng, cols); var beta = RandomArray(rng, cols); var c = RandomArray(rng, rows * cols);
        var mask = new float[rows * cols];
        var gen = new SplitMix64(3);
        Dropout.FillMask(mask, 0.25f, ref gen);
        var r = new float[y.Length]; var output = new float[y.Length]; var mean = new float[rows]; var rstd = new float[rows];
        double Loss()
        {
            y.CopyTo(r, 0);
            LayerNorm.BiasResidualForward(r, b, mask, x, gamma, beta, output, mean, rstd, rows, cols, 1e-5f, 1);
            return Dot(output, c);
        }
        Loss();
        // Backward as BertModel composes it: dr from LayerNorm, dx = dr (residual), dy = mask ⊙ dr, db = Σ_rows dy.
        var dr = new float[y.Length]; var dGamma = new float[cols]; var dBeta = new float[cols];
        LayerNorm.Backward(r, gamma, mean, rstd, c, dr, dGamma, dBeta, rows, cols, new float[2 * cols]);
        var dy = new float[y.Length];
        TensorPrimitives.Multiply(dr, mask, dy);
        var db = new float[cols];
        for (int i = 0; i < rows; i++) TensorPrimitives.Add(db, dy.AsSpan(i * cols, cols), db);
        Check("dy", Loss, y, 0, y.Length, dy, 0, rng, samples: 20);
        Check("db", Loss, b, 0, cols, db, 0, rng);
        Check("dx", Loss, x, 0, x.Length, dr, 0, rng, samples: 20);
        Check("dgamma", Loss, gamma, 0, cols, dGamma, 0, rng);
        Assert.Contains(mask, m => m == 0f); // some units were dropped
    }

    private static void AssertBitEqual(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, the unfused passes give {expected[i]:R}");
    }
}
