using System.Globalization;
using System.Text.Json;

namespace SpeedLimit.Bench;

/// <summary>A group of related measurements the bench can run by name.</summary>
public interface IBenchSection
{
    string Name { get; }
    string Description { get; }
    /// <param name="quick">Fewer repetitions and shapes, for a smoke run.</param>
    void Run(BenchReport report, bool quick);
}

/// <summary>Every section the bench knows, in the order they run.</summary>
public static class BenchSections
{
    // Found by reflection so a new section is one new file, no registry to edit.
    public static IReadOnlyList<IBenchSection> All { get; } = typeof(IBenchSection).Assembly.GetTypes()
        .Where(t => typeof(IBenchSection).IsAssignableFrom(t) && t is { IsInterface: false, IsAbstract: false })
        .Select(t => (IBenchSection)Activator.CreateInstance(t)!)
        .OrderBy(s => s.Name, StringComparer.Ordinal)
        .ToList();
}

/// <summary>
/// Prints figures as readable text, or with --json one line per headline figure:
/// {"figure": "...", "value": 1.23, "unit": "..."}.
/// </summary>
public sealed class BenchReport(bool json)
{
    public bool Json { get; } = json;

    public void Section(string name, string description)
    {
        if (!Json) Console.WriteLine($"\n== {name}: {description}");
    }

    /// <summary>A free-text line (omitted in JSON mode).</summary>
    public void Note(string text)
    {
        if (!Json) Console.WriteLine(text);
    }

    /// <summary>A headline figure.</summary>
    public void Figure(string figure, double value, string unit)
    {
        if (Json)
            Console.WriteLine(JsonSerializer.Serialize(new { figure, value = Math.Round(value, 4), unit }));
        else
            Console.WriteLine($"  {figure,-60} {value.ToString("0.###", CultureInfo.InvariantCulture),12} {unit}");
    }
}

/// <summary>Timing helpers: medians over repeated runs.</summary>
public static class Timing
{
    public static double Median(IList<double> xs)
    {
        var s = xs.OrderBy(x => x).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    /// <summary>
    /// Median seconds of one run of <paramref name="a"/> and of <paramref name="b"/>, timed alternately (a, b, a, b …) after one
    /// untimed run each, so both see the same phases of a shared machine.
    /// </summary>
    public static (double A, double B) Interleaved(Action a, Action b, int runs)
    {
        a(); b();
        var ta = new double[runs]; var tb = new double[runs];
        for (int r = 0; r < runs; r++)
        {
            ta[r] = MedianSeconds(a, 0, 1);
            tb[r] = MedianSeconds(b, 0, 1);
        }
        return (Median(ta), Median(tb));
    }

    /// <summary>Seconds of one run of <paramref name="action"/>, wall clock.</summary>
    public static double Seconds(Action action)
    {
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        action();
        return System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>Runs <paramref name="action"/> <paramref name="warmup"/> times untimed, then returns the median seconds of <paramref name="runs"/> timed runs.</summary>
    public static double MedianSeconds(Action action, int warmup, int runs)
    {
        for (int i = 0; i < warmup; i++) action();
        var times = new double[runs];
        for (int i = 0; i < runs; i++) times[i] = Seconds(action);
        return Median(times);
    }
}
