using System.Runtime.InteropServices;

namespace SpeedLimit.Cli;

/// <summary>
/// Turns SIGINT (Ctrl-C) and SIGTERM (kill, a scheduler's stop) into a cancellation the run
/// honours at its next safe point, instead of an abrupt exit: work already committed stays
/// resumable and the run lock is released. Unregisters on dispose.
/// </summary>
public sealed class CancelOnSignals : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly PosixSignalRegistration _interrupt;
    private readonly PosixSignalRegistration _terminate;

    public CancelOnSignals()
    {
        _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        _terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
    }

    public CancellationToken Token => _source.Token;

    /// <summary>The signal that cancelled the run, if one did.</summary>
    public PosixSignal? Received { get; private set; }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true; // keep the process alive until the run has stopped cleanly
        Received = context.Signal;
        Console.Error.WriteLine($"{context.Signal}: stopping at the next safe point…");
        _source.Cancel();
    }

    public void Dispose()
    {
        _interrupt.Dispose();
        _terminate.Dispose();
        _source.Dispose();
    }
}
