namespace SpeedLimit;

/// <summary>
/// A problem with what the user gave (a file, a flag, a constraint) rather than a bug. The CLI
/// prints its message as one line and exits non-zero, without a stack trace. The message names
/// the problem and the fix.
/// </summary>
public class UserInputException(string message, Exception? inner = null) : Exception(message, inner);
