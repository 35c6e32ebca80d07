using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace SpeedLimit.Tests.Search;

/// <summary>
/// A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, its own port on
/// loopback, password authentication, started once for every test of the "postgres" collection and
/// stopped and deleted afterwards. PostgreSQL refuses to run as root, so as root (CI) the server
/// runs as the image's <c>postgres</c> user.
/// </summary>
public sealed class PostgresCluster : IDisposable
{
    public const string User = "speedlimit";
    public const string Password = "test-password";

    private readonly string _root;
    private readonly string _data;
    private readonly string? _runAs;
    private int _databases;

    public PostgresCluster()
    {
        // As root the server runs as 'postgres', which must reach the folder: /tmp, not a private TMPDIR.
        _root = Path.Combine(Environment.UserName == "root" ? "/tmp" : Path.GetTempPath(), $"speedlimit-pg-{Guid.NewGuid():N}");
        _data = Path.Combine(_root, "data");
        // Where no server can be had the collection's tests are skipped; the fixture then starts nothing.
        if (SkipReason is not null || FindBinaries() is not { } bin) { BinDir = ""; return; }
        BinDir = bin;
        _runAs = Environment.UserName == "root" ? "postgres" : null;
        Directory.CreateDirectory(_root);
        var pwfile = Path.Combine(_root, "pw");
        File.WriteAllText(pwfile, Password + "\n");
        if (_runAs is not null) Run("chown", ["-R", $"{_runAs}:", _root], asServer: false);
        Run(Path.Combine(bin, "initdb"), ["-D", _data, "-U", User, $"--pwfile={pwfile}", "-A", "scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions"]);
        Port = FreePort();
        var options = $"-p {Port} -k {_root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60 -c shared_buffers=16MB";
        Run(Path.Combine(bin, "pg_ctl"), ["-D", _data, "-o", options, "-l", Path.Combine(_root, "server.log"), "-w", "-t", "60", "start"]);
    }

    public string BinDir { get; }
    public int Port { get; }

    /// <summary>Connection string of the server's admin database.</summary>
    public string Admin => $"Host=127.0.0.1;Port={Port};Username={User};Password={Password};Database=postgres;Pooling=false";

    /// <summary>A fresh, empty database for one test; returns its connection string.</summary>
    public string NewDatabase()
    {
        var name = $"t{Interlocked.Increment(ref _databases)}_{Guid.NewGuid():N}"[..20];
        using var connection = new NpgsqlConnection(Admin);
        connection.Open();
        using var cmd = connection.CreateCommand();
        cmd.CommandText = $"CREATE DATABASE {name}";
        cmd.ExecuteNonQuery();
        return $"Host=127.0.0.1;Port={Port};Username={User};Password={Password};Database={name}";
    }

    public void Dispose()
    {
        if (BinDir.Length == 0) return;
        try { Run(Path.Combine(BinDir, "pg_ctl"), ["-D", _data, "-m", "immediate", "-w", "stop"]); }
        catch (InvalidOperationException) { }
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>Why no cluster can be started here (null when one can).</summary>
    public static string? SkipReason { get; } = ComputeSkipReason();

    private static string? ComputeSkipReason()
    {
        if (!OperatingSystem.IsLinux()) return "the PostgreSQL tests start a throwaway cluster with initdb, which they only do on Linux";
        if (FindBinaries() is null) return "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on PATH; install Debian's postgresql package (.ci/run does)";
        if (Environment.UserName == "root" && !File.ReadAllText("/etc/passwd").Contains("\npostgres:", StringComparison.Ordinal))
            return "running as root without a 'postgres' user to run the server as (PostgreSQL refuses to run as root)";
        return null;
    }

    private static string? FindBinaries()
    {
        if (Directory.Exists("/usr/lib/postgresql"))
            foreach (var dir in Directory.GetDirectories("/usr/lib/postgresql").OrderByDescending(d => int.TryParse(Path.GetFileName(d), out var v) ? v : 0))
                if (File.Exists(Path.Combine(dir, "bin", "initdb")) && File.Exists(Path.Combine(dir, "bin", "pg_ctl"))) return Path.Combine(dir, "bin");
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, "initdb")) && File.Exists(Path.Combine(dir, "pg_ctl"))) return dir;
        return null;
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private void Run(string exe, string[] args, bool asServer = true)
    {
        var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (asServer && _runAs is not null)
        {
            psi.FileName = "runuser";
            foreach (var a in new[] { "-u", _runAs, "--", exe }) psi.ArgumentList.Add(a);
        }
        else psi.FileName = exe;
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new InvalidOperationException($"{exe} did not finish in 120 s"); }
        if (p.ExitCode != 0)
        {
            var log = Path.Combine(_root ?? "", "server.log");
            throw new InvalidOperationException($"{Path.GetFileName(exe)} {string.Join(' ', args)} failed ({p.ExitCode}): {stdout.Result}{stderr.Result}" +
                (File.Exists(log) ? "\nserver log:\n" + File.ReadAllText(log) : ""));
        }
    }
}

[CollectionDefinition("postgres")]
public sealed class PostgresCollection : ICollectionFixture<PostgresCluster>;

/// <summary>A fact that is skipped, with the reason, where no PostgreSQL server can be started.</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public PostgresFactAttribute()
    {
        if (PostgresCluster.SkipReason is { } reason) Skip = reason;
    }
}

/// <summary>
/// The stores a store-independent test runs on: "sqlite" always, "postgres" where a server can be
/// started (otherwise <see cref="PostgresAvailabilityTests"/> shows the skip and its reason).
/// </summary>
public static class StoreKinds
{
    public static TheoryData<string> All => PostgresCluster.SkipReason is null ? new TheoryData<string> { "sqlite", "postgres" } : new TheoryData<string> { "sqlite" };
}

/// <summary>Fresh store locations for one test (SQLite files are deleted afterwards; databases go with the cluster).</summary>
public sealed class StoreLocations(PostgresCluster cluster) : IDisposable
{
    private readonly List<string> _files = new();

    public string New(string kind)
    {
        if (kind == "postgres") return cluster.NewDatabase();
        var path = SearchTestData.TempPath("study.db");
        _files.Add(path);
        return path;
    }

    public void Dispose()
    {
        foreach (var f in _files)
            foreach (var suffix in new[] { "", "-wal", "-shm" })
                if (File.Exists(f + suffix)) File.Delete(f + suffix);
    }
}

[Collection("postgres")]
public sealed class PostgresAvailabilityTests(PostgresCluster cluster)
{
    [PostgresFact]
    public void ThrowawayClusterAcceptsTheTestUserAndRefusesAWrongPassword()
    {
        using (var store = SpeedLimit.Search.StudyStore.Open(cluster.NewDatabase()))
            Assert.True(store.IsShared);
        var wrong = $"Host=127.0.0.1;Port={cluster.Port};Username={PostgresCluster.User};Password=wrong;Database=postgres";
        var ex = Assert.Throws<UserInputException>(() => SpeedLimit.Search.StudyStore.Open(wrong));
        Assert.Contains($"refused user '{PostgresCluster.User}'", ex.Message);
        Assert.Contains("fix Username/Password", ex.Message);
    }
}
