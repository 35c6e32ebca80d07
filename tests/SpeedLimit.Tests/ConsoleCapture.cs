using System.Runtime.CompilerServices;
using System.Text;

namespace SpeedLimit.Tests;

/// <summary>
/// Captures what a command writes to the console while other tests write at the same time. Console.SetOut is
/// process-wide, so a test that swapped the writer also caught (and lost) other tests' lines, and a test that
/// restored it could undo another's swap. Instead, the console is routed once, before anything writes to it, and
/// each capture takes what is written from its own flow of execution (threads and tasks it starts included).
/// </summary>
internal static class ConsoleCapture
{
    private static readonly AsyncLocal<TextWriter?> CapturedOut = new(), CapturedError = new();

    [ModuleInitializer]
    internal static void RouteConsole()
    {
        Console.SetOut(new Router(Console.Out, CapturedOut));
        Console.SetError(new Router(Console.Error, CapturedError));
    }

    /// <summary>Runs <paramref name="body"/> and returns its result with what it wrote to standard output and standard error.</summary>
    public static (T Result, string Out, string Err) Run<T>(Func<T> body)
    {
        var (output, error) = (new StringWriter(), new StringWriter());
        CapturedOut.Value = output;
        CapturedError.Value = error;
        try
        {
            var result = body();
            return (result, Read(output), Read(error));
        }
        finally
        {
            // A value set in a synchronous method stays set in this flow after it returns: clear it.
            CapturedOut.Value = null;
            CapturedError.Value = null;
        }
    }

    private static string Read(StringWriter writer) { lock (writer) return writer.ToString(); }

    /// <summary>Sends each write to the current flow's capture if it has one, else to the real stream.</summary>
    private sealed class Router(TextWriter real, AsyncLocal<TextWriter?> captured) : TextWriter
    {
        public override Encoding Encoding => real.Encoding;

        private void To(Action<TextWriter> write)
        {
            if (captured.Value is { } target) { lock (target) write(target); }
            else lock (real) write(real);
        }

        public override void Write(char value) => To(w => w.Write(value));
        public override void Write(string? value) => To(w => w.Write(value));
        public override void Write(char[] buffer, int index, int count) => To(w => w.Write(buffer, index, count));
        public override void Write(ReadOnlySpan<char> buffer) { var copy = buffer.ToString(); To(w => w.Write(copy)); }
        public override void WriteLine() => To(w => w.WriteLine());
        public override void WriteLine(string? value) => To(w => w.WriteLine(value));
        public override void Flush() => To(w => w.Flush());
    }
}
