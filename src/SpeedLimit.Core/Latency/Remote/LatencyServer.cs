using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using SpeedLimit.Onnx;

namespace SpeedLimit.Latency.Remote;

/// <summary>Settings of <c>speedlimit latency serve</c>.</summary>
public sealed class LatencyServerOptions
{
    public const int DefaultPort = 5117;

    /// <summary>Addresses to listen on (port 0: any free port; the bound addresses are in <see cref="LatencyServer.Addresses"/>).</summary>
    public IReadOnlyList<string> Urls { get; set; } = [$"http://127.0.0.1:{DefaultPort}"];
    /// <summary>Uploaded models, results and the journal (<see cref="LatencyStore"/>).</summary>
    public string StoreFolder { get; set; } = DefaultStoreFolder;
    /// <summary>The bearer token every request must carry.</summary>
    public string Token { get; set; } = "";
    /// <summary>Largest model upload accepted (HTTP 413 above).</summary>
    public long MaxUploadBytes { get; set; } = 512L << 20;
    /// <summary>Most models in one measurement request.</summary>
    public int MaxModelsPerRequest { get; set; } = 64;
    /// <summary>Longest a measurement request waits on the server before it is answered "still measuring" (202).</summary>
    public double MaxWaitSeconds { get; set; } = 30;

    public static string DefaultStoreFolder =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify), "speedlimit", "serve");

    /// <param name="requireToken">False to check the rest before a token is resolved (which may write one into the store).</param>
    public void Validate(bool requireToken = true)
    {
        if (Urls.Count == 0) throw new UserInputException("--urls is empty; give e.g. http://127.0.0.1:5117");
        foreach (var u in Urls)
            if (!Uri.TryCreate(u, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
                throw new UserInputException($"--urls '{u}' is not an http:// address with a host and port, e.g. http://127.0.0.1:5117 (for TLS, put a reverse proxy in front)");
        if (string.IsNullOrWhiteSpace(StoreFolder)) throw new UserInputException("--store is empty; give a folder for uploaded models and results");
        if (requireToken && Token.Length < 8) throw new UserInputException("the server token must have at least 8 characters; give a longer one in --token-file or SPEEDLIMIT_LATENCY_TOKEN, or neither to generate one");
        if (MaxUploadBytes < 1) throw new UserInputException($"--max-upload-mb must be positive (got {MaxUploadBytes} bytes)");
        if (MaxModelsPerRequest < 1) throw new UserInputException($"at least one model per request must be allowed (got {MaxModelsPerRequest})");
    }

    /// <summary>
    /// The token: from <paramref name="tokenFile"/>, else <see cref="LatencyEndpointOptions.TokenVariable"/>, else the store's
    /// <c>token</c> file (created with a random token, readable by its owner only, on first start). Says where it came from.
    /// </summary>
    public static (string Token, string Source) ResolveToken(string? tokenFile, string storeFolder)
    {
        if (LatencyEndpointOptions.ReadTokenFile(tokenFile) is { } fromFile) return (fromFile, $"from {tokenFile}");
        if (Environment.GetEnvironmentVariable(LatencyEndpointOptions.TokenVariable) is { Length: > 0 } fromEnv) return (fromEnv.Trim(), $"from {LatencyEndpointOptions.TokenVariable}");
        var path = Path.Combine(Path.GetFullPath(storeFolder), "token");
        if (File.Exists(path)) return (LatencyEndpointOptions.ReadTokenFile(path)!, $"from {path}");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var token = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var stream = new FileStream(path, options)) stream.Write(Encoding.ASCII.GetBytes(token + "\n"));
        return (token, $"generated into {path} (give it to clients as {LatencyEndpointOptions.TokenVariable} or --latency-token-file)");
    }
}

/// <summary>What a server did since it started.</summary>
internal sealed record LatencyServerCounts(int Measurements, int ModelsMeasured, int Uploads, int CacheHits, int Queued, string? Measuring);

