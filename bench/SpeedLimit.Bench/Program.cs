using SpeedLimit.Bench;

// speedlimit-bench [section ...] [--json] [--quick] [--help]
// Runs the named sections (all when none is named) and prints their figures.
if (args.Contains(OpenBlas.ProbeArgument)) return OpenBlas.RunProbe(); // child of the gemm section
var sections = BenchSections.All;
if (args.Any(a => a is "--help" or "-h" or "-?"))
{
    // Running every section takes the better part of an hour: a request for help must not start one.
    Console.WriteLine("usage: speedlimit-bench [section ...] [--json] [--quick]");
    Console.WriteLine("Runs the named sections (all of them when none is named) and prints their figures.");
    Console.WriteLine("  --json   one line per headline figure: {\"figure\": ..., \"value\": ..., \"unit\": ...}");
    Console.WriteLine("  --quick  fewer repetitions and shapes, for a smoke run");
    Console.WriteLine("GEMM_<NAME>=value in the environment sets a GEMM driver setting for every section (an A/B of a whole");
    Console.WriteLine($"workload): {GemmKnobs.Names}");
    Console.WriteLine("sections:");
    foreach (var s in sections) Console.WriteLine($"  {s.Name,-18} {s.Description}");
    return 0;
}
var flags = args.Where(a => a.StartsWith('-')).ToList();
var badFlags = flags.Where(f => f is not ("--json" or "--quick")).ToList();
if (badFlags.Count > 0)
{
    Console.Error.WriteLine($"error: unknown option(s) {string.Join(", ", badFlags)}; the options are --json and --quick (see --help)");
    return 2;
}
var json = flags.Contains("--json");
var quick = flags.Contains("--quick");
var names = args.Where(a => !a.StartsWith('-')).ToHashSet(StringComparer.OrdinalIgnoreCase);
var report = new BenchReport(json);
var unknown = names.Where(n => sections.All(s => !s.Name.Equals(n, StringComparison.OrdinalIgnoreCase))).ToList();
if (unknown.Count > 0)
{
    Console.Error.WriteLine($"error: unknown bench section(s) {string.Join(", ", unknown)}; choose from {string.Join(", ", sections.Select(s => s.Name))}");
    return 2;
}
try
{
    GemmKnobs.ApplyEnvironment(); // once, for every section (gemm-ab's variants start from the defaults instead)
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
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
