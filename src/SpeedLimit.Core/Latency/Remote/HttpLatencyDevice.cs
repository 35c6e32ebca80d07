using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace SpeedLimit.Latency.Remote;

/// <summary>
/// The deployment machine as a latency device: a <c>speedlimit latency serve</c> reached over HTTP.
/// Each model file is uploaded once (named by its SHA-256; the server keeps it, so a retry, a resumed
/// run or a restarted server does not upload it again), then measured by an idempotent request the
/// server answers from its store when it has measured it before. A request that drops, is refused or
/// times out is retried with backoff for <see cref="LatencyEndpointOptions.RetrySeconds"/>, then the
/// measurement fails with one line naming the endpoint; a refusal (bad token, a model it cannot load,
/// an upload over its limit) fails at once with the server's reason.
/// </summary>
public sealed class HttpLatencyDevice : ILatencyDevice, IDisposable
{
    private readonly LatencyEndpointOptions _endpoint;
    private readonly HttpClient _http;
    private readonly Dictionary<int, RemoteDeviceInfo> _info = new();
    private readonly object _gate = new();

    /// <summary>How long one ask of <c>POST /v1/measure</c> waits on the server before it answers "still measuring".</summary>
    public double PollSeconds { get; init; } = 20;

    public HttpLatencyDevice(LatencyEndpointOptions endpoint, HttpMessageHandler? handler = null)
    {
        _endpoint = endpoint;
        _http = new HttpClient(handler ?? new SocketsHttpHandler { PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30), ConnectTimeout = TimeSpan.FromSeconds(10) })
        {
            BaseAddress = endpoint.Url,
            Timeout = Timeout.InfiniteTimeSpan, // per request, below
        };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", endpoint.Token);
    }

    public string Name => $"remote {Address}";

    /// <summary>The endpoint's address without a trailing slash.</summary>
    public string Address => _endpoint.Url.ToString().TrimEnd('/');

    private int _uploads;

    /// <summary>Uploads this device sent (models the server did not have yet).</summary>
    public int Uploads => _uploads;

    public DeviceFingerprint Fingerprint(int threads) => Info(threads).Fingerprint;

    /// <summary>The server's fingerprint at a thread count, its device and upload limit (asked once per thread count).</summary>
    internal RemoteDeviceInfo Info(int threads, CancellationToken cancel = default)
    {
        lock (_gate)
        {
            if (_info.TryGetValue(threads, out var known)) return known;
            var info = Send("report its device fingerprint", () => new HttpRequestMessage(HttpMethod.Get, $"v1/fingerprint?threads={threads}"),
                TimeSpan.FromSeconds(30), cancel, (status, body) => status == HttpStatusCode.OK ? Parse<RemoteDeviceInfo>(body) : null)!;
            if (info.ProtocolVersion != RemoteProtocol.Version)
                throw new LatencyEndpointException($"the latency endpoint {Address} speaks protocol {info.ProtocolVersion}, this build {RemoteProtocol.Version}; run the same speedlimit version on both machines");
            return _info[threads] = info;
        }
    }

    public IReadOnlyList<LatencyRecord> Measure(IReadOnlyList<ModelToMeasure> models, MeasurementSettings settings, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(models);
        settings.Validate();
        if (models.Count == 0) return [];
        var info = Info(settings.Threads, cancel);
        var remote = new List<RemoteModel>(models.Count);
        foreach (var m in models)
        {
            cancel.ThrowIfCancellationRequested();
            if (!File.Exists(m.OnnxPath)) throw new FileNotFoundException($"model '{m.OnnxPath}' to measure does not exist");
            long size = new FileInfo(m.OnnxPath).Length;
            if (size > info.MaxUploadBytes)
                throw new LatencyEndpointException(TooLarge(m.OnnxPath, size, info.MaxUploadBytes));
            var sha = RemoteProtocol.Sha256OfFile(m.OnnxPath);
            Upload(m.OnnxPath, sha, info.MaxUploadBytes, cancel);
            remote.Add(new RemoteModel(sha, m.Arch, m.Heads, m.Precision));
        }
        var request = new RemoteMeasureRequest(remote, settings);
        var body = JsonSerializer.Serialize(request, RemoteProtocol.Json);
        for (int reuploads = 0; ; )
        {
            cancel.ThrowIfCancellationRequested();
            RemoteMeasureReply? reply = null;
            RemoteError? missing = null;
            Send<object>($"measure {models.Count} model(s)", () => new HttpRequestMessage(HttpMethod.Post, $"v1/measure?wait={PollSeconds.ToString(CultureInfo.InvariantCulture)}")
            {
                Content = new StringContent(body, Encoding.UTF8, "application/json"),
            }, TimeSpan.FromSeconds(PollSeconds + 60), cancel, (status, text) =>
            {
                if (status == HttpStatusCode.Conflict) return missing = Parse<RemoteError>(text);
                if (status is HttpStatusCode.OK or HttpStatusCode.Accepted) return reply = Parse<RemoteMeasureReply>(text);
                return null;
            });
            if (missing is not null)
            {
                // The server lost models it had (its store was cleared): upload them again, once.
                if (++reuploads > 1) throw new LatencyEndpointException($"the latency endpoint {Address} keeps losing uploaded models ({missing.Error}); check its --store folder");
                for (int i = 0; i < models.Count; i++) Upload(models[i].OnnxPath, remote[i].Sha256, info.MaxUploadBytes, cancel, force: true);
                continue;
            }
            if (reply!.State != "done") continue; // queued or measuring: ask again (the server keeps measuring meanwhile)
            if (reply.Records is null || reply.Records.Count != models.Count)
                throw new LatencyEndpointException($"the latency endpoint {Address} returned {reply.Records?.Count ?? 0} records for {models.Count} models");
            return reply.Records.Select(r => r with { Protocol = r.Protocol is { } n ? n with { Isolation = $"{Name}: {n.Isolation}" } : null }).ToList();
        }
    }

    /// <summary>Uploads a model unless the server has it (HEAD first).</summary>
    private void Upload(string path, string sha, long limit, CancellationToken cancel, bool force = false)
    {
        if (!force)
        {
            bool present = Send($"say whether it has model {sha[..12]}…", () => new HttpRequestMessage(HttpMethod.Head, $"v1/models/{sha}"), TimeSpan.FromSeconds(30), cancel,
                (status, _) => status == HttpStatusCode.OK ? true : status == HttpStatusCode.NotFound ? false : (bool?)null) == true;
            if (present) return;
        }
        long size = new FileInfo(path).Length;
        // Generous for a slow link: 10 minutes plus 1 s per MB.
        var timeout = TimeSpan.FromMinutes(10) + TimeSpan.FromSeconds(size / 1e6);
        Send($"store model '{Path.GetFileName(path)}' ({Mb(size)})", () =>
        {
            var content = new StreamContent(File.OpenRead(path), 1 << 16);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            content.Headers.ContentLength = size;
            var request = new HttpRequestMessage(HttpMethod.Put, $"v1/models/{sha}") { Content = content };
            request.Headers.ExpectContinue = true; // an oversized body is refused before it is sent
            return request;
        }, timeout, cancel, (status, text) =>
        {
            if (status is HttpStatusCode.OK or HttpStatusCode.Created) return true;
            if (status == HttpStatusCode.RequestEntityTooLarge) throw new LatencyEndpointException(TooLarge(path, size, limit));
            if (status == HttpStatusCode.BadRequest)
                throw new LatencyEndpointException($"the latency endpoint {Address} rejected model '{path}': {ErrorText(text)}");
            return (bool?)null;
        });
        Interlocked.Increment(ref _uploads);
    }

    private string TooLarge(string path, long size, long limit) =>
        $"model '{path}' is {Mb(size)}, over the {Mb(limit)} upload limit of the latency endpoint {Address}; restart 'speedlimit latency serve' there with a larger --max-upload-mb";

    private static string Mb(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:0.###} MB");

    /// <summary>
    /// Sends a request (built afresh for each attempt) and hands status and body to <paramref name="accept"/>, which returns
    /// the result, null for "not an answer I know" (an error naming the status), or throws. Connection failures,
    /// timeouts and 502/503/504 are retried with backoff until <see cref="LatencyEndpointOptions.RetrySeconds"/> have passed.
    /// </summary>
    private T? Send<T>(string what, Func<HttpRequestMessage> build, TimeSpan timeout, CancellationToken cancel, Func<HttpStatusCode, string, T?> accept)
    {
        var failingSince = (Stopwatch?)null;
        double backoff = 0.25;
        for (int attempt = 1; ; attempt++)
        {
            cancel.ThrowIfCancellationRequested();
            string failure;
            using (var timer = CancellationTokenSource.CreateLinkedTokenSource(cancel))
            {
                timer.CancelAfter(timeout);
                using var request = build(); // outside the try: a model file that cannot be read is not a connection failure
                try
                {
                    using var response = _http.Send(request, HttpCompletionOption.ResponseContentRead, timer.Token);
                    string text;
                    using (var reader = new StreamReader(response.Content.ReadAsStream(timer.Token), Encoding.UTF8))
                        text = reader.ReadToEnd();
                    var status = response.StatusCode;
                    if (status == HttpStatusCode.Unauthorized)
                        throw new LatencyEndpointException($"the latency endpoint {Address} refused the token (401): set {LatencyEndpointOptions.TokenVariable} or --latency-token-file to the token 'speedlimit latency serve' was started with");
                    if (status is HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout)
                        failure = $"HTTP {(int)status}";
                    else
                    {
                        var result = accept(status, text);
                        if (result is not null) return result;
                        throw new LatencyEndpointException($"the latency endpoint {Address} answered HTTP {(int)status} when asked to {what}: {ErrorText(text)}");
                    }
                }
                catch (OperationCanceledException) when (cancel.IsCancellationRequested)
                {
                    throw;
                }
                catch (OperationCanceledException)
                {
                    failure = $"no answer within {timeout.TotalSeconds:0} s";
                }
                catch (HttpRequestException ex)
                {
                    failure = Innermost(ex);
                }
                catch (IOException ex) when (ex is not LatencyEndpointException)
                {
                    failure = Innermost(ex);
                }
            }
            failingSince ??= Stopwatch.StartNew();
            if (failingSince.Elapsed.TotalSeconds + backoff > _endpoint.RetrySeconds)
                throw new LatencyEndpointException(string.Create(CultureInfo.InvariantCulture,
                    $"the latency endpoint {Address} did not answer ({failure}; {attempt} attempt(s) over {failingSince.Elapsed.TotalSeconds:0.#} s) when asked to {what}: check that 'speedlimit latency serve' runs there (or raise --latency-retry-seconds)"));
            if (cancel.WaitHandle.WaitOne(TimeSpan.FromSeconds(backoff))) cancel.ThrowIfCancellationRequested();
            backoff = Math.Min(backoff * 2, 5);
        }
    }

    private static string Innermost(Exception ex)
    {
        while (ex.InnerException is not null) ex = ex.InnerException;
        return ex.Message.TrimEnd('.');
    }

    private static T Parse<T>(string text)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(text, RemoteProtocol.Json) ?? throw new JsonException("empty reply");
        }
        catch (JsonException ex)
        {
            throw new LatencyEndpointException($"the latency endpoint sent a reply this build cannot read ({ex.Message}); run the same speedlimit version on both machines");
        }
    }

    /// <summary>The server's error message from a JSON error body, else the body itself (shortened).</summary>
    private static string ErrorText(string text)
    {
        try
        {
            if (JsonSerializer.Deserialize<RemoteError>(text, RemoteProtocol.Json) is { Error: { Length: > 0 } e }) return e;
        }
        catch (JsonException) { }
        text = text.Trim();
        return text.Length <= 300 ? text : text[..300] + "…";
    }

    public void Dispose() => _http.Dispose();
}
