using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Latency;

/// <summary>
/// A made-up int8 BERT latency function for tests and benchmarks when no profiled dataset is at
/// hand: per-run and per-layer overheads, int8 GEMM work with dimensions rounded up to tiles of
/// 16 and an efficiency that drops for small matrices, fp32 attention and element-wise work,
/// times log-normal measurement noise. Its numbers are of the order of a 1-thread CPU run.
/// </summary>
internal sealed class SyntheticLatency(double noiseSigma = 0.01)
{
    public double NoiseSigma { get; } = noiseSigma;

    /// <summary>The noise-free latency (ms) at batch 1 × 128 tokens.</summary>
    public double TrueMs(Architecture a)
    {
        const double t = 128;
        double hp = (a.Hidden + 15) / 16 * 16, fp = (a.Ffn + 15) / 16 * 16;
        // int8 GEMM: ~60 GMAC/s at large sizes, slower for narrow matrices.
        double gemmMacs = t * (4 * hp * hp + 2 * hp * fp);
        double efficiency = 1 / (1 + 96 / hp);
        double gemmMs = gemmMacs / (60e6 * efficiency);
        double attnMs = 2 * t * t * a.Hidden / 8e6;            // fp32 score and context products
        double elemMs = t * (6.0 * a.Hidden + 2.0 * a.Ffn) / 1.5e6;
        double layerMs = 0.05 + gemmMs + attnMs + elemMs;
        return 0.12 + t * a.Hidden / 4e6 + a.Layers * layerMs;
    }

    public double MeasureMs(Architecture a, Random random)
    {
        // Box–Muller normal for the log-noise.
        double u1 = 1 - random.NextDouble(), u2 = random.NextDouble();
        double z = Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        return TrueMs(a) * Math.Exp(NoiseSigma * z);
    }

    /// <summary>Records for <paramref name="count"/> distinct random architectures of <paramref name="space"/>.</summary>
    public List<LatencyRecord> Sample(SearchSpace space, int count, Random random, Precision precision = Precision.Int8,
        string cpuModel = "synthetic cpu", int threads = 1, string runtimeVersion = "synthetic")
    {
        if (count > space.Count) throw new ArgumentException($"cannot draw {count} distinct architectures from a space of {space.Count}");
        var seen = new HashSet<Architecture>();
        var records = new List<LatencyRecord>(count);
        while (records.Count < count)
        {
            var a = space.Sample(random);
            if (!seen.Add(a)) continue;
            double ms = MeasureMs(a, random);
            records.Add(new LatencyRecord(a.Layers, a.Hidden, a.Ffn, space.Heads, precision, 1, 128,
                ms, ms * 1.05, ms, ms * 0.97, 20, cpuModel, threads, runtimeVersion, DateTimeOffset.UnixEpoch));
        }
        return records;
    }
}
