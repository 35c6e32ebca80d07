using System.Text;

namespace SpeedLimit.Data;

/// <summary>
/// Tab-separated lines exactly as GLUE ships them: split on TAB with no quote handling (many
/// fields start with <c>"</c>), UTF-8 with an optional BOM, LF or CRLF endings. Every line must
/// have the same number of fields; errors name the file and the 1-based line.
/// </summary>
internal static class TsvFile
{
    /// <summary>Reads all lines as field arrays, with their 1-based line numbers. Fails on a missing or empty file.</summary>
    public static List<(int Line, string[] Fields)> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"data file '{path}' does not exist; check the data directory and file name", path);
        var rows = new List<(int, string[])>();
        using var reader = new StreamReader(path, new UTF8Encoding(false, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: true);
        int lineNo = 0;
        try
        {
            while (reader.ReadLine() is { } line)
            {
                lineNo++;
                // A final empty line is only the trailing newline; empty lines elsewhere are kept and caught by the field check.
                rows.Add((lineNo, line.Split('\t')));
            }
        }
        catch (DecoderFallbackException ex)
        {
            throw new InvalidDataException($"{path}:{lineNo + 1}: not valid UTF-8 ({ex.Message}); re-save the file as UTF-8");
        }
        while (rows.Count > 0 && rows[^1].Item2 is [""]) rows.RemoveAt(rows.Count - 1);
        if (rows.Count == 0) throw new InvalidDataException($"{path}: the file is empty; expected tab-separated examples");
        return rows;
    }

    public static void RequireFieldCount(string path, int line, string[] fields, int expected)
    {
        if (fields.Length != expected)
            throw new InvalidDataException($"{path}:{line}: expected {expected} tab-separated fields, found {fields.Length}; the file is malformed or not in the expected layout");
    }
}
