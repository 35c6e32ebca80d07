namespace SpeedLimit.Data;

/// <summary>One entry point for "a task by name": the built-in task or a GLUE folder, plus the encoder that goes with it.</summary>
public static class TaskCatalog
{
    public const string BertVocabRelativePath = "vocab/bert-base-uncased/vocab.txt";

    public static IReadOnlyList<string> Names => [BuiltinTask.Name, .. GlueTasks.Names];

    /// <summary>
    /// <c>builtin</c> → <see cref="BuiltinTask.Generate"/> with <paramref name="seed"/>; a GLUE name →
    /// <see cref="GlueTasks.Load"/> on <paramref name="dataDir"/> (required then).
    /// </summary>
    public static TaskDataset Load(string task, string? dataDir, int seed = 1234)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(task);
        if (string.Equals(task, BuiltinTask.Name, StringComparison.OrdinalIgnoreCase))
            return BuiltinTask.Generate(new BuiltinTaskOptions { Seed = seed });
        if (!GlueTasks.TryNormalize(task, out var glue))
            throw new UserInputException($"unknown task '{task}'; use one of {string.Join(", ", Names)} (or read your own files with the tabular reader)");
        if (string.IsNullOrWhiteSpace(dataDir))
            throw new UserInputException($"task '{glue}' reads GLUE files; pass the folder holding its train.tsv (e.g. --data-dir glue/SST-2)");
        return GlueTasks.Load(glue, dataDir, new GlueLoadOptions { Seed = seed });
    }

    /// <summary>
    /// The task's own encoder when it has one; otherwise WordPiece from <paramref name="vocabPath"/>,
    /// or, when that is null, a bert-base-uncased vocab found by walking up from <paramref name="searchFrom"/>
    /// (looking for <c>vocab/bert-base-uncased/vocab.txt</c>, also under <c>data/</c> and <c>shared/data/</c>).
    /// </summary>
    public static ITextEncoder EncoderFor(TaskDataset task, string? vocabPath, params string?[] searchFrom)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (task.BuiltinEncoder is not null && vocabPath is null) return task.BuiltinEncoder;
        vocabPath ??= FindBertVocab(searchFrom)
            ?? throw new UserInputException($"task '{task.Name}' needs a WordPiece vocabulary; pass --vocab path/to/vocab.txt (bert-base-uncased's)");
        return BertTextEncoder.FromVocabFile(vocabPath);
    }

    /// <summary>Walks up from each start folder; null when nothing is found.</summary>
    public static string? FindBertVocab(IEnumerable<string?> startDirs)
    {
        foreach (var start in startDirs)
        {
            if (string.IsNullOrWhiteSpace(start) || !Directory.Exists(start)) continue;
            for (var dir = new DirectoryInfo(Path.GetFullPath(start)); dir is not null; dir = dir.Parent)
                foreach (var prefix in new[] { "", "data", Path.Combine("shared", "data") })
                {
                    var candidate = Path.Combine(dir.FullName, prefix, BertVocabRelativePath);
                    if (File.Exists(candidate)) return candidate;
                }
        }
        return null;
    }
}
