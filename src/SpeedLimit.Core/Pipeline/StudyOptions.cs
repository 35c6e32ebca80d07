using SpeedLimit.Search;

namespace SpeedLimit.Pipeline;

/// <summary>
/// Where a run keeps its study and whether workers help (docs/scale-out.md). By default the
/// study is a SQLite file in the run's work folder and this process evaluates every candidate.
/// With a <see cref="Location"/> (a PostgreSQL connection string, or a SQLite file shared by
/// processes of one machine) the run is its studies' coordinator: it publishes what workers need,
/// enqueues each generation's candidates and waits for workers (and itself) to evaluate them.
/// None of this changes the results, so it is not part of the resume fingerprint.
/// </summary>
public sealed record StudyOptions
{
    /// <summary>The study store: a PostgreSQL connection string or a file path; null: study.db in the work folder.</summary>
    public string? Location { get; init; }
    /// <summary>Prefix of the run's study names in a shared store (default: the output folder's name), e.g. NAME/search-int8.</summary>
    public string? Name { get; init; }
    /// <summary>A folder every worker can read, to publish the supermodel and task into instead of the database.</summary>
    public string? PublishFolder { get; init; }
    /// <summary>A worker (or coordinator) silent for this long is dead and its candidate goes back to the queue.</summary>
    public double LeaseSeconds { get; init; } = 60;
    /// <summary>The coordinator evaluates queued candidates itself while it waits for workers.</summary>
    public bool EvaluateLocally { get; init; } = true;

    /// <summary>True when the run coordinates workers (an explicit store was given).</summary>
    public bool Coordinates => Location is not null;

    public void Validate()
    {
        if (Location is not null && string.IsNullOrWhiteSpace(Location)) throw new ArgumentException("--study is empty; give a PostgreSQL connection string or a file path");
        if (Name is { } n && (string.IsNullOrWhiteSpace(n) || n.Contains('\n'))) throw new ArgumentException($"--study-name '{n}' must be a non-empty single line");
        if (!(LeaseSeconds >= 1) || !double.IsFinite(LeaseSeconds)) throw new ArgumentException($"--lease-seconds {LeaseSeconds} must be at least 1 second");
        if (!EvaluateLocally && Location is null) throw new ArgumentException("--no-local-evaluation needs --study (workers can only join a study store they can reach)");
        if (PublishFolder is not null && Location is null) throw new ArgumentException("--publish-dir needs --study: it is where workers read the published supermodel");
    }

    /// <summary>The study name of one of the run's studies (e.g. search-int8) in this store.</summary>
    public string StudyName(string study, string outputFolder) =>
        Location is null ? study : $"{Name ?? Path.GetFileName(Path.GetFullPath(outputFolder).TrimEnd(Path.DirectorySeparatorChar))}/{study}";

    internal CandidateQueueOptions QueueOptions() => new() { LeaseSeconds = LeaseSeconds, EvaluateLocally = EvaluateLocally };
}
