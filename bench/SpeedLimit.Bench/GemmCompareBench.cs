using System.Diagnostics;
using SpeedLimit.Kernels;

namespace SpeedLimit.Bench;

/// <summary>
/// Compares GEMM driver settings in one process, their calls interleaved, which these shared VMs need: one
/// build's figures move by 10–15 % from minute to minute, so separate runs of two settings compare two
/// moments more than two settings. GEMM_VARIANTS lists the settings, ';' between variants, each "default"
/// or NAME=value pairs (<see cref="GemmKnobs"/>), e.g. "default;KC=384" or "KC=768;KC=1024,MC=128"; GEMM_SHAPES
/// picks shapes of the <c>gemm-tune</c> list (e.g. "128x3072x768,4096x768x3072"), GEMM_SECONDS the time per
/// shape and thread count (3, or 1 with --quick), GEMM_T1=1 one thread only, GEMM_PREPACKED=1 the NN/NT products with
/// their B packed once beforehand (<see cref="PackedMatrix"/>, as frozen weights run) instead of in every call.
/// </summary>
/// <remarks>
/// Each round times one call of every variant (a few calls for small products), in forward order on even
/// rounds and backward on odd ones, so no variant always follows the same neighbour; OpenBLAS, when present,
/// is timed first in the round, and on two threads the round then sleeps 120 ms (its worker threads spin for
/// a while after a call and would slow whatever runs next) and makes one untimed call (a worker that slept
/// takes a while to wake). Figures are medians over rounds; ratios are medians of per-round ratios.
/// </remarks>
public sealed class GemmCompareBench : IBenchSection
{
    public string Name => "gemm-ab";
    public string Description => "GEMM driver settings compared in one process, calls interleaved (GEMM_VARIANTS, GEMM_SHAPES)";

    private static readonly string[] DefaultShapes = ["128x3072x768", "128x768x3072", "4096x768x3072", "3072x768x4096", "446x1024x192"];

    public void Run(BenchReport report, bool quick)
    {
        var variants = (Environment.GetEnvironmentVariable("GEMM_VARIANTS") ?? "default;KC=384")
            .Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var v in variants) GemmKnobs.Validate(v);
        var shapeNames = Environment.GetEnvironmentVariable("GEMM_SHAPES")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            ?? DefaultShapes;
        double seconds = double.TryParse(Environment.GetEnvironmentVariable("GEMM_SECONDS"), System.Globalization.CultureInfo.InvariantCulture, out double s) && s > 0
            ? s : quick ? 1 : 3;
        int[] threadCounts = Environment.GetEnvironmentVariable("GEMM_T1") == "1" || Environment.ProcessorCount < 2 ? [1] : [1, 2];
        report.Note($"  variants: {string.Join(" | ", variants)}; {seconds:0.#} s per shape and thread count; load before: {Affinity.LoadAverage()}");
        report.Note($"  knobs: {GemmKnobs.Names}");
        var blas = OpenBlas.TryLoad(out string why);
        report.Note(blas is null ? $"  OpenBLAS: skipped ({why})." : $"  OpenBLAS: running core {blas.Core}");

        foreach (string shape in shapeNames)
        {
            var matches = GemmTuneBench.Shapes.Where(x => $"{x.M}x{x.N}x{x.K}" == shape).ToList();
            if (matches.Count == 0)
            {
                report.Note($"  {shape}: not in the gemm-tune shape list; skipped (shapes are MxNxK, e.g. 128x3072x768)");
                continue;
            }
            foreach (var (ta, tb, m, n, k) in matches)
                foreach (int t in threadCounts)
                    Compare(report, variants, blas, ta, tb, m, n, k, t, seconds);
        }
        GemmKnobs.ApplyVariant("default");
        report.Note($"  load after: {Affinity.LoadAverage()}");
    }

    private static void Compare(BenchReport report, string[] variants, OpenBlas? blas, bool ta, bool tb, int m, int n, int k, int threads, double seconds)
    {
        var a = Filled(m * k, 7); var b = Filled(k * n, 5); var c = new float[m * n]; var cBlas = new float[m * n];
        int lda = ta ? m : k, ldb = tb ? k : n;
        double flops = 2.0 * m * n * k;
        int reps = (int)Math.Clamp(5e7 / flops, 1, 1000); // a few milliseconds a timed run
        // Packed with the default settings: a variant that changes the depth block would not match it (compare packing
        // settings per call, without GEMM_PREPACKED).
        GemmKnobs.ApplyVariant("default");
        var packed = Environment.GetEnvironmentVariable("GEMM_PREPACKED") == "1" && !ta ? PackedMatrix.Pack(tb, k, n, b, ldb, threads) : null;
        void Ours() // with the variant applied
        {
            if (packed is not null)
                for (int i = 0; i < reps; i++) Gemm.Multiply(false, m, a, lda, packed, c, n, threads: threads);
            else
                for (int i = 0; i < reps; i++) Gemm.Multiply(ta, tb, m, n, k, a, lda, b, ldb, c, n, threads: threads);
        }
        void Theirs()
        {
            blas!.SetThreads(threads);
            for (int i = 0; i < reps; i++) blas.Sgemm(ta, tb, m, n, k, a, lda, b, ldb, cBlas, n);
        }
        foreach (var variant in variants) // warm-up: pack buffers, JIT
        {
            GemmKnobs.ApplyVariant(variant);
            Ours();
        }
        if (blas is not null) Theirs();

        var times = variants.Select(_ => new List<double>()).ToArray();
        var blasTimes = new List<double>();
        var clock = Stopwatch.StartNew();
        for (int round = 0; clock.Elapsed.TotalSeconds < seconds || round < 3; round++)
        {
            if (blas is not null)
            {
                blasTimes.Add(Timing.Seconds(Theirs) / reps);
                if (threads > 1) Thread.Sleep(120);
            }
            for (int i = 0; i < variants.Length; i++)
            {
                int v = round % 2 == 0 ? i : variants.Length - 1 - i;
                GemmKnobs.ApplyVariant(variants[v]);
                if (i == 0 && threads > 1) Ours();
                times[v].Add(Timing.Seconds(Ours) / reps);
            }
        }

        string name = $"gemm-ab {(ta ? "T" : "N")}{(tb ? "T" : "N")} {m}x{n}x{k} t{threads}";
        for (int v = 0; v < variants.Length; v++)
        {
            report.Figure($"{name} [{variants[v]}]", flops / Timing.Median(times[v]) / 1e9, "GFLOP/s");
            if (v > 0) report.Figure($"{name} [{variants[v]}] / [{variants[0]}]", PairedRatio(times[0], times[v]), "ratio");
        }
        if (blas is null) return;
        report.Figure($"{name} openblas", flops / Timing.Median(blasTimes) / 1e9, "GFLOP/s");
        for (int v = 0; v < variants.Length; v++)
            report.Figure($"{name} [{variants[v]}] / openblas", PairedRatio(blasTimes, times[v]), "ratio");
    }

    /// <summary>Speed of <paramref name="faster"/> over <paramref name="baseline"/>: the median of the rounds' time ratios.</summary>
    private static double PairedRatio(List<double> baseline, List<double> faster) =>
        Timing.Median(baseline.Zip(faster, (x, y) => x / y).ToArray());


    private static float[] Filled(int length, int period)
    {
        var x = new float[length];
        for (int i = 0; i < length; i++) x[i] = (i % period) * 0.1f;
        return x;
    }
}
