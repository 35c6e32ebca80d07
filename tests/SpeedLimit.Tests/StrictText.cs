using System.Text;
using System.Text.Json;

namespace SpeedLimit.Tests;

/// <summary>
/// Reads run-folder text the way strict consumers do (Python's json.load, Node's JSON.parse): a
/// UTF-8 byte-order mark, invalid UTF-8 or malformed JSON is an error.
/// </summary>
public static class StrictText
{
    private static readonly UTF8Encoding s_strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static string Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF)
            throw new InvalidDataException($"{Path.GetFileName(path)} starts with a UTF-8 byte-order mark; JSON parsers reject it");
        return s_strict.GetString(bytes);
    }

    public static JsonDocument ParseJson(string path) =>
        JsonDocument.Parse(Read(path), new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow });

    /// <summary>Every text file of a folder (JSON, JSONL, Markdown, vocabulary) read strictly; JSON and JSONL parsed. Returns the files checked.</summary>
    public static List<string> CheckFolder(string folder)
    {
        var checkedFiles = new List<string>();
        foreach (var path in Directory.GetFiles(folder))
        {
            var ext = Path.GetExtension(path);
            if (ext is ".json") ParseJson(path).Dispose();
            else if (ext is ".jsonl")
            {
                foreach (var line in Read(path).Split('\n', StringSplitOptions.RemoveEmptyEntries)) JsonDocument.Parse(line).Dispose();
            }
            else if (ext is ".md" or ".txt") Read(path);
            else continue;
            checkedFiles.Add(Path.GetFileName(path));
        }
        return checkedFiles;
    }
}
