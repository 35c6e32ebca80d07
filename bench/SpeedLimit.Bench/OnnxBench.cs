using System.Diagnostics;
using SpeedLimit.Latency;
using SpeedLimit.Model;
using SpeedLimit.Onnx;
using SpeedLimit.Search;

namespace SpeedLimit.Bench;

/// <summary>ONNX Runtime latency of exported models: int8 vs fp32, fused vs standard int8 form, profiler throughput.</summary>
public sealed class OnnxBench : IBenchSection
{
    public string Name => "onnx";
    public string Description => "ORT latency, batch 1 × 128 tokens: int8 ÷ fp32 per architecture and thread count (wall-clock medians), int8 graph forms, profiler throughput";

    public void Run(BenchReport report, bool quick)
    {
        Architecture[] archs = quick
            ? [new(1, 120, 128), new(5, 528, 1016)]
            : [new(1, 120, 128), new(2, 264, 512), new(4, 396, 768), new(5, 528, 1016)];
        int runs = quick ? 10 : 20;
        report.Note($"machine: {LatencyProfiler.CpuModel()}, ONNX Runtime {OnnxRunner.RuntimeVersion}; shared with other work, so wall-clock figures are noisy");
        foreach (var threads in new[] { 1, 2 })
            foreach (var arch in archs)
            {
                double fp32 = MedianMs(arch, Precision.Fp32, threads, runs);
                double int8 = MedianMs(arch, Precision.Int8, threads, runs);
                var tag = $"{arch.Layers}_{arch.Hidden}_{arch.Ffn}_t{threads}";
                report.Figure($"onnx.fp32_ms.{tag}", fp32, "ms");
                report.Figure($"onnx.int8_ms.{tag}", int8, "ms");
                report.Figure($"onnx.int8_over_fp32.{tag}", int8 / fp32, "ratio");
            }

        // DynamicQuantizeMatMul written directly vs the standard-op form ORT fuses itself.
        var big = new Architecture(5, 528, 1016);
        double fused = MedianMs(big, Precision.Int8, 1, runs, QuantizedMatMulForm.Fused);
        double standard = MedianMs(big, Precision.Int8, 1, runs, QuantizedMatMulForm.Standard);
        report.Figure("onnx.int8_form.fused_ms.5_528_1016_t1", fused, "ms");
        report.Figure("onnx.int8_form.standard_ms.5_528_1016_t1", standard, "ms");
        report.Figure("onnx.int8_form.standard_over_fused", standard / fused, "ratio");

        // Profiler throughput: random architectures of the paper's space, both precisions each, default protocol.
        int count = quick ? 2 : 6;
        var random = new Random(1);
        var sample = Enumerable.Range(0, count).Select(_ => SearchSpace.Paper.Sample(random)).Distinct().ToList();
        var path = Path.Combine(Path.GetTempPath(), $"speedlimit-bench-{Guid.NewGuid():N}.jsonl");
        try
        {
            var sw = Stopwatch.StartNew();
            new LatencyProfiler(new LatencyProfilerOptions()).ProfileAll(sample, [Precision.Fp32, Precision.Int8], path);
            report.Figure("onnx.profiler.architectures_per_minute", sample.Count / sw.Elapsed.TotalMinutes, "arch/min");
        }
        finally { File.Delete(path); }
    }

    private static double MedianMs(Architecture arch, Precision precision, int threads, int runs, QuantizedMatMulForm form = QuantizedMatMulForm.Fused)
    {
        var config = new BertConfig(arch, 12, 30522, HeadKind.Classification);
        var layout = new BertParameterLayout(config);
        var bytes = BertOnnxExporter.ToBytes(config, layout, RandomBertWeights.Create(layout, 0),
            new OnnxExportOptions { Precision = precision, MatMulForm = form });
        using var runner = new OnnxRunner(bytes, new OnnxRunnerOptions { IntraOpThreads = threads });
        using var buffer = runner.CreateBuffer(1, 128);
        var random = new Random(0);
        for (int i = 0; i < buffer.InputIds.Length; i++) { buffer.InputIds[i] = random.Next(1000, 30522); buffer.AttentionMask[i] = 1; }
        return Timing.MedianSeconds(() => runner.Run(buffer), warmup: 5, runs: runs) * 1000;
    }
}
