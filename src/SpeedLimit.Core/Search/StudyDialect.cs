using System.Data.Common;
using System.Globalization;
using System.Net.Sockets;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace SpeedLimit.Search;

/// <summary>
/// What differs between the two databases a study can live in: how to connect (and what a failed
/// connection means for the user), column types, the clock, row locking and the schema version.
/// Everything else, the study's logic and its SQL, is shared by <see cref="StudyStore"/>.
/// </summary>
internal abstract class StudyDialect
{
    /// <summary>True for a PostgreSQL connection string (key=value with Host/Server, or a postgres:// URI).</summary>
    public static bool IsPostgres(string location)
    {
        var s = location.TrimStart();
        if (s.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || s.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase)) return true;
        if (!s.Contains('=')) return false;
        var first = s.Split(';', 2)[0].Split('=', 2)[0].Trim();
        return first.Equals("Host", StringComparison.OrdinalIgnoreCase) || first.Equals("Server", StringComparison.OrdinalIgnoreCase);
    }

    public static StudyDialect For(string location) => IsPostgres(location) ? new PostgresDialect(location) : new SqliteDialect(location);

    /// <summary>The location as shown to users (no password).</summary>
    public abstract string Display { get; }
    /// <summary>True when other machines can share the store (PostgreSQL).</summary>
    public abstract bool IsShared { get; }
    /// <summary>The location string that opens the same store again (e.g. for a second connection).</summary>
    public abstract string Location { get; }

    public abstract DbConnection Open();

    /// <summary>Column types: an auto-numbered key, a 64-bit float, a 64-bit integer, bytes.</summary>
    public abstract string IdColumn { get; }
    public abstract string Real { get; }
    public abstract string BigInt { get; }
    public abstract string Blob { get; }

    /// <summary>Seconds since the Unix epoch on the database server's clock (one clock for all workers).</summary>
    public abstract string NowSql { get; }
    /// <summary>Appended to a claim's SELECT: lock the row, skip rows other claimers hold.</summary>
    public abstract string LockSkipLocked { get; }

    /// <summary>Runs inside the schema transaction before any DDL (serializes concurrent first opens).</summary>
    public abstract void LockSchema(DbConnection connection, DbTransaction tx);
    public abstract int ReadSchemaVersion(DbConnection connection);
    public abstract void WriteSchemaVersion(DbConnection connection, DbTransaction tx, int version);

    /// <summary>A database error during open, as one line naming the fix; null when it is not a connection problem.</summary>
    public abstract Exception? Explain(Exception ex);

    protected static void Exec(DbConnection connection, string sql, DbTransaction? tx = null)
    {
        using var cmd = connection.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }
}

internal sealed class SqliteDialect : StudyDialect
{
    private readonly string _path;
    private readonly string _full;

    public SqliteDialect(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        _path = path;
        _full = System.IO.Path.GetFullPath(path);
    }

    public override string Display => _path;
    public override bool IsShared => false;
    public override string Location => _full;

    public override DbConnection Open()
    {
        var dir = System.IO.Path.GetDirectoryName(_full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        // No pooling: disposing the store really closes the file (tests and resumes reopen it).
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _full, Pooling = false }.ToString());
        connection.Open();
        Exec(connection, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;");
        return connection;
    }

    public override string IdColumn => "INTEGER PRIMARY KEY";
    public override string Real => "REAL";
    public override string BigInt => "INTEGER";
    public override string Blob => "BLOB";
    public override string NowSql => "((julianday('now') - 2440587.5) * 86400.0)";
    // SQLite has one writer at a time: a claim's write transaction (BEGIN IMMEDIATE) already excludes other claimers.
    public override string LockSkipLocked => "";

    public override void LockSchema(DbConnection connection, DbTransaction tx) { }

