namespace SpeedLimit.Tests.Data;

/// <summary>Finds <c>shared/data</c> (GLUE, vocab, corpora) by walking up from the test assembly folder.</summary>
public static class SharedData
{
    private static readonly Lazy<string?> s_root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "data");
            if (Directory.Exists(candidate)) return candidate;
        }
        return null;
    });

    /// <summary>The shared data folder, or null when absent (tests using it are skipped).</summary>
    public static string? Root => s_root.Value;

    public static string Combine(params string[] parts) =>
        Path.Combine([Root ?? throw new InvalidOperationException("shared/data not found"), .. parts]);

    public static string Glue(string task) => Combine("glue", task);
    public static string BertVocab => Combine("vocab", "bert-base-uncased", "vocab.txt");

    public const string SkipReason = "shared/data not found in any folder above the test assembly; these tests read the GLUE TSVs, the BERT vocab and corpora from it";
}

/// <summary>A fact that is skipped, with a visible reason, when shared/data is absent (xunit 2 has no dynamic skip).</summary>
public sealed class SharedDataFactAttribute : FactAttribute
{
    public SharedDataFactAttribute()
    {
        if (SharedData.Root is null) Skip = SharedData.SkipReason;
    }
}

/// <summary>Theory counterpart of <see cref="SharedDataFactAttribute"/>.</summary>
public sealed class SharedDataTheoryAttribute : TheoryAttribute
{
    public SharedDataTheoryAttribute()
    {
        if (SharedData.Root is null) Skip = SharedData.SkipReason;
    }
}

/// <summary>A temporary folder deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"sl-data-{Guid.NewGuid():N}");
    public string File(string name, string content)
    {
        var p = System.IO.Path.Combine(Path, name);
        System.IO.File.WriteAllText(p, content);
        return p;
    }
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
