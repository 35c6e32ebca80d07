using SpeedLimit.Bench;

// speedlimit-bench [section ...] [--json] [--quick]
// Runs the named sections (all when none is named) and prints their figures.
if (args.Contains(OpenBlas.ProbeArgument)) return OpenBlas.RunProbe(); // child of the gemm section
var json = args.Contains("--json");
var quick = args.Contains("--quick");
var names = args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToHashSet(StringComparer.OrdinalIgnoreCase);
var report = new BenchReport(json);
var sections = BenchSections.All;
var unknown = names.Where(n => sections.All(s => !s.Name.Equals(n, StringComparison.OrdinalIgnoreCase))).ToList();
if (unknown.Count > 0)
{
    Console.Error.WriteLine($"error: unknown bench section(s) {string.Join(", ", unknown)}; choose from {string.Join(", ", sections.Select(s => s.Name))}");
    return 2;
}
foreach (var section in sections.Where(s => names.Count == 0 || names.Contains(s.Name)))
{
    report.Section(section.Name, section.Description);
    try
    {
        section.Run(report, quick);
    }
    catch (ArgumentException e) // a bad setting in the environment (GEMM_VARIANTS, GEMM_KC, ...)
    {
        Console.Error.WriteLine($"error: {section.Name}: {e.Message}");
        return 2;
    }
}
return 0;
