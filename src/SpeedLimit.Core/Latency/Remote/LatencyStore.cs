using System.Text;
using System.Text.Json;

namespace SpeedLimit.Latency.Remote;

/// <summary>One finished measurement in the server's journal (<c>measurements.jsonl</c>): what was measured, once.</summary>
/// <param name="Id">The request's content key (<see cref="RemoteProtocol.Key"/>).</param>
/// <param name="Bound">The bound the request was judged against, if any (finalists and verification).</param>
internal sealed record JournalEntry(string Id, DateTimeOffset FinishedAt, double Seconds, string Protocol, string? Bound, IReadOnlyList<RemoteModel> Models);

/// <summary>A stored result: the request and the records it got.</summary>
internal sealed record StoredResult(RemoteMeasureRequest Request, IReadOnlyList<LatencyRecord> Records);

/// <summary>
/// The server's folder: <c>models/SHA256.onnx</c> (uploads, checked before they are kept),
/// <c>results/KEY.json</c> (one per finished measurement, written atomically before it is answered),
/// <c>measurements.jsonl</c> (the journal, a line per measurement taken) and <c>uploads/</c> (uploads in
/// progress, cleared at start). It survives a restart: a retried or resumed request is answered from it.
/// </summary>
internal sealed class LatencyStore
{
    public string Folder { get; }
    private readonly object _journalGate = new();

    public LatencyStore(string folder)
    {
        Folder = Path.GetFullPath(folder);
        try
        {
            foreach (var sub in new[] { "models", "results", "uploads" }) Directory.CreateDirectory(Path.Combine(Folder, sub));
            foreach (var stale in Directory.GetFiles(UploadsFolder)) File.Delete(stale);
        }
        catch (UnauthorizedAccessException)
        {
            throw new UserInputException($"cannot write the server store '{Folder}': permission denied; choose a writable --store");
        }
    }

    private string UploadsFolder => Path.Combine(Folder, "uploads");

    public string JournalPath => Path.Combine(Folder, "measurements.jsonl");

    public string ModelPath(string sha256) => Path.Combine(Folder, "models", sha256 + ".onnx");

    public bool HasModel(string sha256) => File.Exists(ModelPath(sha256));

    /// <summary>A fresh file name for an upload in progress.</summary>
    public string NewUploadPath() => Path.Combine(UploadsFolder, $"{Guid.NewGuid():N}.part");

    /// <summary>Keeps a checked upload under its hash.</summary>
    public void CommitModel(string uploadPath, string sha256) => File.Move(uploadPath, ModelPath(sha256), overwrite: true);

    public int ModelCount => Directory.GetFiles(Path.Combine(Folder, "models"), "*.onnx").Length;

    private string ResultPath(string key) => Path.Combine(Folder, "results", key + ".json");

    /// <summary>The records of a finished measurement, or null when the request was never measured here.</summary>
    public IReadOnlyList<LatencyRecord>? TryLoadResult(string key)
    {
        var path = ResultPath(key);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<StoredResult>(File.ReadAllText(path), RemoteProtocol.Json)?.Records;
        }
        catch (JsonException)
        {
            return null; // unreadable (written by another version): measured again
        }
    }

    /// <summary>Writes the result (atomically), then its journal line.</summary>
    public void SaveResult(string key, RemoteMeasureRequest request, IReadOnlyList<LatencyRecord> records, double seconds)
    {
        AtomicFile.WriteAllText(ResultPath(key), JsonSerializer.Serialize(new StoredResult(request, records), RemoteProtocol.Json));
        var bound = request.Settings.Bound?.ToString();
        var entry = new JournalEntry(key, DateTimeOffset.UtcNow, Math.Round(seconds, 3), request.Settings.Protocol.Name, bound, request.Models);
        var line = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(entry, RemoteProtocol.JournalJson) + "\n");
        lock (_journalGate)
        {
            using var stream = new FileStream(JournalPath, FileMode.Append, FileAccess.Write, FileShare.Read);
            stream.Write(line);
            stream.Flush(flushToDisk: true);
        }
    }

    /// <summary>Every measurement a store's servers took, in order (a partial last line from a kill is skipped).</summary>
    public static IReadOnlyList<JournalEntry> ReadJournal(string folder)
    {
        var path = Path.Combine(folder, "measurements.jsonl");
        if (!File.Exists(path)) return [];
        var lines = File.ReadAllText(path).Split('\n');
        var entries = new List<JournalEntry>();
        for (int i = 0; i < lines.Length - 1; i++)
            if (lines[i].Trim().Length > 0)
                entries.Add(JsonSerializer.Deserialize<JournalEntry>(lines[i], RemoteProtocol.JournalJson)
                    ?? throw new InvalidDataException($"{path}:{i + 1}: empty journal line"));
        return entries;
    }
}