    public override int ReadSchemaVersion(DbConnection connection)
    {
        using var cmd = connection.CreateCommand();
        cmd.CommandText = "PRAGMA user_version;";
        return Convert.ToInt32(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    public override void WriteSchemaVersion(DbConnection connection, DbTransaction tx, int version) =>
        Exec(connection, $"PRAGMA user_version={version};", tx);

    public override Exception? Explain(Exception ex) => ex is SqliteException s
        ? new InvalidDataException($"'{_path}' is not a usable study store ({s.Message}); give a new file name or the .db a previous search wrote", ex)
        : null;
}

internal sealed class PostgresDialect : StudyDialect
{
    private readonly NpgsqlConnectionStringBuilder _builder;

    public PostgresDialect(string connectionString)
    {
        try
        {
            _builder = new NpgsqlConnectionStringBuilder(FromUri(connectionString.Trim()));
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or InvalidCastException)
        {
            throw new UserInputException($"--study '{Redact(connectionString)}' is not a valid PostgreSQL connection string ({ex.Message}); use e.g. \"Host=db.local;Port=5432;Database=speedlimit;Username=speedlimit;Password=...\"", ex);
        }
        // A worker must notice a dead server within seconds, not the OS default of minutes.
        if (_builder.Timeout == 15) _builder.Timeout = 10;
        if (_builder.KeepAlive == 0) _builder.KeepAlive = 10;
    }

    public override string Display
    {
        get
        {
            var b = new NpgsqlConnectionStringBuilder(_builder.ConnectionString);
            if (b.Password is not null) b.Password = "***";
            return $"postgres {b.Username ?? "?"}@{b.Host}:{b.Port}/{b.Database ?? b.Username}";
        }
    }

    public override bool IsShared => true;
    public override string Location => _builder.ConnectionString;

    public override DbConnection Open()
    {
        var connection = new NpgsqlConnection(_builder.ConnectionString);
        connection.Open();
        return connection;
    }

    public override string IdColumn => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
    public override string Real => "DOUBLE PRECISION";
    public override string BigInt => "BIGINT";
    public override string Blob => "BYTEA";
    public override string NowSql => "extract(epoch from clock_timestamp())::float8";
    public override string LockSkipLocked => " FOR UPDATE OF q SKIP LOCKED";

    public override void LockSchema(DbConnection connection, DbTransaction tx) =>
        Exec(connection, "SELECT pg_advisory_xact_lock(5318008131);", tx); // any fixed key: first opens by several workers take turns

    public override int ReadSchemaVersion(DbConnection connection)
    {
        using (var exists = connection.CreateCommand())
        {
            exists.CommandText = "SELECT to_regclass('meta') IS NOT NULL";
            if (!(bool)exists.ExecuteScalar()!) return 0;
        }
        using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT value FROM meta WHERE key = 'schema_version'";
        var v = cmd.ExecuteScalar();
        return v is null or DBNull ? 0 : int.Parse((string)v, CultureInfo.InvariantCulture);
    }

    public override void WriteSchemaVersion(DbConnection connection, DbTransaction tx, int version)
    {
        Exec(connection, "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);", tx);
        Exec(connection, $"INSERT INTO meta(key, value) VALUES ('schema_version', '{version}') ON CONFLICT (key) DO UPDATE SET value = excluded.value;", tx);
    }

    public override Exception? Explain(Exception ex)
    {
        string where = $"{_builder.Host}:{_builder.Port}";
        if (ex is PostgresException pg)
            return pg.SqlState switch
            {
                "28P01" or "28000" => new UserInputException($"PostgreSQL at {where} refused user '{_builder.Username}' ({pg.MessageText}); fix Username/Password in --study (or the server's pg_hba.conf)", ex),
                "3D000" => new UserInputException($"PostgreSQL at {where} has no database '{_builder.Database}'; create it (createdb -h {_builder.Host} -p {_builder.Port} {_builder.Database}) or fix Database in --study", ex),
                "42501" => new UserInputException($"user '{_builder.Username}' may not create or change the study tables in '{_builder.Database}' at {where} ({pg.MessageText}); grant it CREATE on the database/schema or use the database owner", ex),
                _ => new UserInputException($"PostgreSQL at {where} failed: {pg.SqlState} {pg.MessageText}", ex),
            };
        if (ex is NpgsqlException or SocketException or TimeoutException)
        {
            var inner = ex;
            while (inner.InnerException is not null && inner is not SocketException) inner = inner.InnerException;
            return new UserInputException($"cannot reach PostgreSQL at {where} ({inner.Message}); start the server, check Host/Port in --study, and that it listens on that address", ex);
        }
        return null;
    }

    /// <summary>postgres://user:password@host:port/database?k=v → Npgsql's key=value form.</summary>
    private static string FromUri(string s)
    {
        if (!s.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) && !s.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase)) return s;
        var uri = new Uri(s);
        var b = new NpgsqlConnectionStringBuilder { Host = uri.Host };
        if (uri.Port > 0) b.Port = uri.Port;
        var db = uri.AbsolutePath.Trim('/');
        if (db.Length > 0) b.Database = Uri.UnescapeDataString(db);
        if (uri.UserInfo.Length > 0)
        {
            var parts = uri.UserInfo.Split(':', 2);
            b.Username = Uri.UnescapeDataString(parts[0]);
            if (parts.Length > 1) b.Password = Uri.UnescapeDataString(parts[1]);
        }
        foreach (var kv in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var p = kv.Split('=', 2);
            b[Uri.UnescapeDataString(p[0])] = p.Length > 1 ? Uri.UnescapeDataString(p[1]) : "";
        }
        return b.ConnectionString;
    }

    internal static string Redact(string s)
    {
        int i = s.IndexOf("password", StringComparison.OrdinalIgnoreCase);
        if (i < 0) return s;
        int end = s.IndexOf(';', i);
        return s[..i] + "Password=***" + (end < 0 ? "" : s[end..]);
    }
}
