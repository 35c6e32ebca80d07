using Spectre.Console;
using SpeedLimit.Pipeline;

namespace SpeedLimit.Cli;

/// <summary>One Spectre progress bar (stage, bar, percentage, time left) around a long single-stage job.</summary>
internal static class ConsoleProgress
{
    /// <summary>Runs <paramref name="work"/> with a bar that <paramref name="read"/> moves from each report: steps done, steps in all, a message.</summary>
    public static void Run<T>(string label, Func<T, (double Done, double Total, string Message)> read, Action<IProgress<T>> work)
    {
        AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
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
}
