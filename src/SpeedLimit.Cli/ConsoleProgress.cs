using Spectre.Console;
using SpeedLimit.Pipeline;

namespace SpeedLimit.Cli;

/// <summary>
/// Progress for long jobs: live Spectre bars on a terminal, plain throttled lines when output goes to a file,
/// a pipe or CI. Spectre's live displays refuse to run two at once in one process (they throw), so they are
/// started only on a terminal, never where commands run side by side in one process (the tests).
/// </summary>
internal static class ConsoleProgress
{
    /// <summary>Seconds between two plain progress lines of the same stage.</summary>
    private const double LineSeconds = 5;

    /// <summary>Whether <paramref name="console"/> should draw live bars: Spectre calls it interactive and its stream is a terminal.</summary>
    public static bool IsLive(IAnsiConsole console, bool writesToStandardError = false) =>
        console.Profile.Capabilities.Interactive && !(writesToStandardError ? Console.IsErrorRedirected : Console.IsOutputRedirected);

    /// <summary>Runs <paramref name="work"/> with a bar that <paramref name="read"/> moves from each report: steps done, steps in all, a message.</summary>
    public static void Run<T>(string label, Func<T, (double Done, double Total, string Message)> read, Action<IProgress<T>> work)
    {
        var console = AnsiConsole.Console;
        if (!IsLive(console))
        {
            work(Lines<T>(console, p => { var (done, total, message) = read(p); return (label, done, total, message); }));
            return;
        }
        console.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var bar = ctx.AddTask(label);
                work(new SyncProgress<T>(p =>
                {
                    var (done, total, message) = read(p);
                    bar.MaxValue = Math.Max(1, total);
                    bar.Value = Math.Min(done, bar.MaxValue);
                    bar.Description = Markup.Escape(message);
                }));
            });
    }

    /// <summary>Runs a job with no steps to count: a spinner on a terminal, one line otherwise.</summary>
    public static T Status<T>(string message, Func<T> work)
    {
        var console = AnsiConsole.Console;
        if (IsLive(console)) return console.Status().Start(message, _ => work());
        console.WriteLine(message);
        return work();
    }

    /// <summary>
    /// Plain progress lines: one whenever the stage changes or a stage ends, and at most one every
    /// <see cref="LineSeconds"/> seconds within a stage, as "[stage] done/total: message".
    /// </summary>
    public static IProgress<T> Lines<T>(IAnsiConsole console, Func<T, (string Stage, double Done, double Total, string Message)> read)
    {
        string? stage = null;
        var last = DateTime.MinValue;
        return new SyncProgress<T>(p =>
        {
            var (name, done, total, message) = read(p);
            if (name == stage && (DateTime.UtcNow - last).TotalSeconds < LineSeconds && done < total) return;
            stage = name;
            last = DateTime.UtcNow;
            console.WriteLine($"[{name}] {done:0.##}/{total:0.##}: {message}");
        });
    }
}
