using System.CommandLine;
using SpeedLimit.Latency.Remote;

namespace SpeedLimit.Cli.Commands;

/// <summary>
/// The flags that send latency measurements to a <c>speedlimit latency serve</c> on the deployment machine
/// (search, demo, profile). The token comes from a file or the environment, never from the command line,
/// so it does not show in <c>ps</c>.
/// </summary>
internal sealed class LatencyEndpointFlags
{
    public readonly Option<string?> Endpoint = new("--latency-endpoint")
    {
        Description = $"Measure latency on the deployment machine: the address of a 'speedlimit latency serve' there, e.g. http://10.0.0.7:{LatencyServerOptions.DefaultPort} (token from {LatencyEndpointOptions.TokenVariable} or --latency-token-file).",
    };
    public readonly Option<string?> TokenFile = new("--latency-token-file") { Description = $"File with the --latency-endpoint's token on its first line (default: the {LatencyEndpointOptions.TokenVariable} environment variable)." };
    public readonly Option<double> RetrySeconds = new("--latency-retry-seconds") { Description = "How long a --latency-endpoint that stops answering is retried (with backoff) before the command fails.", DefaultValueFactory = _ => 30 };

    public IEnumerable<Option> All => [Endpoint, TokenFile, RetrySeconds];

    /// <summary>The endpoint, or null to measure on this machine.</summary>
    public LatencyEndpointOptions? Bind(ParseResult parse)
    {
        if (parse.GetValue(Endpoint) is not { } url)
        {
            if (parse.GetValue(TokenFile) is not null) throw new UserInputException("--latency-token-file is for --latency-endpoint; give the endpoint too, or drop the token file to measure here");
            return null;
        }
        var token = LatencyEndpointOptions.ReadTokenFile(parse.GetValue(TokenFile)) ?? Environment.GetEnvironmentVariable(LatencyEndpointOptions.TokenVariable);
        return LatencyEndpointOptions.Create(url, token, parse.GetValue(RetrySeconds));
    }
}
