using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SpeedLimit.Latency;

/// <summary>
/// The profiler's dataset: one <see cref="LatencyRecord"/> per JSONL line. Each record is appended
/// with a single write and flushed, so a killed profiler leaves at most one partial last line,
/// which <see cref="Load"/> ignores; a rerun skips what is already there and carries on.
/// </summary>
public static class LatencyDataset
{
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public static string ToLine(LatencyRecord record) => JsonSerializer.Serialize(record, JsonOptions);

    /// <summary>Appends one record as one line (one write call, flushed to disk).</summary>
    public static void Append(string path, LatencyRecord record)
    {
        var bytes = Encoding.UTF8.GetBytes(ToLine(record) + "\n");
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        RepairTrailingPartialLine(path);
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>
    /// Reads every complete record. A final line without a newline (a write cut short) is skipped;
    /// a malformed complete line is an error naming the file and line.
    /// </summary>
    public static List<LatencyRecord> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"latency dataset '{path}' does not exist; create one with 'speedlimit profile'");
        var text = File.ReadAllText(path, Encoding.UTF8);
        var records = new List<LatencyRecord>();
        var lines = text.Split('\n');
        // The last element is "" when the file ends with a newline, else a partial line.
        for (int i = 0; i < lines.Length - 1; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0) continue;
            try
            {
                var record = JsonSerializer.Deserialize<LatencyRecord>(line, JsonOptions) ?? throw new JsonException("null record");
                if (Problem(record) is { } problem) throw new JsonException(problem);
                records.Add(record);
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"{path}:{i + 1}: not a latency record ({ex.Message}); remove or fix that line");
            }
        }
        return records;
    }

    /// <summary>What makes a parsed record unusable (a latency that is not a positive number, an impossible shape), or null.</summary>
    private static string? Problem(LatencyRecord r)
    {
        if (r.Layers < 1 || r.Hidden < 1 || r.Ffn < 1 || r.Heads < 1) return $"architecture {r.Arch} with {r.Heads} heads has a dimension below 1";
        if (r.Batch < 1 || r.SequenceLength < 1 || r.Threads < 1 || r.Runs < 1) return "batch, sequence length, threads and runs must be at least 1";
        foreach (var (name, ms) in new[] { ("medianMs", r.MedianMs), ("p90Ms", r.P90Ms), ("trimmedMeanMs", r.TrimmedMeanMs), ("minMs", r.MinMs) })
            if (!double.IsFinite(ms) || ms <= 0) return $"{name} {ms} is not a positive number of milliseconds";
        if (string.IsNullOrWhiteSpace(r.CpuModel) || string.IsNullOrWhiteSpace(r.RuntimeVersion)) return "the device (cpuModel, runtimeVersion) is missing";
        return null;
    }

    /// <summary>Cuts a partial last line left by a killed writer so the next append starts on a fresh line.</summary>
    private static void RepairTrailingPartialLine(string path)
    {
        if (!File.Exists(path)) return;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        if (stream.Length == 0) return;
        stream.Seek(-1, SeekOrigin.End);
        if (stream.ReadByte() == '\n') return;
        // Scan back to the last newline and truncate after it.
        long pos = stream.Length - 1;
        var one = new byte[1];
        while (pos > 0)
        {
            stream.Seek(pos - 1, SeekOrigin.Begin);
            stream.ReadExactly(one);
            if (one[0] == '\n') break;
            pos--;
        }
        stream.SetLength(pos);
    }
}
