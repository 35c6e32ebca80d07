using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using SpeedLimit.Latency;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

/// <summary>A study's row in the store.</summary>
public sealed record StudyInfo(string Name, string Kind, string DefinitionJson, DateTimeOffset CreatedAt, int Candidates);

/// <summary>
/// The study store: studies (a search or a baseline set, with its definition as JSON) and every
/// finished candidate, committed as it completes, in one of two databases with one schema: a SQLite
/// file (the default; WAL journaling, one process) or PostgreSQL (a connection string; shared by a
/// coordinator and workers on many machines, see <c>docs/scale-out.md</c>). One transaction per
/// write means a process killed mid-write leaves the last committed state; a search resumes from
/// it without evaluating any finished candidate again. The candidate queue, leases and published
/// work packages are in <c>StudyQueue.cs</c>.
/// </summary>
public sealed partial class StudyStore : IDisposable
{
    public const string SearchKind = "search";
    public const string BaselinesKind = "baselines";
    /// <summary>1: studies, predictions, candidates. 2: + queue, packages, blobs, coordinators (scale-out).</summary>
    internal const int SchemaVersion = 2;

    private readonly DbConnection _connection;
    private readonly StudyDialect _dialect;

    private StudyStore(StudyDialect dialect, DbConnection connection)
    {
        _dialect = dialect;
        _connection = connection;
    }

    /// <summary>Where the store is, as shown to users (a file path, or the PostgreSQL server without its password).</summary>
    public string Path => _dialect.Display;

    /// <summary>The string that opens this store again (another connection, a worker).</summary>
    public string Location => _dialect.Location;

    /// <summary>True for a PostgreSQL store (workers on other machines can share it).</summary>
    public bool IsShared => _dialect.IsShared;

    /// <summary>True when <paramref name="location"/> is a PostgreSQL connection string rather than a file path.</summary>
    public static bool IsConnectionString(string location) => StudyDialect.IsPostgres(location);

