using System.CommandLine;
using SpeedLimit.Cli.Commands;

namespace SpeedLimit.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args);

    /// <summary>Parses and runs one command line; user errors become one line on stderr and exit code 2.</summary>
    public static int Run(string[] args)
    {
        var root = BuildRoot();
        try
        {
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0)
            {
                // One line naming the problem and where the usage is, instead of the whole help text.
                var names = new List<string>();
                for (var c = parse.CommandResult; c is not null; c = c.Parent as System.CommandLine.Parsing.CommandResult)
                    names.Insert(0, c.Command.Name);
                names[0] = "speedlimit";
                var problems = string.Join("; ", parse.Errors.Select(e => e.Message.TrimEnd('.')));
                Console.Error.WriteLine($"error: {problems}; see '{string.Join(' ', names)} --help'");
                return CliErrors.UserErrorExitCode;
            }
            return parse.Invoke();
        }
        catch (Exception ex) when (CliErrors.IsUserError(ex))
        {
            return CliErrors.Report(ex);
        }
    }

    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("SpeedLimit: find the most accurate int8 BERT-style encoder that meets a latency bound on this machine.");
        foreach (var command in SearchCommands.Create()) root.Subcommands.Add(command);
        foreach (var command in DataCommands.Create()) root.Subcommands.Add(command);
        foreach (var command in DeployCommands.Create()) root.Subcommands.Add(command);
        foreach (var command in LatencyCommands.Create()) root.Subcommands.Add(command);
        foreach (var command in TrainCommands.Create()) root.Subcommands.Add(command);
        foreach (var command in CompareCommands.Create()) root.Subcommands.Add(command);
        foreach (var command in PretrainedCommands.Create()) root.Subcommands.Add(command);
        foreach (var command in StudyCommands.Create()) root.Subcommands.Add(command);
        return root;
    }
}
