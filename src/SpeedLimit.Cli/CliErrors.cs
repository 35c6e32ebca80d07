namespace SpeedLimit.Cli;

/// <summary>Turns user errors into one line on stderr and a non-zero exit code.</summary>
public static class CliErrors
{
    public const int UserErrorExitCode = 2;

    public static bool IsUserError(Exception ex) =>
        ex is UserInputException or ArgumentException or FileNotFoundException or DirectoryNotFoundException
            or InvalidDataException or UnauthorizedAccessException or IOException or FormatException;

    public static int Report(Exception ex)
    {
        Console.Error.WriteLine($"error: {ex.Message}");
        return UserErrorExitCode;
    }

    /// <summary>Runs a command body, mapping user errors to exit code 2 (System.CommandLine would otherwise print a stack trace).</summary>
    public static int Guard(Func<int> body)
    {
        try { return body(); }
        catch (Exception ex) when (IsUserError(ex)) { return Report(ex); }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("error: cancelled before the end; what was finished is kept — rerun the same command with --resume to continue");
            return 130;
        }
    }
}
