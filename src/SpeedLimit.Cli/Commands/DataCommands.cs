using System.CommandLine;

namespace SpeedLimit.Cli.Commands;

/// <summary>CLI commands of this group; they only parse and render.</summary>
public static class DataCommands
{
    public static IEnumerable<Command> Create()
    {
        yield break;
    }
}