    /// <summary>Opens (creating when absent) a study store: a SQLite file path, or a PostgreSQL connection string.</summary>
    public static StudyStore Open(string location)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(location);
        var dialect = StudyDialect.For(location);
        DbConnection? connection = null;
        try
        {
            connection = dialect.Open();
            var version = dialect.ReadSchemaVersion(connection);
            if (version > SchemaVersion)
                throw new InvalidDataException($"study store '{dialect.Display}' has schema version {version}, newer than this program's {SchemaVersion}; use the speedlimit version that created it (or a newer one)");
            if (version < SchemaVersion) CreateSchema(dialect, connection);
            return new StudyStore(dialect, connection);
        }
        catch (Exception ex) when (dialect.Explain(ex) is { } explained)
        {
            connection?.Dispose();
            throw explained;
        }
        catch
        {
            connection?.Dispose();
            throw;
        }
    }

    private static void CreateSchema(StudyDialect d, DbConnection connection)
    {
        using var tx = connection.BeginTransaction();
        d.LockSchema(connection, tx);
        string id = d.IdColumn, real = d.Real, big = d.BigInt, blob = d.Blob;
        foreach (var sql in new[]
        {
            $"""
            CREATE TABLE IF NOT EXISTS studies(
                id {id},
                name TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                definition TEXT NOT NULL,
                margin {real},
                created_at TEXT NOT NULL)
            """,
            $"""
            CREATE TABLE IF NOT EXISTS predictions(
                study_id {big} NOT NULL REFERENCES studies(id),
                idx INTEGER NOT NULL,
                predicted_ms {real} NOT NULL,
                PRIMARY KEY(study_id, idx))
            """,
            $"""
            CREATE TABLE IF NOT EXISTS candidates(
                study_id {big} NOT NULL REFERENCES studies(id),
                layers INTEGER NOT NULL, hidden INTEGER NOT NULL, ffn INTEGER NOT NULL,
                ord INTEGER NOT NULL,
                task TEXT NOT NULL, "precision" TEXT NOT NULL, budget TEXT NOT NULL, seed INTEGER NOT NULL,
                metric {real} NOT NULL, predicted_ms {real},
                eval_seconds {real} NOT NULL, wall_seconds {real} NOT NULL,
                started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
                measured_ms {real}, measurement TEXT, measure_seconds {real},
                PRIMARY KEY(study_id, layers, hidden, ffn))
            """,
            // The candidate queue: one row per architecture a coordinator asked for; a worker's lease
            // is (worker, attempts) with a heartbeat on the database clock.
            $"""
            CREATE TABLE IF NOT EXISTS queue(
                study_id {big} NOT NULL REFERENCES studies(id),
                layers INTEGER NOT NULL, hidden INTEGER NOT NULL, ffn INTEGER NOT NULL,
                seq INTEGER NOT NULL, seed INTEGER NOT NULL,
                state TEXT NOT NULL,
                enqueued_at {real} NOT NULL,
                worker TEXT, claimed_at {real}, heartbeat_at {real},
                attempts INTEGER NOT NULL,
                metric {real}, eval_seconds {real}, wall_seconds {real},
                started_at TEXT, finished_at TEXT,
                PRIMARY KEY(study_id, layers, hidden, ffn))
            """,
            "CREATE INDEX IF NOT EXISTS queue_state ON queue(state, seq)",
            $"""
            CREATE TABLE IF NOT EXISTS packages(
                study_id {big} PRIMARY KEY REFERENCES studies(id),
                spec TEXT NOT NULL,
                lease_seconds {real} NOT NULL,
                published_at {real} NOT NULL)
            """,
            $"""
            CREATE TABLE IF NOT EXISTS blobs(
                sha256 TEXT PRIMARY KEY,
                size_bytes {big} NOT NULL,
                data {blob},
                path TEXT)
            """,
            $"""
            CREATE TABLE IF NOT EXISTS coordinators(
                study_id {big} PRIMARY KEY REFERENCES studies(id),
                owner TEXT NOT NULL,
                since {real} NOT NULL,
                heartbeat_at {real} NOT NULL,
                lease_seconds {real} NOT NULL)
            """,
        })
            Exec(connection, sql, tx);
        d.WriteSchemaVersion(connection, tx, SchemaVersion);
        tx.Commit();
    }

    public void Dispose() => _connection.Dispose();

    public IReadOnlyList<StudyInfo> Studies()
    {
        using var cmd = Command("SELECT s.name, s.kind, s.definition, s.created_at, (SELECT COUNT(*) FROM candidates c WHERE c.study_id = s.id) FROM studies s ORDER BY s.id");
        using var reader = cmd.ExecuteReader();
        var list = new List<StudyInfo>();
        while (reader.Read())
            list.Add(new StudyInfo(reader.GetString(0), reader.GetString(1), reader.GetString(2), ParseTime(reader.GetString(3)), Convert.ToInt32(reader.GetValue(4), CultureInfo.InvariantCulture)));
        return list;
    }

    public bool Exists(string name) => Find(name) is not null;

    /// <summary>The stored definition of a search study (to resume it without restating its settings).</summary>
    public SearchDefinition LoadSearchDefinition(string name) => SearchDefinition.FromJson(Require(name, SearchKind).DefinitionJson);

    public BaselineDefinition LoadBaselineDefinition(string name) => BaselineDefinition.FromJson(Require(name, BaselinesKind).DefinitionJson);

    /// <summary>Every finished candidate of a study, in completion order.</summary>
    public IReadOnlyList<CandidateRecord> Candidates(string name) => LoadCandidates(Require(name, null).Id);

    // ---- used by the search -------------------------------------------------------------

    internal sealed record StudyRow(long Id, string Name, string Kind, string DefinitionJson, double? Margin);

    internal StudyRow Require(string name, string? kind)
    {
        var row = Find(name) ?? throw new UserInputException($"study '{name}' does not exist in '{Path}'; known studies: {KnownNames()}");
        if (kind is not null && row.Kind != kind)
            throw new UserInputException($"study '{name}' in '{Path}' is a {row.Kind} study, not a {kind} study");
        return row;
    }

    /// <summary>Checks that a stored study was created with exactly this definition.</summary>
    internal static void RequireSameDefinition(StudyRow row, string givenJson, string storePath)
    {
        if (row.DefinitionJson == givenJson) return;
        var diffs = SearchJson.Differences(row.DefinitionJson, givenJson);
        var shown = string.Join("; ", diffs.Take(4)) + (diffs.Count > 4 ? $"; and {diffs.Count - 4} more" : "");
        throw new UserInputException($"study '{row.Name}' in '{storePath}' was created with different settings ({shown}); resume it with its stored settings or start a new study name");
    }

    /// <summary>Creates a study together with its narrowing predictions in one transaction.</summary>
    internal StudyRow Create(string name, string kind, string definitionJson, double? margin, IReadOnlyList<double>? predictionsMs)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (Find(name) is not null)
            throw new UserInputException($"study '{name}' already exists in '{Path}'; resume it, or choose another study name");
        using var tx = _connection.BeginTransaction();
        long id;
        using (var cmd = Command("INSERT INTO studies(name, kind, definition, margin, created_at) VALUES (@n, @k, @d, @m, @t) RETURNING id", tx,
            ("n", name), ("k", kind), ("d", definitionJson), ("m", margin), ("t", FormatTime(DateTimeOffset.UtcNow))))
            id = Convert.ToInt64(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
        if (predictionsMs is not null)
        {
            // Many rows per statement: one round trip per few hundred predictions on a remote server.
            const int chunk = 500;
            for (int start = 0; start < predictionsMs.Count; start += chunk)
            {
                int n = Math.Min(chunk, predictionsMs.Count - start);
                using var cmd = _connection.CreateCommand();
                cmd.Transaction = tx;
                var sql = new System.Text.StringBuilder("INSERT INTO predictions(study_id, idx, predicted_ms) VALUES ");
                AddParameter(cmd, "s", id);
                for (int k = 0; k < n; k++)
                {
                    if (k > 0) sql.Append(", ");
                    sql.Append(CultureInfo.InvariantCulture, $"(@s, {start + k}, @p{k})");
                    AddParameter(cmd, $"p{k}", predictionsMs[start + k]);
                }
                cmd.CommandText = sql.ToString();
                cmd.ExecuteNonQuery();
            }
        }
        tx.Commit();
        return new StudyRow(id, name, kind, definitionJson, margin);
    }

    internal double[] LoadPredictions(long studyId, int expectedCount)
    {
        var result = new double[expectedCount];
        int n = 0;
        using var cmd = Command("SELECT idx, predicted_ms FROM predictions WHERE study_id = @s ORDER BY idx", null, ("s", studyId));
        using var reader = cmd.ExecuteReader();
        while (reader.Read())
        {
            var idx = reader.GetInt32(0);
            if (idx != n || idx >= expectedCount) throw new InvalidDataException($"study store '{Path}': the narrowing predictions of study {studyId} are incomplete; start a new study");
            result[n++] = reader.GetDouble(1);
        }
        if (n != expectedCount) throw new InvalidDataException($"study store '{Path}': study {studyId} has {n} stored predictions, its space has {expectedCount}; start a new study");
        return result;
    }

    internal void InsertCandidate(long studyId, CandidateRecord c) => InsertCandidates(studyId, [c]);

    /// <summary>Commits finished candidates in one transaction (a generation evaluated by workers lands whole or not at all).</summary>
    internal void InsertCandidates(long studyId, IReadOnlyList<CandidateRecord> candidates)
    {
        if (candidates.Count == 0) return;
        using var tx = _connection.BeginTransaction();
        foreach (var c in candidates)
        {
            using var cmd = Command("""
                INSERT INTO candidates(study_id, layers, hidden, ffn, ord, task, "precision", budget, seed, metric, predicted_ms,
                    eval_seconds, wall_seconds, started_at, finished_at, measured_ms, measurement, measure_seconds)
                VALUES (@s, @e, @h, @f, @o, @task, @prec, @budget, @seed, @metric, @pred, @es, @ws, @st, @ft, @mm, @meas, @ms)
                """, tx,
                ("s", studyId), ("e", c.Arch.Layers), ("h", c.Arch.Hidden), ("f", c.Arch.Ffn), ("o", c.Order), ("task", c.Task),
                ("prec", c.Precision.ToString()), ("budget", c.Budget), ("seed", c.Seed), ("metric", c.Metric), ("pred", c.PredictedMs),
                ("es", c.EvaluationSeconds), ("ws", c.WallSeconds), ("st", FormatTime(c.StartedAt)), ("ft", FormatTime(c.FinishedAt)),
                ("mm", c.MeasuredMs), ("meas", c.Measurement is null ? null : JsonSerializer.Serialize(c.Measurement, SearchJson.Compact)),
                ("ms", c.MeasurementSeconds));
            cmd.ExecuteNonQuery();
        }
        tx.Commit();
    }

    internal void SetMeasurement(long studyId, Architecture arch, double measuredMs, LatencyRecord measurement, double seconds)
    {
        using var tx = _connection.BeginTransaction();
        using var cmd = Command("UPDATE candidates SET measured_ms = @mm, measurement = @meas, measure_seconds = @ms WHERE study_id = @s AND layers = @e AND hidden = @h AND ffn = @f", tx,
            ("mm", measuredMs), ("meas", JsonSerializer.Serialize(measurement, SearchJson.Compact)), ("ms", seconds),
            ("s", studyId), ("e", arch.Layers), ("h", arch.Hidden), ("f", arch.Ffn));
        if (cmd.ExecuteNonQuery() != 1) throw new InvalidOperationException($"study {studyId}: no stored candidate {arch} to attach a measurement to");
        tx.Commit();
    }

    internal IReadOnlyList<CandidateRecord> LoadCandidates(long studyId)
    {
        using var cmd = Command("""
            SELECT layers, hidden, ffn, ord, task, "precision", budget, seed, metric, predicted_ms, eval_seconds, wall_seconds,
                   started_at, finished_at, measured_ms, measurement, measure_seconds
            FROM candidates WHERE study_id = @s ORDER BY ord
            """, null, ("s", studyId));
        using var reader = cmd.ExecuteReader();
        var list = new List<CandidateRecord>();
        while (reader.Read())
        {
            list.Add(new CandidateRecord(
                new Architecture(reader.GetInt32(0), reader.GetInt32(1), reader.GetInt32(2)),
                reader.GetInt32(3), reader.GetString(4), Enum.Parse<Precision>(reader.GetString(5)), reader.GetString(6), reader.GetInt32(7),
                reader.GetDouble(8), reader.IsDBNull(9) ? null : reader.GetDouble(9), reader.GetDouble(10), reader.GetDouble(11),
                ParseTime(reader.GetString(12)), ParseTime(reader.GetString(13)),
                reader.IsDBNull(14) ? null : reader.GetDouble(14),
                reader.IsDBNull(15) ? null : JsonSerializer.Deserialize<LatencyRecord>(reader.GetString(15), SearchJson.Compact),
                reader.IsDBNull(16) ? null : reader.GetDouble(16)));
        }
        return list;
    }

    // ---- helpers -----------------------------------------------------------------------

    private StudyRow? Find(string name)
    {
        using var cmd = Command("SELECT id, name, kind, definition, margin FROM studies WHERE name = @n", null, ("n", name));
        using var reader = cmd.ExecuteReader();
        if (!reader.Read()) return null;
        return new StudyRow(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetDouble(4));
    }

    private string KnownNames()
    {
        var names = Studies().Select(s => s.Name).ToList();
        return names.Count == 0 ? "none" : string.Join(", ", names);
    }

    /// <summary>A command with named parameters (@name in the SQL; null becomes SQL NULL).</summary>
    private DbCommand Command(string sql, DbTransaction? tx = null, params (string Name, object? Value)[] parameters)
    {
        var cmd = _connection.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters) AddParameter(cmd, name, value);
        return cmd;
    }

    private static void AddParameter(DbCommand cmd, string name, object? value)
    {
        var p = cmd.CreateParameter();
        p.ParameterName = name;
        p.Value = value ?? DBNull.Value;
        cmd.Parameters.Add(p);
    }

    internal static string FormatTime(DateTimeOffset t) => t.ToString("O", CultureInfo.InvariantCulture);

    internal static DateTimeOffset ParseTime(string s) => DateTimeOffset.Parse(s, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);

    private static void Exec(DbConnection connection, string sql, DbTransaction? tx = null)
    {
        using var cmd = connection.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }
}
