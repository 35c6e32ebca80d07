using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Remote;
using SpeedLimit.Model;
using SpeedLimit.Onnx;

namespace SpeedLimit.Tests.Latency;

/// <summary>
/// <c>latency serve</c> hosted in the test process on loopback, measuring with a counting fake device (the
/// real protocol is end to end in <c>LatencyServeProcessTests</c>): the HTTP client, the store, retries,
/// restarts and refusals.
/// </summary>
public sealed class LatencyServerTests : IDisposable
{
    private const string Token = "test-token-0123456789";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"sl-serve-{Guid.NewGuid():N}");

    public LatencyServerTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string Store => Path.Combine(_dir, "store");

    /// <summary>Counts measurements; optionally blocks each one until <see cref="Release"/> (honouring cancellation, like the real worker).</summary>
    private sealed class CountingDevice(bool block = false) : ILatencyDevice
    {
        private readonly ManualResetEventSlim _gate = new(!block);
        private int _calls;
        public int Calls => _calls;
        public readonly ManualResetEventSlim Started = new(false);
        public void Release() => _gate.Set();
        public string Name => "counting fake device";
        public static DeviceFingerprint Print(int threads) => new("Fake CPU 9000", threads, "1.31.1", "avx2 fma", 4, 8, "TestOS");
        public DeviceFingerprint Fingerprint(int threads) => Print(threads);

        public IReadOnlyList<LatencyRecord> Measure(IReadOnlyList<ModelToMeasure> models, MeasurementSettings settings, CancellationToken cancel = default)
        {
            Interlocked.Increment(ref _calls);
            Started.Set();
            _gate.Wait(cancel);
            foreach (var m in models) Assert.True(File.Exists(m.OnnxPath), "the server measures its stored copy");
            var fp = Print(settings.Threads);
            var note = new MeasurementNote(settings.Protocol.Describe(), "fake isolation", 0.5, 1, false, 1);
            return models.Select((m, i) => new LatencyRecord(m.Arch.Layers, m.Arch.Hidden, m.Arch.Ffn, m.Heads, m.Precision, settings.Batch, settings.SequenceLength,
                1 + i, 1.2 + i, 1.1 + i, 0.9 + i, 100, fp.CpuModel, settings.Threads, fp.RuntimeVersion, DateTimeOffset.UtcNow, "wall", null, fp, note)).ToList();
        }
    }

    private async Task<LatencyServer> Start(ILatencyDevice device, long maxUpload = 512L << 20, string url = "http://127.0.0.1:0")
    {
        var server = new LatencyServer(new LatencyServerOptions { Urls = [url], StoreFolder = Store, Token = Token, MaxUploadBytes = maxUpload, MaxWaitSeconds = 5 }, device);
        await server.StartAsync();
        return server;
    }

    private static HttpLatencyDevice Client(LatencyServer server, string token = Token, double retrySeconds = 5, double pollSeconds = 5) =>
        new(new LatencyEndpointOptions(new Uri(server.Addresses[0]), token, retrySeconds)) { PollSeconds = pollSeconds };

    /// <summary>A tiny int8 export (a few KB).</summary>
    private string Model(string name, int seed = 1)
    {
        var config = new BertConfig(new Architecture(1, 16, 16), 2, 64, HeadKind.Classification, maxPositions: 128);
        var layout = new BertParameterLayout(config);
        var path = Path.Combine(_dir, name);
        BertOnnxExporter.Save(config, layout, RandomBertWeights.Create(layout, seed), path, new OnnxExportOptions { Precision = Precision.Int8 });
        return path;
    }

    private static ModelToMeasure ToMeasure(string path) => new(path, new Architecture(1, 16, 16), 2, Precision.Int8);

    private static MeasurementSettings Settings(int seed = 0) =>
        new(new LatencyProtocol("screening", 0, 2, 0, 10, 5), VocabSize: 64, SequenceLength: 16, Seed: seed);

    [Fact]
    public async Task EachRequestIsMeasuredOnceAndAnsweredFromTheStoreAfterARestart()
    {
        var model = Model("m.onnx");
        var first = new CountingDevice();
        var server = await Start(first);
        using var client = Client(server);

        // The endpoint's fingerprint is the device's, not this machine's.
        Assert.Equal("Fake CPU 9000", client.Fingerprint(1).CpuModel);
        var a = client.Measure([ToMeasure(model)], Settings());
        var again = client.Measure([ToMeasure(model)], Settings());
        Assert.Equal(1, first.Calls);
        Assert.Equal(1, client.Uploads);
        Assert.Equal(a[0].MedianMs, again[0].MedianMs);
        Assert.StartsWith($"remote {server.Addresses[0]}: fake isolation", a[0].Protocol!.Isolation);
        Assert.Equal(CountingDevice.Print(1), a[0].Fingerprint);

        // Two identical requests in flight at once (a retry racing the original) share one measurement.
        var blocking = new CountingDevice(block: true);
        await server.DisposeAsync();
        server = await Start(blocking);
        using var c1 = Client(server, pollSeconds: 0.2);
        using var c2 = Client(server, pollSeconds: 0.2);
        var r1 = Task.Run(() => c1.Measure([ToMeasure(model)], Settings(seed: 7)));
        Assert.True(blocking.Started.Wait(TimeSpan.FromSeconds(20)), "the measurement did not start");
        var r2 = Task.Run(() => c2.Measure([ToMeasure(model)], Settings(seed: 7)));
        await Task.Delay(600); // both clients poll a few times while it measures (HTTP 202)
        var status = JsonDocument.Parse(await Raw(server).GetStringAsync("v1/status")).RootElement;
        Assert.Equal(64, status.GetProperty("measuring").GetString()!.Length); // the request's key
        Assert.Equal(1, status.GetProperty("queued").GetInt32()); // one job for both clients
        blocking.Release();
        Assert.Equal((await r1)[0].MedianMs, (await r2)[0].MedianMs);
        Assert.Equal(1, blocking.Calls);
        Assert.Equal(0, c1.Uploads + c2.Uploads); // the model survived the restart in the store

        // A restarted server answers both earlier requests from its store: nothing is measured again.
        await server.DisposeAsync();
        var third = new CountingDevice();
        server = await Start(third);
        using var c3 = Client(server);
        c3.Measure([ToMeasure(model)], Settings());
        c3.Measure([ToMeasure(model)], Settings(seed: 7));
        Assert.Equal(0, third.Calls);
        var journal = LatencyStore.ReadJournal(Store);
        Assert.Equal(2, journal.Count);
        Assert.Equal(2, journal.Select(e => e.Id).Distinct().Count());
        await server.DisposeAsync();
    }

    [Fact]
    public async Task ADroppedClientLosesNothingAndAKilledMeasurementIsTakenAgainAfterTheRestart()
    {
        var model = Model("m.onnx");
        var device = new CountingDevice(block: true);
        var server = await Start(device);

        // The client gives up mid-measurement (a dropped connection); the server carries on and keeps the result.
        using (var client = Client(server, pollSeconds: 0.2))
        using (var cancel = new CancellationTokenSource())
        {
            var gone = Task.Run(() => client.Measure([ToMeasure(model)], Settings(), cancel.Token));
            Assert.True(device.Started.Wait(TimeSpan.FromSeconds(20)));
            cancel.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => gone);
        }
        device.Release();
        using (var client = Client(server))
            Assert.Single(client.Measure([ToMeasure(model)], Settings()));
        Assert.Equal(1, device.Calls);

        // The server stops mid-measurement: the client retries, then fails naming the endpoint; nothing half-measured is stored.
        var stuck = new CountingDevice(block: true);
        string url = server.Addresses[0];
        await server.DisposeAsync();
        server = await Start(stuck, url: url);
        using (var client = Client(server, retrySeconds: 1, pollSeconds: 0.2))
        {
            var measuring = Task.Run(() => client.Measure([ToMeasure(model)], Settings(seed: 3)));
            Assert.True(stuck.Started.Wait(TimeSpan.FromSeconds(20)));
            await server.DisposeAsync(); // cancels the measurement, stops listening
            var error = await Assert.ThrowsAsync<LatencyEndpointException>(() => measuring);
            Assert.Contains($"the latency endpoint {url.TrimEnd('/')} did not answer", error.Message);
            Assert.Contains("speedlimit latency serve", error.Message);
        }
        Assert.Single(LatencyStore.ReadJournal(Store));

        // Restarted on the same address within the client's retry window: the same request completes, measured once.
        var fresh = new CountingDevice(block: true);
        using (var client = Client(server, retrySeconds: 30, pollSeconds: 0.2))
        {
            var waiting = Task.Run(() => client.Measure([ToMeasure(model)], Settings(seed: 3)));
            await Task.Delay(500); // refused meanwhile: the client backs off and retries
            server = await Start(fresh, url: url);
            Assert.True(fresh.Started.Wait(TimeSpan.FromSeconds(20)), "the retried request did not reach the restarted server");
            fresh.Release();
            Assert.Single(await waiting);
        }
        Assert.Equal(1, fresh.Calls);
        Assert.Equal(2, LatencyStore.ReadJournal(Store).Count);
        await server.DisposeAsync();
    }

    [Fact]
    public async Task BadTokensGarbageDamagedAndOversizedUploadsAreRefusedWithTheReason()
    {
        var device = new CountingDevice();
        var server = await Start(device, maxUpload: 4000);
        var model = Model("m.onnx"); // ~15 KB: over the 4 KB limit

        using (var wrong = Client(server, token: "not-the-token"))
            Assert.Contains("refused the token (401)", Assert.Throws<LatencyEndpointException>(() => wrong.Fingerprint(1)).Message);
        var raw = Raw(server);
        var noToken = new HttpClient { BaseAddress = raw.BaseAddress };
        Assert.Equal(HttpStatusCode.Unauthorized, (await noToken.GetAsync("v1/fingerprint")).StatusCode);

        using var client = Client(server);
        var tooLarge = Assert.Throws<LatencyEndpointException>(() => client.Measure([ToMeasure(model)], Settings()));
        Assert.Contains("over the 0.004 MB upload limit", tooLarge.Message);
        Assert.Contains("--max-upload-mb", tooLarge.Message);
        // Sent anyway (chunked, so the server only finds out while reading): 413 with the limit, nothing stored.
        var bytes = File.ReadAllBytes(model);
        var sha = RemoteProtocol.Sha256OfFile(model);
        var chunked = new HttpRequestMessage(HttpMethod.Put, $"v1/models/{sha}") { Content = new PushStreamContent(bytes) };
        var response = await raw.SendAsync(chunked);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("--max-upload-mb", await response.Content.ReadAsStringAsync());

        // Garbage that fits: refused with ONNX Runtime's reason, shown by the client.
        var garbage = Path.Combine(_dir, "garbage.onnx");
        File.WriteAllText(garbage, "this is not an ONNX model");
        var refused = Assert.Throws<LatencyEndpointException>(() => client.Measure([ToMeasure(garbage)], Settings()));
        Assert.Contains($"rejected model '{garbage}'", refused.Message);
        Assert.Contains("not a model this server can measure", refused.Message);
        // Bytes that do not hash to their name (damaged in transit): refused.
        var damaged = await raw.PutAsync($"v1/models/{new string('a', 64)}", new ByteArrayContent(Encoding.ASCII.GetBytes("short")));
        Assert.Equal(HttpStatusCode.BadRequest, damaged.StatusCode);
        Assert.Contains("cut short or damaged", await damaged.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.BadRequest, (await raw.PutAsync("v1/models/not-a-hash", new ByteArrayContent([1]))).StatusCode);

        // An upload whose connection drops halfway stores nothing, and the server keeps serving.
        var uri = new Uri(server.Addresses[0]);
        using (var tcp = new TcpClient())
        {
            await tcp.ConnectAsync(uri.Host, uri.Port);
            var stream = tcp.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"PUT /v1/models/{sha} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {Token}\r\nContent-Length: 3000\r\n\r\n"));
            await stream.WriteAsync(bytes.AsMemory(0, 1000));
        }
        await Task.Delay(300);
        Assert.Equal(HttpStatusCode.NotFound, (await raw.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"v1/models/{sha}"))).StatusCode);
        Assert.Equal(0, server.Store.ModelCount);

        // Measuring models the server does not have, or a malformed request: 409 naming them, 400.
        var missing = new RemoteMeasureRequest([new RemoteModel(sha, new Architecture(1, 16, 16), 2, Precision.Int8)], Settings());
        var conflict = await raw.PostAsync("v1/measure", new StringContent(JsonSerializer.Serialize(missing, RemoteProtocol.Json), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Conflict, conflict.StatusCode);
        Assert.Contains(sha, await conflict.Content.ReadAsStringAsync());
        var malformed = await raw.PostAsync("v1/measure", new StringContent("{\"models\": [", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);
        var badSettings = missing with { Settings = Settings() with { Threads = 0 } };
        var invalid = await raw.PostAsync("v1/measure", new StringContent(JsonSerializer.Serialize(badSettings, RemoteProtocol.Json), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        Assert.Contains("threads 0", await invalid.Content.ReadAsStringAsync());

        Assert.Equal(0, device.Calls);
        Assert.Equal(0, server.Store.ModelCount);
        Assert.Empty(Directory.GetFiles(Path.Combine(Store, "uploads")));
        await server.DisposeAsync();
    }

    [Fact]
    public void EndpointOptionsNeedAnHttpAddressAndATokenAndHideIt()
    {
        Assert.Contains("http://", Assert.Throws<UserInputException>(() => LatencyEndpointOptions.Create("ftp://host", "t0ken-value", 5)).Message);
        Assert.Contains(LatencyEndpointOptions.TokenVariable, Assert.Throws<UserInputException>(() => LatencyEndpointOptions.Create("http://127.0.0.1:1", null, 5)).Message);
        var options = LatencyEndpointOptions.Create("http://127.0.0.1:1", " secret-token \n", 5);
        Assert.Equal("secret-token", options.Token);
        Assert.DoesNotContain("secret", options.ToString());
        // The token never reaches the run's fingerprint.
        var pipeline = new SpeedLimit.Pipeline.PipelineOptions { Profiling = new SpeedLimit.Pipeline.ProfilingOptions { Endpoint = options } };
        Assert.DoesNotContain("secret", pipeline.Fingerprint());
        Assert.Equal(new SpeedLimit.Pipeline.PipelineOptions().Fingerprint(), pipeline.Fingerprint());
        // A generated server token is kept in the store, readable by its owner only, and reused on restart.
        var (token, source) = LatencyServerOptions.ResolveToken(null, Store);
        Assert.Contains("generated", source);
        Assert.True(token.Length >= 40);
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(Store, "token")));
        Assert.Equal(token, LatencyServerOptions.ResolveToken(null, Store).Token);
    }

    private static HttpClient Raw(LatencyServer server)
    {
        var http = new HttpClient { BaseAddress = new Uri(server.Addresses[0].TrimEnd('/') + "/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        return http;
    }

    /// <summary>A body of unknown length (chunked transfer).</summary>
    private sealed class PushStreamContent(byte[] bytes) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(bytes).AsTask();
        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
