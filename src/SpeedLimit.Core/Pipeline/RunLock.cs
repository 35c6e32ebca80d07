using System.Diagnostics;
using System.Text;

namespace SpeedLimit.Pipeline;

/// <summary>
/// One run per output folder: a lock file beside it (<c>.NAME.lock</c>), held open with an exclusive
/// lock for the whole run and deleted on release. The OS drops the lock when a process dies, so a
/// killed run never blocks the next one; the PID written inside catches file systems where locking
/// is disabled (then a live PID still refuses the second run).
/// </summary>
internal sealed class RunLock : IDisposable
{
    private readonly FileStream _stream;
    private readonly string _path;

    private RunLock(FileStream stream, string path, int? stalePid)
    {
        _stream = stream;
        _path = path;
        StalePid = stalePid;
    }

    /// <summary>The PID of a run that died holding the lock, when this run took it over.</summary>
    public int? StalePid { get; }

    public static string PathFor(string output)
    {
        var full = Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar);
        return Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.lock");
    }

    /// <summary>Takes the lock of <paramref name="output"/>, or throws <see cref="UserInputException"/> when another run holds it.</summary>
    public static RunLock Acquire(string output)
    {
        var path = PathFor(output);
        var refused = $"another run is writing '{output}' (lock '{path}' is held); wait for it to finish, or choose another --output";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        }
        catch (UnauthorizedAccessException)
        {
            throw new UserInputException($"cannot create the folder of '{output}': permission denied; choose a writable --output");
        }
        catch (IOException ex) // e.g. a file where a folder of the path should be
        {
            throw new UserInputException($"cannot create the folder of '{output}' ({ex.Message}); choose another --output");
        }
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (UnauthorizedAccessException)
        {
            throw new UserInputException($"cannot write in the folder of '{output}': permission denied; choose a writable --output");
        }
        catch (IOException ex) when (IsHeldElsewhere(ex))
        {
            throw new UserInputException(refused);
        }
        catch (IOException ex) // a file system that cannot hold the lock file: /proc, read-only, full
        {
            throw new UserInputException($"cannot create the run lock '{path}' for '{output}' ({ex.Message}); choose an --output on a writable file system");
        }
        int? stale = null;
        var previous = ReadPid(stream);
        if (previous is int pid && pid != Environment.ProcessId)
        {
            if (IsRunning(pid)) { stream.Dispose(); throw new UserInputException(refused + $" (process {pid})"); }
            stale = pid;
        }
        stream.SetLength(0);
        stream.Write(Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        stream.Flush(flushToDisk: true);
        return new RunLock(stream, path, stale);
    }

    /// <summary>
    /// Whether opening the lock file failed because another process holds it: the lock call's EWOULDBLOCK (11 on Linux,
    /// 35 on macOS) or Windows' sharing violation (32), not a file that cannot be created at all.
    /// </summary>
    private static bool IsHeldElsewhere(IOException ex) =>
        ex is not (FileNotFoundException or DirectoryNotFoundException) && (ex.HResult is 11 or 35 || (ex.HResult & 0xFFFF) == 32);

    private static int? ReadPid(FileStream stream)
    {
        if (stream.Length is 0 or > 32) return null;
        var bytes = new byte[stream.Length];
        stream.Position = 0;
        stream.ReadExactly(bytes);
        return int.TryParse(Encoding.ASCII.GetString(bytes).Trim(), out var pid) ? pid : null;
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    public void Dispose()
    {
        // Delete while still holding it, so no other run can open the old file in between.
        try { File.Delete(_path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        _stream.Dispose();
    }
}
