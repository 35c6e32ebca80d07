using SpeedLimit.Kernels;
using SpeedLimit.Model;
using SpeedLimit.Onnx;
using SpeedLimit.Quantization;

namespace SpeedLimit.Bench;

/// <summary>
/// Int8 candidate scoring: the int8-simulated forward on integer dot products (<see cref="Int8Gemm"/>) beside the
/// earlier simulation (integer products through the fp32 GEMM) in the same run, interleaved; and the integer
/// kernel's throughput beside the fp32 GEMM's on one layer shape.
/// </summary>
public sealed class Int8Bench : IBenchSection
{
    public string Name => "int8";
    public string Description => "int8-simulated forward (candidate scoring): integer kernels vs the fp32-product simulation, 1 and 2 threads";

    public void Run(BenchReport report, bool quick)
    {
        int runs = quick ? 3 : 7;
        report.Note($"  load before: {Affinity.LoadAverage()} (/proc/loadavg); int8 path: {Int8Gemm.AutoPath} (AvxVnni {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}, "
            + $"Avx512BW {System.Runtime.Intrinsics.X86.Avx512BW.IsSupported}); medians of {runs} interleaved runs");

        // Kernel alone: one (M=2048, K=768, N=768) layer, integer ops vs fp32 flops per second.
        {
            int m = 2048, k = 768, n = 768;
            var rng = new Random(1);
            var x = new byte[m * k]; rng.NextBytes(x);
            var w = new sbyte[n * k]; for (int i = 0; i < w.Length; i++) w[i] = (sbyte)rng.Next(-127, 128);
            var packed = PackedInt8Matrix.Pack(w, n, k);
            var acc = new int[m * n];
            var xf = x.Select(v => (float)v).ToArray(); var wf = w.Select(v => (float)v).ToArray(); var y = new float[m * n];
            foreach (int t in new[] { 1, 2 })
            {
                var (ti, tf) = Timing.Interleaved(() => Int8Gemm.Multiply(m, x, k, 128, packed, acc, n, t),
                    () => Gemm.Multiply(false, true, m, n, k, xf, k, wf, k, y, n, threads: t), runs);
                double ops = 2.0 * m * n * k;
                report.Figure($"int8 gemm M={m} K={k} N={n} t{t}", ops / ti / 1e9, "GOP/s");
                report.Figure($"fp32 gemm M={m} K={k} N={n} t{t}", ops / tf / 1e9, "GFLOP/s");
                report.Figure($"int8 gemm ÷ fp32 gemm speed t{t}", tf / ti, "ratio");
            }
        }

        Architecture[] archs = quick ? [new(4, 256, 1024)] : [new(4, 256, 1024), new(5, 528, 1016)];
        foreach (var arch in archs)
        {
            var config = new BertConfig(arch, arch.Hidden % 12 == 0 ? 12 : 4, 30522, HeadKind.Classification, maxPositions: 128);
            var model = new BertModel(config, RandomBertWeights.Create(new BertParameterLayout(config), 0));
            var integer = new Int8Simulation(model);
            var floats = new Int8Simulation(model, perChannel: false, Int8GemmPath.Auto, floatProducts: true);
            foreach (var (batch, seq) in new[] { (64, 64), (1, 128) })
            {
                var rng = new Random(2);
                var input = EncoderInput.Unpadded(batch, seq, Enumerable.Range(0, batch * seq).Select(_ => rng.Next(1000, 30522)).ToArray());
                foreach (int t in new[] { 1, 2 })
                {
                    model.Threads = t;
                    var (ti, tf) = Timing.Interleaved(() => model.Forward(input, int8: integer), () => model.Forward(input, int8: floats), runs);
                    string tag = $"{arch}_b{batch}x{seq}_t{t}";
                    report.Figure($"int8 forward integer kernels {tag}", ti * 1e3, "ms");
                    report.Figure($"int8 forward fp32 products {tag}", tf * 1e3, "ms");
                    report.Figure($"int8 forward speed-up {tag}", tf / ti, "ratio");
                }
            }
        }
        report.Note($"  load after: {Affinity.LoadAverage()}");
    }
}
