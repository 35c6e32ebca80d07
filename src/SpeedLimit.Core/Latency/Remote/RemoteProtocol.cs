using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SpeedLimit.Latency.Remote;

/// <summary>
/// Where and how to reach a <c>speedlimit latency serve</c> on the deployment machine. Never part of a
/// run's fingerprint (the device is compared by its <see cref="DeviceFingerprint"/> instead), and the
/// token is never written anywhere.
/// </summary>
/// <param name="Url">The server's base address, e.g. http://10.0.0.7:5117.</param>
/// <param name="Token">The bearer token the server was started with.</param>
/// <param name="RetrySeconds">How long an endpoint that does not answer (refused, dropped, timed out) is retried before the run fails.</param>
public sealed record LatencyEndpointOptions(Uri Url, string Token, double RetrySeconds = 30)
{
    /// <summary>The environment variable the token is read from when no token file is given.</summary>
    public const string TokenVariable = "SPEEDLIMIT_LATENCY_TOKEN";

    /// <summary>Checks the address and token; <paramref name="urlFlag"/> names the flag in messages.</summary>
    public static LatencyEndpointOptions Create(string url, string? token, double retrySeconds, string urlFlag = "--latency-endpoint")
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            throw new UserInputException($"{urlFlag} '{url}' is not an http:// or https:// address; give the address 'speedlimit latency serve' printed, e.g. http://10.0.0.7:5117");
        if (string.IsNullOrWhiteSpace(token))
            throw new UserInputException($"{urlFlag} needs the server's token: set {TokenVariable} or pass --latency-token-file with the token 'speedlimit latency serve' was started with");
        if (!(retrySeconds >= 0) || !double.IsFinite(retrySeconds))
            throw new UserInputException($"--latency-retry-seconds {retrySeconds} must be a number of seconds ≥ 0");
        return new LatencyEndpointOptions(uri, token.Trim(), retrySeconds);
    }

    /// <summary>Reads a token file (first line, trimmed), or null when there is none.</summary>
    public static string? ReadTokenFile(string? path)
    {
        if (path is null) return null;
        if (!File.Exists(path)) throw new UserInputException($"token file '{path}' does not exist; give the file 'speedlimit latency serve' wrote its token to");
        var token = File.ReadAllText(path).Split('\n', 2)[0].Trim();
        if (token.Length == 0) throw new UserInputException($"token file '{path}' is empty; it must hold the server's token on its first line");
        return token;
    }

    /// <summary>Hides the token from records, logs and options dumps.</summary>
    public override string ToString() => $"{Url} (token hidden, retry {RetrySeconds:0.#} s)";
}

/// <summary>An endpoint that refused a request or stopped answering: one line for the user, naming the endpoint and the fix.</summary>
/// <remarks>An <see cref="IOException"/>: the CLI shows it as one <c>error:</c> line, and a run keeps its work folder to resume.</remarks>
public sealed class LatencyEndpointException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>One model of a remote measurement, named by the SHA-256 of its file (uploaded before).</summary>
internal sealed record RemoteModel(string Sha256, Architecture Arch, int Heads, Precision Precision);

/// <summary>The body of <c>POST /v1/measure</c>.</summary>
internal sealed record RemoteMeasureRequest(IReadOnlyList<RemoteModel> Models, MeasurementSettings Settings);

/// <summary>
/// The reply to <c>POST /v1/measure</c>: <c>done</c> with the records, or <c>queued</c>/<c>measuring</c>
/// (HTTP 202: ask again with the same request), or an <see cref="Error"/>.
/// </summary>
/// <param name="Id">The request's content key (the same request always has the same id).</param>
/// <param name="Cached">Served from the server's store without measuring.</param>
internal sealed record RemoteMeasureReply(string Id, string State, IReadOnlyList<LatencyRecord>? Records = null, string? Error = null, bool Cached = false);

/// <summary>The reply to <c>GET /v1/fingerprint</c>.</summary>
internal sealed record RemoteDeviceInfo(DeviceFingerprint Fingerprint, string Device, long MaxUploadBytes, int ProtocolVersion);

/// <summary>An error reply (any 4xx/5xx of the server).</summary>
internal sealed record RemoteError(string Error, IReadOnlyList<string>? Missing = null);

/// <summary>The wire format shared by the server and <see cref="HttpLatencyDevice"/>.</summary>
internal static class RemoteProtocol
{
    public const int Version = 1;

    /// <summary>The JSON of records and settings (the latency dataset's), indentation off.</summary>
    public static JsonSerializerOptions Json => LatencyDataset.JsonOptions;

    public static readonly JsonSerializerOptions JournalJson = new(LatencyDataset.JsonOptions) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>Lower-case hex SHA-256 of a file.</summary>
    public static string Sha256OfFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }

    /// <summary>True for 64 lower-case hex digits.</summary>
    public static bool IsSha256(string text) => text.Length == 64 && text.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f');

    /// <summary>The content key of a request: SHA-256 of its canonical JSON (our serializer, our property order), so a retry has the same key.</summary>
    public static string Key(RemoteMeasureRequest request) =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(request, Json)))).ToLowerInvariant();
}
