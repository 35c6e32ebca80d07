using System.Diagnostics;
using SpeedLimit.Cli;

namespace SpeedLimit.Tests.Cli;

/// <summary>Runs the real `speedlimit` executable in a child process, as a user's shell would.</summary>
public static class CliProcess
{
    public sealed record Outcome(int ExitCode, string StdOut, string StdErr);

    /// <param name="quickStart">Tiered JIT for runs that fail in their checks: starts 2–3× faster; the project's
    /// runtimeconfig turns tiering off for compute-bound runs.</param>
    public static ProcessStartInfo StartInfo(string workingDirectory, IEnumerable<string> args, bool quickStart = false)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            WorkingDirectory = workingDirectory, UseShellExecute = false,
        };
        if (quickStart) start.Environment["DOTNET_TieredCompilation"] = "1";
        start.ArgumentList.Add(typeof(Program).Assembly.Location);
        foreach (var a in args) start.ArgumentList.Add(a);
        return start;
    }

    /// <summary>Runs to completion (bounded by <paramref name="timeout"/>) and returns exit code and both streams.</summary>
    public static Outcome Run(string workingDirectory, IEnumerable<string> args, TimeSpan? timeout = null, bool quickStart = false)
    {
        using var child = Process.Start(StartInfo(workingDirectory, args, quickStart))!;
        child.StandardInput.Close();
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEndAsync();
        if (!child.WaitForExit(timeout ?? TimeSpan.FromMinutes(3)))
        {
            child.Kill(entireProcessTree: true);
            throw new TimeoutException($"speedlimit {string.Join(' ', args)} did not finish in time");
        }
        return new Outcome(child.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Sends a POSIX signal (e.g. "TERM", "INT") to a process through kill(1).</summary>
    public static void Signal(Process process, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { $"-{signal}", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) } })!;
        kill.WaitForExit();
    }

    /// <summary>Every file and folder under <paramref name="root"/>, relative, sorted.</summary>
    public static string[] Listing(string root) =>
        Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(root, p)).Order(StringComparer.Ordinal).ToArray();
}
