using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using SpeedLimit.Latency;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

/// <summary>A study's row in the store.</summary>
public sealed record StudyInfo(string Name, string Kind, string DefinitionJson, DateTimeOffset CreatedAt, int Candidates);

/// <summary>
/// The study store: one SQLite file holding studies (a search or a baseline set, with its
/// definition as JSON) and every finished candidate, committed as it completes. WAL journaling
/// and one transaction per write mean a process killed mid-write leaves the last committed
/// state; a search resumes from it without evaluating any finished candidate again.
/// </summary>
public sealed class StudyStore : IDisposable
{
    public const string SearchKind = "search";
    public const string BaselinesKind = "baselines";
    private const int SchemaVersion = 1;

    private readonly SqliteConnection _connection;

    private StudyStore(string path, SqliteConnection connection)
    {
        Path = path;
        _connection = connection;
    }

    public string Path { get; }

    /// <summary>Opens (creating when absent) a study store file.</summary>
    public static StudyStore Open(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = System.IO.Path.GetFullPath(path);
        var dir = System.IO.Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        // No pooling: disposing the store really closes the file (tests and resumes reopen it).
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = full, Pooling = false }.ToString());
        try
        {
            connection.Open();
            Exec(connection, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;");
            var version = Convert.ToInt32(Scalar(connection, "PRAGMA user_version;"), CultureInfo.InvariantCulture);
            if (version > SchemaVersion)
                throw new InvalidDataException($"study store '{path}' has schema version {version}, newer than this program's {SchemaVersion}; use a newer speedlimit");
            using (var tx = connection.BeginTransaction())
            {
                Exec(connection, """
                    CREATE TABLE IF NOT EXISTS studies(
                        id INTEGER PRIMARY KEY,
                        name TEXT NOT NULL UNIQUE,
                        kind TEXT NOT NULL,
                        definition TEXT NOT NULL,
                        margin REAL,
                        created_at TEXT NOT NULL);
                    CREATE TABLE IF NOT EXISTS predictions(
                        study_id INTEGER NOT NULL REFERENCES studies(id),
                        idx INTEGER NOT NULL,
                        predicted_ms REAL NOT NULL,
                        PRIMARY KEY(study_id, idx));
                    CREATE TABLE IF NOT EXISTS candidates(
                        study_id INTEGER NOT NULL REFERENCES studies(id),
                        layers INTEGER NOT NULL, hidden INTEGER NOT NULL, ffn INTEGER NOT NULL,
                        ord INTEGER NOT NULL,
                        task TEXT NOT NULL, precision TEXT NOT NULL, budget TEXT NOT NULL, seed INTEGER NOT NULL,
                        metric REAL NOT NULL, predicted_ms REAL,
                        eval_seconds REAL NOT NULL, wall_seconds REAL NOT NULL,
                        started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
                        measured_ms REAL, measurement TEXT, measure_seconds REAL,
                        PRIMARY KEY(study_id, layers, hidden, ffn));
                    """, tx);
                Exec(connection, $"PRAGMA user_version={SchemaVersion};", tx);
                tx.Commit();
            }
            return new StudyStore(path, connection);
        }
        catch (SqliteException ex)
        {
            connection.Dispose();
            throw new InvalidDataException($"'{path}' is not a usable study store ({ex.Message}); give a new file name or the .db a previous search wrote");
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    public void Dispose() => _connection.Dispose();

    public IReadOnlyList<StudyInfo> Studies()
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT s.name, s.kind, s.definition, s.created_at, (SELECT COUNT(*) FROM candidates c WHERE c.study_id = s.id) FROM studies s ORDER BY s.id";
        using var reader = cmd.ExecuteReader();
        var list = new List<StudyInfo>();
        while (reader.Read())
            list.Add(new StudyInfo(reader.GetString(0), reader.GetString(1), reader.GetString(2), ParseTime(reader.GetString(3)), reader.GetInt32(4)));
        return list;
    }

    public bool Exists(string name) => FindId(name) is not null;

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
        using (var cmd = _connection.CreateCommand())
        {
            cmd.Transaction = tx;
            cmd.CommandText = "INSERT INTO studies(name, kind, definition, margin, created_at) VALUES ($n, $k, $d, $m, $t); SELECT last_insert_rowid();";
            cmd.Parameters.AddWithValue("$n", name);
            cmd.Parameters.AddWithValue("$k", kind);
            cmd.Parameters.AddWithValue("$d", definitionJson);
            cmd.Parameters.AddWithValue("$m", (object?)margin ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$t", FormatTime(DateTimeOffset.UtcNow));
            id = Convert.ToInt64(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
        }
        if (predictionsMs is not null)
        {
            using var cmd = _connection.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = "INSERT INTO predictions(study_id, idx, predicted_ms) VALUES ($s, $i, $p)";
            var s = cmd.Parameters.Add("$s", SqliteType.Integer);
            var i = cmd.Parameters.Add("$i", SqliteType.Integer);
            var p = cmd.Parameters.Add("$p", SqliteType.Real);
            cmd.Prepare();
            s.Value = id;
            for (int k = 0; k < predictionsMs.Count; k++)
            {
                i.Value = k;
                p.Value = predictionsMs[k];
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
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT idx, predicted_ms FROM predictions WHERE study_id = $s ORDER BY idx";
        cmd.Parameters.AddWithValue("$s", studyId);
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

    internal void InsertCandidate(long studyId, CandidateRecord c)
    {
        using var tx = _connection.BeginTransaction();
        using var cmd = _connection.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = """
            INSERT INTO candidates(study_id, layers, hidden, ffn, ord, task, precision, budget, seed, metric, predicted_ms,
                eval_seconds, wall_seconds, started_at, finished_at, measured_ms, measurement, measure_seconds)
            VALUES ($s, $e, $h, $f, $o, $task, $prec, $budget, $seed, $metric, $pred, $es, $ws, $st, $ft, $mm, $meas, $ms)
            """;
        cmd.Parameters.AddWithValue("$s", studyId);
        cmd.Parameters.AddWithValue("$e", c.Arch.Layers);
        cmd.Parameters.AddWithValue("$h", c.Arch.Hidden);
        cmd.Parameters.AddWithValue("$f", c.Arch.Ffn);
        cmd.Parameters.AddWithValue("$o", c.Order);
        cmd.Parameters.AddWithValue("$task", c.Task);
        cmd.Parameters.AddWithValue("$prec", c.Precision.ToString());
        cmd.Parameters.AddWithValue("$budget", c.Budget);
        cmd.Parameters.AddWithValue("$seed", c.Seed);
        cmd.Parameters.AddWithValue("$metric", c.Metric);
        cmd.Parameters.AddWithValue("$pred", (object?)c.PredictedMs ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$es", c.EvaluationSeconds);
        cmd.Parameters.AddWithValue("$ws", c.WallSeconds);
        cmd.Parameters.AddWithValue("$st", FormatTime(c.StartedAt));
        cmd.Parameters.AddWithValue("$ft", FormatTime(c.FinishedAt));
        cmd.Parameters.AddWithValue("$mm", (object?)c.MeasuredMs ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$meas", c.Measurement is null ? DBNull.Value : JsonSerializer.Serialize(c.Measurement, SearchJson.Compact));
        cmd.Parameters.AddWithValue("$ms", (object?)c.MeasurementSeconds ?? DBNull.Value);
        cmd.ExecuteNonQuery();
        tx.Commit();
    }

    internal void SetMeasurement(long studyId, Architecture arch, double measuredMs, LatencyRecord measurement, double seconds)
    {
        using var tx = _connection.BeginTransaction();
        using var cmd = _connection.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "UPDATE candidates SET measured_ms = $mm, measurement = $meas, measure_seconds = $ms WHERE study_id = $s AND layers = $e AND hidden = $h AND ffn = $f";
        cmd.Parameters.AddWithValue("$mm", measuredMs);
        cmd.Parameters.AddWithValue("$meas", JsonSerializer.Serialize(measurement, SearchJson.Compact));
        cmd.Parameters.AddWithValue("$ms", seconds);
        cmd.Parameters.AddWithValue("$s", studyId);
        cmd.Parameters.AddWithValue("$e", arch.Layers);
        cmd.Parameters.AddWithValue("$h", arch.Hidden);
        cmd.Parameters.AddWithValue("$f", arch.Ffn);
        if (cmd.ExecuteNonQuery() != 1) throw new InvalidOperationException($"study {studyId}: no stored candidate {arch} to attach a measurement to");
        tx.Commit();
    }

    internal IReadOnlyList<CandidateRecord> LoadCandidates(long studyId)
    {
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = """
            SELECT layers, hidden, ffn, ord, task, precision, budget, seed, metric, predicted_ms, eval_seconds, wall_seconds,
                   started_at, finished_at, measured_ms, measurement, measure_seconds
            FROM candidates WHERE study_id = $s ORDER BY ord
            """;
        cmd.Parameters.AddWithValue("$s", studyId);
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
        using var cmd = _connection.CreateCommand();
        cmd.CommandText = "SELECT id, name, kind, definition, margin FROM studies WHERE name = $n";
        cmd.Parameters.AddWithValue("$n", name);
        using var reader = cmd.ExecuteReader();
        if (!reader.Read()) return null;
        return new StudyRow(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetDouble(4));
    }

    private long? FindId(string name) => Find(name)?.Id;

    private string KnownNames()
    {
        var names = Studies().Select(s => s.Name).ToList();
        return names.Count == 0 ? "none" : string.Join(", ", names);
    }

    private static string FormatTime(DateTimeOffset t) => t.ToString("O", CultureInfo.InvariantCulture);

    private static DateTimeOffset ParseTime(string s) => DateTimeOffset.Parse(s, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);

    private static void Exec(SqliteConnection connection, string sql, SqliteTransaction? tx = null)
    {
        using var cmd = connection.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    private static object? Scalar(SqliteConnection connection, string sql)
    {
        using var cmd = connection.CreateCommand();
        cmd.CommandText = sql;
        return cmd.ExecuteScalar();
    }
}
