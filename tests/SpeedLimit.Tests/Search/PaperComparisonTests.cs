using SpeedLimit.Reporting;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

public class PaperComparisonTests
{
    [Fact]
    public void ComparesWinnersAtMeasuredLatencyAndDrawsBothFigures()
    {
        var results = RunReportTests.Sample();
        long Params(Architecture a) => RunReport.EncoderParameters(a);
        var cmp = PaperComparison.From(results, (a, p) => p == Precision.Int8 ? Params(a) : 4 * Params(a), Params);

        var int8 = results.Searches.Single(s => s.Precision == Precision.Int8);
        var fp32 = results.Searches.Single(s => s.Precision == Precision.Fp32);
        int compared = 0, atOrAbove = 0;
        var ratios = new List<double>();
        foreach (var bound in int8.Definition.BoundsMs)
        {
            var row = cmp.Rows.Single(r => r.BoundMs == bound);
            var a = int8.Bounds.Single(b => b.BoundMs == bound).Winner;
            var b = fp32.Bounds.Single(x => x.BoundMs == bound).Winner;
            bool aIn = a is { MeasuredMs: { } ma } && ma <= bound, bIn = b is { MeasuredMs: { } mb } && mb <= bound;
            Assert.Equal(aIn ? a!.Arch : null, row.Int8Search?.Arch);
            Assert.Equal(bIn ? b!.Arch : null, row.Fp32Search?.Arch);
            if (aIn && bIn)
            {
                compared++;
                if (a!.Metric >= b!.Metric) atOrAbove++;
                ratios.Add(4.0 * Params(b.Arch) / Params(a.Arch));
            }
            // best uniform int8 within the bound
            var uniform = results.Baselines.Single(x => x.Precision == Precision.Int8).Entries.Where(e => e.Candidate.MeasuredMs <= bound).MaxBy(e => e.Candidate.Metric);
            Assert.Equal(uniform?.Candidate.Arch, row.UniformInt8?.Arch);
        }
        Assert.True(compared > 0, "the sample should have bounds where both searches found a model");
        Assert.Equal(compared, cmp.BoundsCompared);
        Assert.Equal(atOrAbove, cmp.Int8AtOrAbove);
        Assert.Equal(ratios.Average(), cmp.MeanSizeRatio!.Value, 9);
        Assert.Null(cmp.TeacherFp32); // the sample has no teacher series

        var md = cmp.Markdown();
        Assert.Contains($"at {atOrAbove} of {compared} bounds", md);
        var dir = SearchTestData.TempPath("cmp");
        Directory.CreateDirectory(dir);
        try
        {
            cmp.SavePlots(Path.Combine(dir, "a.png"), Path.Combine(dir, "s.png"));
            foreach (var f in new[] { "a.png", "s.png" })
                Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(Path.Combine(dir, f))[..4]);
        }
        finally { Directory.Delete(dir, true); }
    }
}
