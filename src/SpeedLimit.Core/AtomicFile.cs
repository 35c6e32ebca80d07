using System.Text;

namespace SpeedLimit;

/// <summary>
/// The one way results are written: into a hidden temp file beside the target, flushed, then
/// renamed over it, so a reader (or a crash) never sees a half-written file. Text is UTF-8
/// without a BOM: JSON parsers such as Python's json.load and Node's JSON.parse reject one.
/// </summary>
public static class AtomicFile
{
    public static readonly Encoding Utf8NoBom = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);

    public static void WriteAllText(string path, string text) =>
        Write(path, stream =>
        {
            var bytes = Utf8NoBom.GetBytes(text);
            stream.Write(bytes);
        });

    /// <summary>Writes through <paramref name="write"/> into a temp file and renames it to <paramref name="path"/>; the target folder must exist.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"cannot write '{path}': folder '{dir}' does not exist; create it or choose another output");
        var tmp = TempPathFor(full);
        try
        {
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch (UnauthorizedAccessException ex)
        {
            TryDelete(tmp);
            throw new UserInputException($"cannot write '{path}': permission denied; choose a writable output", ex);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    /// <summary>For writers that insist on a path (e.g. image libraries): they write <c>tmp</c>, which is then renamed. The extension is kept.</summary>
    public static void WriteVia(string path, Action<string> writeToPath)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileNameWithoutExtension(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp{Path.GetExtension(full)}");
        try
        {
            writeToPath(tmp);
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            TryDelete(tmp);
        }
    }

    private static string TempPathFor(string full) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    private static void TryDelete(string path)
    {
        try { if (File.Exists(path)) File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
