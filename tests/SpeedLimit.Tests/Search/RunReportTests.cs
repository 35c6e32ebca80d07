using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Reporting;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Search;

public class RunReportTests : IDisposable
{
    private readonly string _root = SearchTestData.TempPath("runs");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>An int8 search, an fp32 search (latency 1.75× int8 − offset, as in the paper) and int8/fp32 baselines.</summary>
    public static RunResults Sample()
    {
        var int8 = new LinearPredictor();
        var fp32 = new LinearPredictor(scale: 1.75);
        var bounds = new[] { 1.5, 2.5, 3.5 };
        var int8Search = new EvolutionarySearch(int8, new SmoothEvaluator(), new FakeMeasurer(int8, a => a.Layers == 3 ? 1.25 : 1.0)) { Label = "int8 search (SpeedLimit)" }
            .Run(SearchTestData.Definition(bounds));
        var fp32Def = new SearchDefinition("fake", Precision.Fp32, SearchSpace.Demo, bounds, 7, "fake budget", new SearchOptions { Generations = 4, CandidatesPerGeneration = 6 });
        var fp32Search = new EvolutionarySearch(fp32, new SmoothEvaluator(), new FakeMeasurer(fp32)) { Label = "fp32 search (AutoTinyBERT-style)" }.Run(fp32Def);
        BaselineArchitecture[] uniform = [new("L1-H64", new Architecture(1, 64, 256)), new("L2-H96", new Architecture(2, 96, 256)), new("L4-H128", new Architecture(4, 128, 256))];
        var int8Base = new EvolutionarySearch(int8, new SmoothEvaluator(), new FakeMeasurer(int8)).EvaluateBaselines(new BaselineDefinition("fake", Precision.Int8, uniform, 7, "fake budget"));
        var fp32Base = new EvolutionarySearch(fp32, new SmoothEvaluator(), new FakeMeasurer(fp32)).EvaluateBaselines(new BaselineDefinition("fake", Precision.Fp32, uniform, 7, "fake budget"));
        return new RunResults("SpeedLimit test run", DateTimeOffset.UnixEpoch, [int8Search, fp32Search], [int8Base, fp32Base]);
    }

    [Fact]
    public void WritesARunFolderWhoseResultsRoundTrip()
    {
        var results = Sample();
        var folder = Path.Combine(_root, "run1");
        RunReport.Write(folder, results);

        Assert.Equal(new[] { RunReport.PlotFile, RunReport.ReportFile, RunReport.ResultsFile }, Directory.GetFiles(folder).Select(Path.GetFileName).Order());
        Assert.Equal([folder], Directory.GetDirectories(_root)); // no temporary folder left beside it

        var png = File.ReadAllBytes(Path.Combine(folder, RunReport.PlotFile));
        Assert.True(png.Length > 10_000, $"plot is only {png.Length} bytes");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);

        var back = RunResults.Load(Path.Combine(folder, RunReport.ResultsFile));
        Assert.Equal(results.ToJson(), back.ToJson());
        Assert.Equal(results.Searches[0].Bounds[1].Winner, back.Searches[0].Bounds[1].Winner);
        Assert.Equal(results.Searches[1].Candidates, back.Searches[1].Candidates);
        Assert.Equal(Precision.Fp32, back.Searches[1].Precision);
        Assert.Equal(results.Searches[0].Definition.ToJson(), back.Searches[0].Definition.ToJson());

        var md = File.ReadAllText(Path.Combine(folder, RunReport.ReportFile));
        Assert.Contains("## int8 search (SpeedLimit)", md);
        Assert.Contains("## fp32 search (AutoTinyBERT-style)", md);
        Assert.Contains("## fp32 baselines", md);
        Assert.Contains($"({RunReport.PlotFile})", md);
        foreach (var b in results.Searches[0].Bounds) Assert.Contains(b.Winner!.Arch.ToString(), md);
        Assert.Contains("## At each bound", md);
    }

    [Fact]
    public void RunFolderTextHasNoByteOrderMark()
    {
        var folder = Path.Combine(_root, "bom");
        RunReport.Write(folder, Sample());
        Assert.Equal(["report.md", "results.json"], StrictText.CheckFolder(folder).Order());
    }

    [Fact]
    public void AnExistingRunFolderIsKeptUnlessOverwriteIsAsked()
    {
        var results = Sample();
        var folder = Path.Combine(_root, "run");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "keep.txt"), "x");
        var ex = Assert.Throws<UserInputException>(() => RunReport.Write(folder, results));
        Assert.Contains("already exists", ex.Message);
        Assert.True(File.Exists(Path.Combine(folder, "keep.txt")));

        RunReport.Write(folder, results, overwrite: true);
        Assert.False(File.Exists(Path.Combine(folder, "keep.txt")));
        Assert.True(File.Exists(Path.Combine(folder, RunReport.ResultsFile)));
        Assert.Equal([folder], Directory.GetDirectories(_root));
    }

    [Fact]
    public void EncoderParameterCountMatchesTheLayerShapes()
    {
        // One layer of BERT-base: Q,K,V,O 4·(768·768+768), FFN 768·3072+3072 + 3072·768+768, two LayerNorms 4·768.
        long bertBaseLayer = 4 * (768L * 768 + 768) + (768L * 3072 + 3072) + (3072L * 768 + 768) + 4 * 768;
        Assert.Equal(12 * bertBaseLayer, RunReport.EncoderParameters(new Architecture(12, 768, 3072)));
    }

    [Fact]
    public void ABrokenResultsFileIsAClearError()
    {
        Directory.CreateDirectory(_root);
        var path = Path.Combine(_root, "results.json");
        File.WriteAllText(path, "{ \"title\": 3, ");
        var ex = Assert.Throws<InvalidDataException>(() => RunResults.Load(path));
        Assert.Contains("not a SpeedLimit results file", ex.Message);
    }
}