/// <summary>
/// <c>speedlimit latency serve</c>: measures ONNX models on this machine for a search running elsewhere,
/// with the same protocol and isolation as local profiling (the <see cref="ILatencyDevice"/> it is given,
/// normally the dedicated child process), one measurement at a time.
/// <list type="bullet">
/// <item><c>GET /v1/fingerprint?threads=N</c>: this device's <see cref="DeviceFingerprint"/> and upload limit.</item>
/// <item><c>HEAD /v1/models/SHA256</c>, <c>PUT /v1/models/SHA256</c>: upload a model once; the body must hash to its name
/// and load in ONNX Runtime, else 400 with the reason; over the limit 413.</item>
/// <item><c>POST /v1/measure?wait=S</c>: measure uploaded models (<see cref="RemoteMeasureRequest"/>). The request's content
/// key names the result: a request measured before is answered from the store, one being measured is joined, so a retry after
/// a dropped connection or a restart never measures twice. Waits up to S seconds, then 202 "measuring" (ask again).</item>
/// <item><c>GET /v1/status</c>: <see cref="LatencyServerCounts"/>.</item>
/// </list>
/// Every request needs <c>Authorization: Bearer TOKEN</c> (compared in constant time).
/// </summary>
public sealed class LatencyServer : IAsyncDisposable
{
    private readonly LatencyServerOptions _options;
    private readonly ILatencyDevice _device;
    private readonly TextWriter _log;
    private readonly LatencyStore _store;
    private readonly byte[] _tokenHash;
    private readonly Dictionary<string, Job> _jobs = new();
    private readonly SemaphoreSlim _oneAtATime = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private WebApplication? _app;
    private int _measurements, _modelsMeasured, _uploads, _cacheHits;
    private volatile string? _measuring;

    private sealed record Job(Task<IReadOnlyList<LatencyRecord>> Task);

    /// <param name="device">Where models are measured (default: the dedicated child process, as local profiling).</param>
    public LatencyServer(LatencyServerOptions options, ILatencyDevice? device = null, TextWriter? log = null)
    {
        options.Validate();
        _options = options;
        _device = device ?? ChildProcessLatencyDevice.Shared;
        _log = log ?? TextWriter.Null;
        _store = new LatencyStore(options.StoreFolder);
        _tokenHash = SHA256.HashData(Encoding.UTF8.GetBytes(options.Token));
    }

    internal LatencyStore Store => _store;

    /// <summary>The addresses it listens on (with the actual ports), once started.</summary>
    public IReadOnlyList<string> Addresses { get; private set; } = [];

    internal LatencyServerCounts Counts
    {
        get
        {
            int queued;
            lock (_jobs) queued = _jobs.Count;
            return new(_measurements, _modelsMeasured, _uploads, _cacheHits, queued, _measuring);
        }
    }

