using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Remote;
using SpeedLimit.Search;

namespace SpeedLimit.Tests.Cli;

/// <summary>
/// `speedlimit latency serve` as a real process on loopback, measuring with the real protocol in its own
/// worker, for `profile` and `search` processes that reach it with --latency-endpoint: a client dropped
/// mid-measurement, a server killed mid-measurement (restarted within the retry window, or after the run
/// failed and is resumed), a wrong token, another device's records — and the server's journal shows
/// nothing was measured twice.
/// </summary>
public sealed class LatencyServeProcessTests : IDisposable
{
    private const string Token = "process-test-token-42";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"sl-serveproc-{Guid.NewGuid():N}");

    /// <summary>Each model is timed ≥ 0.3 s, so a session of several models lasts long enough to be interrupted.</summary>
    private const string SlowScreening = "screening:runs=100,seconds=0.3,warmup-seconds=0,warmup-runs=2,round=20,max-seconds=0";

    public LatencyServeProcessTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "space.json"), new SearchSpace(new(1, 2, 1), new(16, 48, 16), new(16, 64, 16), 2).ToJson()); // 24 architectures
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string Store => Path.Combine(_dir, "store");

    /// <summary>A `latency serve` child; its stdout lines are collected.</summary>
    private sealed class Server : IDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = new();
        public string Url { get; }

        public Server(string dir, string store, string url)
        {
            var info = CliProcess.StartInfo(dir, ["latency", "serve", "--urls", url, "--store", store]);
            info.Environment[LatencyEndpointOptions.TokenVariable] = Token;
            _process = Process.Start(info)!;
            _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_lines) _lines.Add(e.Data); };
            _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_lines) _lines.Add("stderr: " + e.Data); };
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
            Assert.True(WaitFor(l => l.Any(x => x.Contains(" listening on ")), TimeSpan.FromSeconds(60)), $"the server did not start:\n{Text}");
            var line = Lines.First(x => x.Contains(" listening on "));
            Url = line[(line.IndexOf("listening on ", StringComparison.Ordinal) + "listening on ".Length)..].Split(';', ',', ' ')[0];
        }

        public IReadOnlyList<string> Lines
        {
            get { lock (_lines) return _lines.ToList(); }
        }

        public string Text => string.Join('\n', Lines);

        public int Count(string word) => Lines.Count(l => l.Contains(word, StringComparison.Ordinal));

        public bool WaitFor(Func<IReadOnlyList<string>, bool> condition, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (!condition(Lines))
            {
                if (clock.Elapsed > timeout || _process.HasExited) return condition(Lines);
                Thread.Sleep(20);
            }
            return true;
        }

        /// <summary>kill -9 of the server and its measurement worker.</summary>
        public void Kill()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        public void Dispose()
        {
            Kill();
            _process.Dispose();
        }
    }

    private Process StartCli(string[] args, string token = Token, bool quickStart = false)
    {
        var info = CliProcess.StartInfo(_dir, args, quickStart);
        info.Environment[LatencyEndpointOptions.TokenVariable] = token;
        var p = Process.Start(info)!;
        p.StandardInput.Close();
        return p;
    }

    private static CliProcess.Outcome Finish(Process p, TimeSpan timeout)
    {
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"the command did not finish in {timeout.TotalSeconds} s: {stderr.Result}");
        }
        return new CliProcess.Outcome(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>The server's log line when it starts measuring a request ("HH:mm:ss measuring KEY: …"), and when it has.</summary>
    private static bool Starts(string line) => System.Text.RegularExpressions.Regex.IsMatch(line, "^[0-9:]+ measuring [0-9a-f]{12}: ");

    private static bool Finishes(string line) => System.Text.RegularExpressions.Regex.IsMatch(line, "^[0-9:]+ measured [0-9a-f]{12}: ");

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    [Fact]
    public async Task ProfileThroughServeSurvivesADroppedClientAndAServerRestartAndMeasuresNothingTwice()
    {
        string url = $"http://127.0.0.1:{FreePort()}";
        var first = new Server(_dir, Store, url);
        string[] profile = ["profile", "--space", "space.json", "--count", "12", "--precision", "int8", "--protocol", SlowScreening,
            "--latency-endpoint", url, "-o", "latency.jsonl"];
        try
        {
            // 1. The client goes away mid-measurement: the server finishes the session and keeps it.
            using (var client = StartCli(profile))
            {
                var clientErr = client.StandardError.ReadToEndAsync();
                _ = client.StandardOutput.ReadToEndAsync();
                if (!first.WaitFor(l => l.Any(x => Starts(x)), TimeSpan.FromSeconds(60)))
                    Assert.Fail($"no measurement started:\n{first.Text}\nclient: {(client.HasExited ? await clientErr : "still running")}");
                client.Kill(entireProcessTree: true);
                client.WaitForExit();
            }
            Assert.True(first.WaitFor(l => l.Any(x => Finishes(x)), TimeSpan.FromSeconds(60)), first.Text);
            Assert.False(File.Exists(Path.Combine(_dir, "latency.jsonl")) && LatencyDataset.Load(Path.Combine(_dir, "latency.jsonl")).Count > 0);

            // 2. Rerun: the first session is answered from the store; the server is killed while it measures the second,
            //    restarted on the same address, and the client's retries carry the profile to the end.
            Server second;
            using (var client = StartCli(profile))
            {
                var stdout = client.StandardOutput.ReadToEndAsync();
                var stderr = client.StandardError.ReadToEndAsync();
                Assert.True(first.WaitFor(l => l.Count(x => Starts(x)) >= 2, TimeSpan.FromSeconds(60)), first.Text);
                first.Kill();
                second = new Server(_dir, Store, url);
                Assert.True(client.WaitForExit(TimeSpan.FromMinutes(2)), "the profile did not finish after the restart");
                Assert.True(client.ExitCode == 0, $"profile failed after the server restart: {await stderr}\n{await stdout}");
            }
            using (second)
            {
                var records = LatencyDataset.Load(Path.Combine(_dir, "latency.jsonl"));
                Assert.Equal(12, records.Count);
                Assert.Equal(12, records.Select(r => r.Arch).Distinct().Count());
                Assert.All(records, r => Assert.StartsWith($"remote {url}: child process", r.Protocol!.Isolation));
                Assert.Equal(1, first.Count(" answered ")); // session 1, asked twice, measured once
                Assert.Equal(1, first.Lines.Count(Finishes));
                Assert.Equal(1, second.Lines.Count(Finishes)); // session 2: its interrupted measurement taken again, once
                var journal = LatencyStore.ReadJournal(Store);
                Assert.Equal(2, journal.Count);
                Assert.Equal(12, journal.SelectMany(e => e.Models).Select(m => m.Sha256).Distinct().Count());
                Assert.Equal(12, first.Count("stored model") + second.Count("stored model")); // every model uploaded once

                // A wrong token: one error line, nothing written.
                var args = profile.Select(a => a == "latency.jsonl" ? "other.jsonl" : a).ToArray();
                var refused = Finish(StartCli(args, token: "wrong-token-value"), TimeSpan.FromMinutes(1));
                FaultBatteryTests.AssertCleanFailure("wrong token", args, refused, "refused the token");
                Assert.False(File.Exists(Path.Combine(_dir, "other.jsonl")));
            }
        }
        finally
        {
            first.Dispose();
        }
    }

    [Fact]
    public async Task SearchThroughServeFailsClearlyWhenTheServerDiesAndResumesWithNothingMeasuredTwice()
    {
        string[] Search(string url, params string[] extra) =>
        [
            "search", "--output", "run", "--space", "space.json", "--bound-ms", "50", "--max-train-examples", "200", "--max-dev-examples", "50",
            "--max-length", "32", "--profile-count", "14", // 14 or more architectures: two profiling sessions "--supermodel-epochs", "1", "--finetune-epochs", "1", "--finetune-examples", "100",
            "--generations", "1", "--population", "2", "--threads", "1", "--latency-protocol", SlowScreening,
            "--verify-protocol", "verification:runs=200,seconds=0,warmup-seconds=0,warmup-runs=2,round=50,max-seconds=0.05",
            "--latency-endpoint", url, "--latency-retry-seconds", "2", .. extra,
        ];
        var work = Path.Combine(_dir, "run.partial");
        int storedByFirst;
        using (var first = new Server(_dir, Store, "http://127.0.0.1:0"))
        {
            // Records of another device are not mixed in silently: refused against the endpoint's fingerprint.
            var here = DeviceFingerprint.Current(1);
            var foreign = new LatencyRecord(1, 16, 16, 2, SpeedLimit.Precision.Int8, 1, 128, 0.2, 0.25, 0.21, 0.19, 10, "Some Other CPU 9000", 1, here.RuntimeVersion,
                DateTimeOffset.UtcNow);
            LatencyDataset.Append(Path.Combine(_dir, "foreign.jsonl"), foreign);
            var mixed = Search(first.Url, "--latency-data", "foreign.jsonl");
            var refused = Finish(StartCli(mixed, quickStart: true), TimeSpan.FromMinutes(1));
            FaultBatteryTests.AssertCleanFailure("foreign records", mixed, refused, "another device");
            Assert.Contains($"the measuring device, remote {first.Url}", refused.StdErr);
            Assert.False(Directory.Exists(work));

            // The server dies while the search profiles (second session): the search retries for 2 s, then stops with one line.
            var args = Search(first.Url);
            using var client = StartCli(args);
            var outcome = Task.Run(() => Finish(client, TimeSpan.FromMinutes(3)));
            Assert.True(first.WaitFor(l => l.Count(x => Starts(x)) >= 2, TimeSpan.FromMinutes(2)), first.Text);
            first.Kill();
            var failed = await outcome;
            FaultBatteryTests.AssertCleanFailure("killed server", args, failed, "did not answer");
            Assert.Contains("--resume", failed.StdErr);
            Assert.Contains(first.Url, failed.StdErr);
            Assert.False(Directory.Exists(Path.Combine(_dir, "run")));
            Assert.Equal(8, LatencyDataset.Load(Path.Combine(work, "latency.jsonl")).Count); // the first session, kept
            storedByFirst = first.Count("stored model");
        }

        // Restarted (another port, the same store): --resume finishes, profiling only what is missing.
        using var second = new Server(_dir, Store, "http://127.0.0.1:0");
        var resume = Search(second.Url, "--resume");
        var done = Finish(StartCli(resume), TimeSpan.FromMinutes(3));
        Assert.True(done.ExitCode == 0, $"the resumed search failed: {done.StdErr}\n{done.StdOut}");

        var run = Path.Combine(_dir, "run");
        var profiled = LatencyDataset.Load(Path.Combine(run, "latency.jsonl"));
        Assert.True(profiled.Count > 8, "the resumed run did not profile the rest");
        Assert.Equal(profiled.Count, profiled.Select(r => r.Arch).Distinct().Count());
        Assert.All(profiled, r => Assert.StartsWith("remote http://127.0.0.1:", r.Protocol!.Isolation));
        var journal = LatencyStore.ReadJournal(Store);
        Assert.Equal(journal.Count, journal.Select(e => e.Id).Distinct().Count()); // no request measured twice
        var profiledShas = journal.Where(e => e.Bound is null && e.Protocol == "screening").SelectMany(e => e.Models).Select(m => m.Sha256).ToList();
        Assert.Equal(profiled.Count, profiledShas.Count); // each profiled model measured once, across both servers
        Assert.Equal(profiled.Count, profiledShas.Distinct().Count());
        Assert.Contains(journal, e => e.Protocol == "verification");

        // The report and deployment.json name the device measured on: the endpoint and its fingerprint.
        var deployment = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "deployment.json")))!;
        var measurement = deployment["winners"]![0]!["verdict"]!["measurement"]!;
        Assert.StartsWith($"remote {second.Url}: child process", measurement["protocol"]!["isolation"]!.GetValue<string>());
        Assert.Equal(DeviceFingerprint.Current(1).CpuModel, measurement["fingerprint"]!["cpuModel"]!.GetValue<string>());
        Assert.Contains(deployment["notes"]!.AsArray(), n => n!.GetValue<string>().StartsWith($"latency measured on the deployment machine, remote {second.Url}", StringComparison.Ordinal));
        var report = File.ReadAllText(Path.Combine(run, "report.md"));
        Assert.Contains($"remote {second.Url}: child process", report);
        Assert.Contains($"Measured on {DeviceFingerprint.Current(1).CpuModel}", report);
        Assert.Equal(Directory.GetFiles(Path.Combine(Store, "models")).Length, storedByFirst + second.Count("stored model")); // every model uploaded once
    }
}
