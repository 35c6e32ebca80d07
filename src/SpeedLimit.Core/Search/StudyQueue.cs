using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

/// <summary>A candidate a worker holds: its lease is (worker, attempt) and stays alive while it heartbeats.</summary>
public sealed record ClaimedCandidate(long StudyId, string StudyName, Architecture Arch, int Seed, int Attempt, string Worker,
    double LeaseSeconds, string? ReclaimedFrom);

/// <summary>One row of a study's candidate queue.</summary>
/// <param name="State">queued, running or done.</param>
/// <param name="HeartbeatAgeSeconds">Seconds since the holder's last heartbeat (running rows), on the database clock.</param>
public sealed record QueueEntry(Architecture Arch, int Seq, int Seed, string State, string? Worker, double? ClaimedAgeSeconds,
    double? HeartbeatAgeSeconds, int Attempts, double? Metric, double? EvaluationSeconds, double? WallSeconds,
    DateTimeOffset? StartedAt, DateTimeOffset? FinishedAt);

/// <summary>Who coordinates a study and how fresh its heartbeat is.</summary>
public sealed record CoordinatorInfo(string Owner, double SinceAgeSeconds, double HeartbeatAgeSeconds, double LeaseSeconds)
{
    public bool Alive => HeartbeatAgeSeconds <= LeaseSeconds;
}

/// <summary>A study's progress as <c>speedlimit study status</c> shows it.</summary>
/// <param name="DeadLeases">Running entries whose holder stopped heartbeating (they go back to the queue at the next claim).</param>
/// <param name="Redone">Entries claimed more than once (a lease expired and another worker took them over).</param>
public sealed record StudyStatus(string Name, string Kind, int Candidates, int Queued, int Running, int Done, int DeadLeases, int Redone,
    double? LeaseSeconds, CoordinatorInfo? Coordinator, IReadOnlyList<QueueEntry> RunningEntries);

public sealed partial class StudyStore
{
    public const string Queued = "queued", Running = "running", Done = "done";

    private string Now => _dialect.NowSql;

    // ---- published work package ---------------------------------------------------------

    /// <summary>Publishes (or replaces) what workers need to evaluate a study's candidates, and their lease length.</summary>
    internal void PublishPackage(long studyId, string specJson, double leaseSeconds)
    {
        using var tx = _connection.BeginTransaction();
        using var cmd = Command($"""
            INSERT INTO packages(study_id, spec, lease_seconds, published_at) VALUES (@s, @spec, @lease, {Now})
            ON CONFLICT (study_id) DO UPDATE SET spec = excluded.spec, lease_seconds = excluded.lease_seconds, published_at = excluded.published_at
            """, tx, ("s", studyId), ("spec", specJson), ("lease", leaseSeconds));
        cmd.ExecuteNonQuery();
        tx.Commit();
    }

    /// <summary>The published package of a study (null when its coordinator has not published one).</summary>
    public string? LoadPackage(long studyId)
    {
        using var cmd = Command("SELECT spec FROM packages WHERE study_id = @s", null, ("s", studyId));
        return cmd.ExecuteScalar() as string;
    }

    /// <summary>
    /// Stores a file by content: in the database, or, with <paramref name="sharedFolder"/>, as
    /// <c>SHA256.bin</c> in a folder every worker can read (the database then holds only its path).
    /// Returns the lowercase hex SHA-256.
    /// </summary>
    public string PutBlob(string file, string? sharedFolder = null)
    {
        string sha;
        using (var stream = File.OpenRead(file)) sha = Convert.ToHexStringLower(SHA256.HashData(stream));
        long size = new FileInfo(file).Length;
        using (var check = Command("SELECT COUNT(*) FROM blobs WHERE sha256 = @h", null, ("h", sha)))
            if (Convert.ToInt64(check.ExecuteScalar(), CultureInfo.InvariantCulture) > 0) return sha;
        object? data = null;
        string? path = null;
        if (sharedFolder is null) data = File.ReadAllBytes(file);
        else
        {
            Directory.CreateDirectory(sharedFolder);
            path = System.IO.Path.GetFullPath(System.IO.Path.Combine(sharedFolder, sha + ".bin"));
            if (!File.Exists(path))
            {
                var temp = path + $".tmp-{Environment.ProcessId}";
                File.Copy(file, temp, overwrite: true);
                File.Move(temp, path, overwrite: true);
            }
        }
        using var tx = _connection.BeginTransaction();
        using var cmd = Command("INSERT INTO blobs(sha256, size_bytes, data, path) VALUES (@h, @n, @d, @p) ON CONFLICT (sha256) DO NOTHING", tx,
            ("h", sha), ("n", size), ("d", data), ("p", path));
        cmd.ExecuteNonQuery();
        tx.Commit();
        return sha;
    }