    public async Task StartAsync(CancellationToken cancel = default)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<IHostLifetime, QuietLifetime>(); // the caller decides when to stop (signals, tests)
        builder.WebHost.UseUrls([.. _options.Urls]);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = _options.MaxUploadBytes;
        });
        var app = builder.Build();
        app.Use(async (context, next) =>
        {
            if (!Authorized(context.Request.Headers.Authorization.ToString()))
            {
                context.Response.Headers.WWWAuthenticate = "Bearer";
                await Reply(context, HttpStatusCode.Unauthorized, new RemoteError("missing or wrong bearer token; send the token the server was started with"));
                return;
            }
            await next(context);
        });
        app.MapGet("/v1/fingerprint", GetFingerprint);
        app.MapMethods("/v1/models/{sha}", ["HEAD"], HeadModel);
        app.MapPut("/v1/models/{sha}", PutModel);
        app.MapPost("/v1/measure", PostMeasure);
        app.MapGet("/v1/status", context => Reply(context, HttpStatusCode.OK, Counts));
        try
        {
            await app.StartAsync(cancel);
        }
        catch (IOException ex)
        {
            await app.DisposeAsync();
            throw new UserInputException($"cannot listen on {string.Join(", ", _options.Urls)}: {ex.Message}; choose another --urls port");
        }
        _app = app;
        Addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.ToList() ?? [.. _options.Urls];
        Log($"listening on {string.Join(", ", Addresses)}; store {_store.Folder} ({_store.ModelCount} model(s)); upload limit {_options.MaxUploadBytes / 1e6:0.###} MB; device: {_device.Name} on {_device.Fingerprint(1)}");
        foreach (var a in Addresses)
            if (Uri.TryCreate(a, UriKind.Absolute, out var uri) && !IsLoopback(uri.Host))
                Log($"warning: {a} is plain HTTP on a network address: the token and the models travel unencrypted; prefer an SSH tunnel (ssh -L {uri.Port}:127.0.0.1:{uri.Port}) or a TLS proxy");
    }

    private static bool IsLoopback(string host) =>
        host is "localhost" || (IPAddress.TryParse(host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip));

    /// <summary>Stops listening and cancels the measurement in progress (its worker is stopped; nothing half-measured is stored).</summary>
    public async Task StopAsync()
    {
        _stopping.Cancel();
        if (_app is { } app)
        {
            _app = null;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await app.StopAsync(timeout.Token);
            await app.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stopping.Dispose();
    }

    private bool Authorized(string header)
    {
        const string prefix = "Bearer ";
        if (!header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return false;
        var presented = SHA256.HashData(Encoding.UTF8.GetBytes(header[prefix.Length..].Trim()));
        return CryptographicOperations.FixedTimeEquals(presented, _tokenHash);
    }

    private Task GetFingerprint(HttpContext context)
    {
        int threads = 1;
        if (context.Request.Query["threads"] is { Count: > 0 } t && (!int.TryParse(t[0], CultureInfo.InvariantCulture, out threads) || threads is < 1 or > 4096))
            return Reply(context, HttpStatusCode.BadRequest, new RemoteError($"threads '{t[0]}' must be a whole number from 1 to 4096"));
        return Reply(context, HttpStatusCode.OK, new RemoteDeviceInfo(_device.Fingerprint(threads), _device.Name, _options.MaxUploadBytes, RemoteProtocol.Version));
    }

    private Task HeadModel(HttpContext context)
    {
        var sha = (string)context.Request.RouteValues["sha"]!;
        context.Response.StatusCode = RemoteProtocol.IsSha256(sha) && _store.HasModel(sha) ? 200 : 404;
        return Task.CompletedTask;
    }

    private async Task PutModel(HttpContext context)
    {
        var sha = (string)context.Request.RouteValues["sha"]!;
        if (!RemoteProtocol.IsSha256(sha))
        {
            await Reply(context, HttpStatusCode.BadRequest, new RemoteError($"'{sha}' is not a SHA-256 (64 lower-case hex digits); upload models to /v1/models/SHA256 of their bytes"));
            return;
        }
        if (_store.HasModel(sha))
        {
            await Reply(context, HttpStatusCode.OK, new RemoteError("already stored"));
            return;
        }
        long limit = _options.MaxUploadBytes;
        if (context.Request.ContentLength > limit)
        {
            await Reply(context, HttpStatusCode.RequestEntityTooLarge, new RemoteError(TooLarge(context.Request.ContentLength.Value)));
            return;
        }
        var temp = _store.NewUploadPath();
        try
        {
            long total = 0;
            string actual;
            using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
            {
                await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
                {
                    var buffer = new byte[1 << 16];
                    int n;
                    while ((n = await context.Request.Body.ReadAsync(buffer, context.RequestAborted)) > 0)
                    {
                        total += n;
                        if (total > limit)
                        {
                            await Reply(context, HttpStatusCode.RequestEntityTooLarge, new RemoteError(TooLarge(total)));
                            return;
                        }
                        hash.AppendData(buffer, 0, n);
                        await file.WriteAsync(buffer.AsMemory(0, n), context.RequestAborted);
                    }
                }
                actual = Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
            }
            if (actual != sha)
            {
                Log($"refused upload {sha[..12]}: {total} bytes hash to {actual[..12]}");
                await Reply(context, HttpStatusCode.BadRequest, new RemoteError($"the upload's {total} bytes hash to {actual}, not {sha}: it was cut short or damaged on the way; upload it again"));
                return;
            }
            if (CheckModel(temp) is { } problem)
            {
                Log($"refused upload {sha[..12]} ({total} bytes): {problem}");
                await Reply(context, HttpStatusCode.BadRequest, new RemoteError($"not a model this server can measure: {problem}"));
                return;
            }
            _store.CommitModel(temp, sha);
            Interlocked.Increment(ref _uploads);
            Log($"stored model {sha[..12]} ({total / 1e6:0.###} MB)");
            await Reply(context, HttpStatusCode.Created, new RemoteError("stored"));
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await Reply(context, HttpStatusCode.RequestEntityTooLarge, new RemoteError(TooLarge(null)));
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or BadHttpRequestException)
        {
            Log($"upload {sha[..12]} cut short ({ex.GetType().Name}: {ex.Message}); nothing stored");
        }
        finally
        {
            try { File.Delete(temp); } catch (IOException) { }
        }
    }

    private string TooLarge(long? bytes) =>
        $"the upload{(bytes is { } b ? $" ({b / 1e6:0.###} MB so far)" : "")} is over this server's {_options.MaxUploadBytes / 1e6:0.###} MB limit; restart it with a larger --max-upload-mb";

    /// <summary>Null when ONNX Runtime loads the file as a SpeedLimit BERT export and runs it once on 8 tokens; else why not.</summary>
    private static string? CheckModel(string path)
    {
        try
        {
            using var runner = new OnnxRunner(path);
            using var buffer = runner.CreateBuffer(1, Math.Min(8, runner.PositionLimit ?? 8));
            Array.Fill(buffer.AttentionMask, 1L);
            runner.Run(buffer);
            return null;
        }
        catch (Exception ex) when (ex is InvalidDataException or ArgumentException or Microsoft.ML.OnnxRuntime.OnnxRuntimeException or InvalidOperationException)
        {
            return ex.Message.Replace(path, "the upload", StringComparison.Ordinal);
        }
    }

    private async Task PostMeasure(HttpContext context)
    {
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size) size.MaxRequestBodySize = 4 << 20;
        RemoteMeasureRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync<RemoteMeasureRequest>(context.Request.Body, RemoteProtocol.Json, context.RequestAborted);
        }
        catch (JsonException ex)
        {
            await Reply(context, HttpStatusCode.BadRequest, new RemoteError($"not a measurement request: {ex.Message}"));
            return;
        }
        catch (BadHttpRequestException)
        {
            await Reply(context, HttpStatusCode.RequestEntityTooLarge, new RemoteError("a measurement request is at most 4 MB; send fewer models per request"));
            return;
        }
        if (Problem(request) is { } problem)
        {
            await Reply(context, HttpStatusCode.BadRequest, new RemoteError(problem));
            return;
        }
        var missing = request!.Models.Select(m => m.Sha256).Where(s => !_store.HasModel(s)).Distinct().ToList();
        if (missing.Count > 0)
        {
            await Reply(context, HttpStatusCode.Conflict, new RemoteError($"{missing.Count} model(s) not uploaded (PUT /v1/models/SHA256 first)", missing));
            return;
        }
        double wait = _options.MaxWaitSeconds;
        if (context.Request.Query["wait"] is { Count: > 0 } w && double.TryParse(w[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var asked))
            wait = Math.Clamp(asked, 0, _options.MaxWaitSeconds);

        var key = RemoteProtocol.Key(request);
        Job? job = null;
        IReadOnlyList<LatencyRecord>? stored;
        lock (_jobs)
        {
            // Looked up under the lock that also retires finished jobs (after their result is stored), so a request is never measured twice.
            stored = _store.TryLoadResult(key);
            if (stored is null && !_jobs.TryGetValue(key, out job)) _jobs[key] = job = new Job(Run(key, request));
        }
        if (stored is not null)
        {
            Interlocked.Increment(ref _cacheHits);
            Log($"answered {key[..12]} from the store ({stored.Count} record(s))");
            await Reply(context, HttpStatusCode.OK, new RemoteMeasureReply(key, "done", stored, Cached: true));
            return;
        }
        var running = job!.Task;
        await Task.WhenAny(running, Task.Delay(TimeSpan.FromSeconds(wait), context.RequestAborted)); // WhenAny does not throw
        if (context.RequestAborted.IsCancellationRequested) return; // the client went away; the measurement carries on and is stored
        if (!running.IsCompleted)
        {
            await Reply(context, HttpStatusCode.Accepted, new RemoteMeasureReply(key, _measuring == key ? "measuring" : "queued"));
            return;
        }
        if (running.IsFaulted || running.IsCanceled)
        {
            var error = running.Exception?.InnerException?.Message ?? "the server is stopping";
            await Reply(context, running.IsCanceled ? HttpStatusCode.ServiceUnavailable : HttpStatusCode.UnprocessableEntity, new RemoteError($"measurement failed: {error}"));
            return;
        }
        await Reply(context, HttpStatusCode.OK, new RemoteMeasureReply(key, "done", running.Result));
    }

    private string? Problem(RemoteMeasureRequest? request)
    {
        if (request?.Models is null || request.Settings?.Protocol is null) return "a measurement request needs models and settings";
        if (request.Models.Count is 0) return "no models to measure";
        if (request.Models.Count > _options.MaxModelsPerRequest) return $"{request.Models.Count} models in one request; this server takes at most {_options.MaxModelsPerRequest}";
        foreach (var m in request.Models)
        {
            if (m.Sha256 is null || !RemoteProtocol.IsSha256(m.Sha256)) return $"model '{m.Sha256}' is not named by a SHA-256";
            if (m.Arch is null || m.Heads < 1) return $"model {m.Sha256[..12]} needs an architecture and a head count";
        }
        try
        {
            request.Settings.Validate();
        }
        catch (ArgumentException ex)
        {
            return ex.Message;
        }
        return null;
    }

    /// <summary>Measures one request when its turn comes, stores the result, then retires the job.</summary>
    private Task<IReadOnlyList<LatencyRecord>> Run(string key, RemoteMeasureRequest request) => Task.Run(async () =>
    {
        try
        {
            await _oneAtATime.WaitAsync(_stopping.Token);
            try
            {
                _measuring = key;
                var models = request.Models.Select(m => new ModelToMeasure(_store.ModelPath(m.Sha256), m.Arch, m.Heads, m.Precision)).ToList();
                Log($"measuring {key[..12]}: {models.Count} model(s), {request.Settings.Protocol.Name} protocol, {request.Settings.Threads} thread(s){(request.Settings.Bound is { } b ? $", {b}" : "")}");
                var clock = Stopwatch.StartNew();
                var records = _device.Measure(models, request.Settings, _stopping.Token);
                _store.SaveResult(key, request, records, clock.Elapsed.TotalSeconds);
                Interlocked.Increment(ref _measurements);
                Interlocked.Add(ref _modelsMeasured, models.Count);
                Log(string.Create(CultureInfo.InvariantCulture, $"measured {key[..12]}: {models.Count} model(s) in {clock.Elapsed.TotalSeconds:0.0} s"));
                return records;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log($"measurement {key[..12]} failed: {ex.Message}");
                throw;
            }
            finally
            {
                _measuring = null;
                _oneAtATime.Release();
            }
        }
        finally
        {
            lock (_jobs) _jobs.Remove(key);
        }
    });

    private static async Task Reply<T>(HttpContext context, HttpStatusCode status, T body)
    {
        if (context.Response.HasStarted) return;
        context.Response.StatusCode = (int)status;
        context.Response.ContentType = "application/json; charset=utf-8";
        try
        {
            await context.Response.WriteAsync(JsonSerializer.Serialize(body, RemoteProtocol.Json), context.RequestAborted);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException) { } // the client went away
    }

    private void Log(string message)
    {
        lock (_log)
        {
            _log.WriteLine($"{DateTime.Now.ToString("HH:mm:ss", CultureInfo.InvariantCulture)} {message}");
            _log.Flush();
        }
    }

    /// <summary>No console hooks: whoever hosts the server stops it.</summary>
    private sealed class QuietLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