    /// <summary>
    /// Writes a published blob to <paramref name="destination"/> (atomically) after checking its
    /// SHA-256; a clear error when it is missing, unreadable or corrupt.
    /// </summary>
    public void GetBlob(string sha256, string destination)
    {
        byte[]? data;
        string? path;
        using (var cmd = Command("SELECT data, path FROM blobs WHERE sha256 = @h", null, ("h", sha256)))
        using (var reader = cmd.ExecuteReader())
        {
            if (!reader.Read()) throw new InvalidDataException($"the study store '{Path}' has no published file {sha256}; restart the coordinator so it publishes its files again");
            data = reader.IsDBNull(0) ? null : (byte[])reader.GetValue(0);
            path = reader.IsDBNull(1) ? null : reader.GetString(1);
        }
        if (data is null)
        {
            if (path is null) throw new InvalidDataException($"published file {sha256} in '{Path}' has neither data nor a path");
            try { data = File.ReadAllBytes(path); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new UserInputException($"this worker cannot read the published file '{path}' ({ex.Message}); mount the coordinator's shared folder at the same path on every worker machine, or let the coordinator publish into the database (no --publish-dir)", ex);
            }
        }
        var actual = Convert.ToHexStringLower(SHA256.HashData(data));
        if (actual != sha256)
            throw new InvalidDataException($"published file {path ?? sha256} has SHA-256 {actual}, the coordinator published {sha256}; the shared copy is damaged or was replaced: restart the coordinator to publish it again");
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(destination));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var temp = destination + $".tmp-{Environment.ProcessId}";
        File.WriteAllBytes(temp, data);
        File.Move(temp, destination, overwrite: true);
    }

    // ---- coordinator lease --------------------------------------------------------------

    /// <summary>
    /// Makes <paramref name="owner"/> the study's one coordinator, or refuses when another one's
    /// lease is alive (its heartbeat younger than its lease). Atomic in both databases.
    /// </summary>
    internal void AcquireCoordinator(long studyId, string studyName, string owner, double leaseSeconds)
    {
        int taken;
        using (var tx = _connection.BeginTransaction())
        {
            using var cmd = Command($"""
                INSERT INTO coordinators(study_id, owner, since, heartbeat_at, lease_seconds) VALUES (@s, @o, {Now}, {Now}, @l)
                ON CONFLICT (study_id) DO UPDATE SET owner = excluded.owner, since = excluded.since, heartbeat_at = excluded.heartbeat_at, lease_seconds = excluded.lease_seconds
                WHERE coordinators.owner = @o OR coordinators.heartbeat_at < {Now} - coordinators.lease_seconds
                """, tx, ("s", studyId), ("o", owner), ("l", leaseSeconds));
            taken = cmd.ExecuteNonQuery();
            tx.Commit();
        }
        if (taken == 1) return;
        var other = Coordinator(studyId);
        throw new UserInputException(other is null
            ? $"study '{studyName}' in '{Path}' is being taken over by another coordinator; run one coordinator per study"
            : string.Format(CultureInfo.InvariantCulture,
                "study '{0}' in '{1}' already has a coordinator ({2}, started {3:0} s ago, last heartbeat {4:0.0} s ago); run one coordinator per study: stop that one, or wait {5:0} s after it died, then resume",
                studyName, Path, other.Owner, other.SinceAgeSeconds, other.HeartbeatAgeSeconds, other.LeaseSeconds));
    }

    /// <summary>Renews the coordinator's lease; false when another coordinator has taken the study over.</summary>
    internal bool CoordinatorHeartbeat(long studyId, string owner)
    {
        using var cmd = Command($"UPDATE coordinators SET heartbeat_at = {Now} WHERE study_id = @s AND owner = @o", null, ("s", studyId), ("o", owner));
        return cmd.ExecuteNonQuery() == 1;
    }

    internal void ReleaseCoordinator(long studyId, string owner)
    {
        using var cmd = Command("DELETE FROM coordinators WHERE study_id = @s AND owner = @o", null, ("s", studyId), ("o", owner));
        cmd.ExecuteNonQuery();
    }

    internal CoordinatorInfo? Coordinator(long studyId)
    {
        using var cmd = Command($"SELECT owner, {Now} - since, {Now} - heartbeat_at, lease_seconds FROM coordinators WHERE study_id = @s", null, ("s", studyId));
        using var reader = cmd.ExecuteReader();
        return reader.Read() ? new CoordinatorInfo(reader.GetString(0), reader.GetDouble(1), reader.GetDouble(2), reader.GetDouble(3)) : null;
    }

    // ---- the queue ----------------------------------------------------------------------

    /// <summary>Adds candidates to a study's queue in the given order; ones already queued (or done) are left as they are.</summary>
    internal void Enqueue(long studyId, IReadOnlyList<(Architecture Arch, int Seed)> items)
    {
        if (items.Count == 0) return;
        using var tx = _connection.BeginTransaction();
        int next;
        using (var cmd = Command("SELECT COALESCE(MAX(seq), -1) + 1 FROM queue WHERE study_id = @s", tx, ("s", studyId)))
            next = Convert.ToInt32(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
        foreach (var (arch, seed) in items)
        {
            using var cmd = Command($"""
                INSERT INTO queue(study_id, layers, hidden, ffn, seq, seed, state, enqueued_at, attempts)
                VALUES (@s, @e, @h, @f, @q, @seed, '{Queued}', {Now}, 0)
                ON CONFLICT (study_id, layers, hidden, ffn) DO NOTHING
                """, tx, ("s", studyId), ("e", arch.Layers), ("h", arch.Hidden), ("f", arch.Ffn), ("q", next), ("seed", seed));
            if (cmd.ExecuteNonQuery() == 1) next++;
        }
        tx.Commit();
    }

    /// <summary>
    /// Claims the oldest queued candidate (of one study, or of any study with a published package),
    /// or a running one whose lease went stale: the dead worker's candidate goes to this one. In
    /// PostgreSQL <c>FOR UPDATE SKIP LOCKED</c> lets many workers claim at once without waiting on
    /// each other; SQLite's single writer serializes the claim. Null when nothing is claimable.
    /// </summary>
    public ClaimedCandidate? Claim(string worker, long? studyId = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(worker);
        using var tx = _connection.BeginTransaction();
        long sid;
        Architecture arch;
        int seed, attempts;
        double lease;
        string name, state;
        string? previous;
        using (var cmd = Command($"""
            SELECT q.study_id, q.layers, q.hidden, q.ffn, q.seed, q.attempts, p.lease_seconds, s.name, q.state, q.worker
            FROM queue q JOIN packages p ON p.study_id = q.study_id JOIN studies s ON s.id = q.study_id
            WHERE (q.state = '{Queued}' OR (q.state = '{Running}' AND q.heartbeat_at < {Now} - p.lease_seconds))
              AND (@any = 1 OR q.study_id = @s)
            ORDER BY q.seq, q.study_id
            LIMIT 1{_dialect.LockSkipLocked}
            """, tx, ("any", studyId is null ? 1 : 0), ("s", studyId ?? 0L)))
        using (var reader = cmd.ExecuteReader())
        {
            if (!reader.Read()) return null;
            sid = reader.GetInt64(0);
            arch = new Architecture(reader.GetInt32(1), reader.GetInt32(2), reader.GetInt32(3));
            seed = reader.GetInt32(4);
            attempts = reader.GetInt32(5);
            lease = reader.GetDouble(6);
            name = reader.GetString(7);
            state = reader.GetString(8);
            previous = reader.IsDBNull(9) ? null : reader.GetString(9);
        }
        using (var cmd = Command($"""
            UPDATE queue SET state = '{Running}', worker = @w, claimed_at = {Now}, heartbeat_at = {Now}, attempts = attempts + 1
            WHERE study_id = @s AND layers = @e AND hidden = @h AND ffn = @f AND attempts = @a
            """, tx, ("w", worker), ("s", sid), ("e", arch.Layers), ("h", arch.Hidden), ("f", arch.Ffn), ("a", attempts)))
            if (cmd.ExecuteNonQuery() != 1) return null;
        tx.Commit();
        return new ClaimedCandidate(sid, name, arch, seed, attempts + 1, worker, lease, state == Running ? previous : null);
    }

    /// <summary>Keeps a claim's lease alive; false when the lease was lost (it expired and another worker took the candidate).</summary>
    public bool Heartbeat(ClaimedCandidate c)
    {
        using var cmd = Command($"""
            UPDATE queue SET heartbeat_at = {Now}
            WHERE study_id = @s AND layers = @e AND hidden = @h AND ffn = @f AND state = '{Running}' AND worker = @w AND attempts = @a
            """, null, Key(c));
        return cmd.ExecuteNonQuery() == 1;
    }

    /// <summary>
    /// Commits a claimed candidate's result in one transaction; false (and nothing written) when the
    /// lease was lost, so a candidate is never counted twice.
    /// </summary>
    public bool Complete(ClaimedCandidate c, CandidateResult result, double wallSeconds, DateTimeOffset startedAt, DateTimeOffset finishedAt)
    {
        ArgumentNullException.ThrowIfNull(result);
        if (result.Arch != c.Arch) throw new InvalidOperationException($"a result for {result.Arch} cannot complete the claim on {c.Arch}");
        if (!double.IsFinite(result.Metric)) throw new InvalidOperationException($"the candidate evaluator returned a non-finite metric ({result.Metric}) for {c.Arch}");
        using var tx = _connection.BeginTransaction();
        var key = Key(c);
        using var cmd = Command($"""
            UPDATE queue SET state = '{Done}', metric = @metric, eval_seconds = @es, wall_seconds = @ws, started_at = @st, finished_at = @ft, heartbeat_at = {Now}
            WHERE study_id = @s AND layers = @e AND hidden = @h AND ffn = @f AND state = '{Running}' AND worker = @w AND attempts = @a
            """, tx, [.. key, ("metric", result.Metric), ("es", result.SecondsSpent), ("ws", wallSeconds), ("st", FormatTime(startedAt)), ("ft", FormatTime(finishedAt))]);
        if (cmd.ExecuteNonQuery() != 1) return false;
        tx.Commit();
        return true;
    }

    /// <summary>Puts a claimed candidate back in the queue (a worker stopping cleanly).</summary>
    public void Release(ClaimedCandidate c)
    {
        using var cmd = Command($"""
            UPDATE queue SET state = '{Queued}', worker = NULL, claimed_at = NULL, heartbeat_at = NULL
            WHERE study_id = @s AND layers = @e AND hidden = @h AND ffn = @f AND state = '{Running}' AND worker = @w AND attempts = @a
            """, null, Key(c));
        cmd.ExecuteNonQuery();
    }

    /// <summary>Every queue entry of a study, in queue order.</summary>
    public IReadOnlyList<QueueEntry> QueueEntries(long studyId)
    {
        using var cmd = Command($"""
            SELECT layers, hidden, ffn, seq, seed, state, worker, {Now} - claimed_at, {Now} - heartbeat_at, attempts,
                   metric, eval_seconds, wall_seconds, started_at, finished_at
            FROM queue WHERE study_id = @s ORDER BY seq
            """, null, ("s", studyId));
        using var reader = cmd.ExecuteReader();
        var list = new List<QueueEntry>();
        while (reader.Read())
            list.Add(new QueueEntry(new Architecture(reader.GetInt32(0), reader.GetInt32(1), reader.GetInt32(2)), reader.GetInt32(3), reader.GetInt32(4),
                reader.GetString(5), reader.IsDBNull(6) ? null : reader.GetString(6), NullableDouble(reader, 7), NullableDouble(reader, 8), reader.GetInt32(9),
                NullableDouble(reader, 10), NullableDouble(reader, 11), NullableDouble(reader, 12),
                reader.IsDBNull(13) ? null : ParseTime(reader.GetString(13)), reader.IsDBNull(14) ? null : ParseTime(reader.GetString(14))));
        return list;
    }

    /// <summary>Done / running (by whom, since when) / queued / dead leases of every study in the store.</summary>
    public IReadOnlyList<StudyStatus> Status()
    {
        var list = new List<StudyStatus>();
        foreach (var info in Studies())
        {
            var row = Require(info.Name, null);
            double? lease;
            using (var cmd = Command("SELECT lease_seconds FROM packages WHERE study_id = @s", null, ("s", row.Id)))
                lease = cmd.ExecuteScalar() is double d ? d : null;
            var entries = QueueEntries(row.Id);
            var running = entries.Where(e => e.State == Running).ToList();
            int dead = lease is double l ? running.Count(e => e.HeartbeatAgeSeconds > l) : 0;
            list.Add(new StudyStatus(info.Name, info.Kind, info.Candidates, entries.Count(e => e.State == Queued), running.Count,
                entries.Count(e => e.State == Done), dead, entries.Count(e => e.Attempts > 1), lease, Coordinator(row.Id), running));
        }
        return list;
    }

    private static (string, object?)[] Key(ClaimedCandidate c) =>
        [("s", c.StudyId), ("e", c.Arch.Layers), ("h", c.Arch.Hidden), ("f", c.Arch.Ffn), ("w", c.Worker), ("a", c.Attempt)];

    private static double? NullableDouble(DbDataReader reader, int i) => reader.IsDBNull(i) ? null : reader.GetDouble(i);
}
