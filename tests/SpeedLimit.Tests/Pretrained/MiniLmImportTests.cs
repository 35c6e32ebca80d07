using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Pretrained;
using N = SpeedLimit.Model.BertParameterLayout.Names;

namespace SpeedLimit.Tests.Pretrained;

/// <summary>
/// The built-in all-MiniLM-L6-v2: our import (weights found by following the anonymous MatMuls to their
/// named biases) run on our engine against ONNX Runtime running the package's own ONNX file.
/// </summary>
public sealed class MiniLmImportTests : IClassFixture<MiniLmImportTests.Fixture>
{
    public sealed class Fixture : IDisposable
    {
        public Fixture()
        {
            Encoder = PretrainedLoader.LoadMiniLm();
            Dir = Directory.CreateTempSubdirectory("minilm-test-").FullName;
            VocabPath = Path.Combine(Dir, "vocab.txt");
            File.WriteAllLines(VocabPath, Encoder.Vocab);
            Tokenizer = BertTextEncoder.FromVocabFile(VocabPath);
        }

        public PretrainedEncoder Encoder { get; }
        public string Dir { get; }
        public string VocabPath { get; }
        public BertTextEncoder Tokenizer { get; }
        public void Dispose() => Directory.Delete(Dir, recursive: true);
    }

    private readonly Fixture _f;
    public MiniLmImportTests(Fixture f) => _f = f;

    // Real sentences (SST-2 style reviews and plain text), different lengths so padding is exercised.
    internal static readonly string[] Sentences =
    [
        "a gorgeous, witty, seductive movie.",
        "the plot is nothing but boilerplate clichés from start to finish, and the script assumes that not only would subtlety be lost on the target audience, but that it's also too stupid to realize that they've already seen this exact same movie a hundred times",
        "Hello world!",
        "The quick brown fox jumps over the lazy dog; naïve café owners don't mind.",
    ];

    internal static (int[] Ids, int[] Mask, int[] Types, int Seq) Encode(BertTextEncoder tokenizer, IReadOnlyList<string> sentences, int maxLength = 64)
    {
        var encoded = sentences.Select(s => EncodedText.Build(tokenizer, tokenizer.Tokenize(s), null, maxLength)).ToList();
        int seq = encoded.Max(e => e.Length);
        int b = encoded.Count;
        var ids = new int[b * seq]; var mask = new int[b * seq]; var types = new int[b * seq];
        for (int i = 0; i < b; i++)
            for (int t = 0; t < encoded[i].Length; t++)
            {
                ids[i * seq + t] = encoded[i].InputIds[t];
                types[i * seq + t] = encoded[i].TokenTypeIds[t];
                mask[i * seq + t] = 1;
            }
        for (int i = 0; i < ids.Length; i++) if (mask[i] == 0) ids[i] = tokenizer.PadId;
        return (ids, mask, types, seq);
    }

    [Fact]
    public void ImportReadsTheShapeFromTheGraph()
    {
        var e = _f.Encoder;
        Assert.Equal(new Architecture(6, 384, 1536), e.Arch);
        Assert.Equal(12, e.Config.Heads);
        Assert.Equal(30522, e.Config.VocabSize);
        Assert.Equal(512, e.Config.MaxPositions);
        Assert.Equal(2, e.Config.TypeVocabSize);
        Assert.Equal(1e-12f, e.Config.LayerNormEps);
        Assert.True(e.HasPooler);
        Assert.Equal("[PAD]", e.Vocab[0]);
        Assert.DoesNotContain(e.Vocab, v => v.EndsWith('\r'));
    }

    [Fact]
    public void EngineForwardEqualsOnnxRuntimeOnThePackagesOwnModel()
    {
        var (ids, mask, types, seq) = Encode(_f.Tokenizer, Sentences);
        int batch = Sentences.Length, hidden = 384;
        var model = _f.Encoder.CreateModel(HeadKind.Classification, 2, seed: 1, out var random);
        Assert.Equal([N.ClassifierWeight, N.ClassifierBias], random); // everything else came from the file
        model.Threads = 2;
        model.Forward(new EncoderInput(batch, seq, ids, types, mask));
        var ours = model.HiddenState(6).ToArray();

        using var session = new InferenceSession(MiniLmResources.ReadModelOnnx());
        var shape = new[] { batch, seq };
        using var results = session.Run([
            NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(ids.Select(i => (long)i).ToArray(), shape)),
            NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(mask.Select(i => (long)i).ToArray(), shape)),
            NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(types.Select(i => (long)i).ToArray(), shape)),
        ]);
        var reference = results.First(r => r.Name == "last_hidden_state").AsEnumerable<float>().ToArray();
        Assert.Equal(reference.Length, ours.Length);

        // Real tokens: within 1e-4 of the largest magnitude (padding rows are compared too: both mask the same keys).
        double maxRef = reference.Max(v => Math.Abs(v)), maxDiff = 0;
        for (int i = 0; i < ours.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - reference[i]));
        Assert.True(maxDiff / maxRef <= 1e-4, $"last hidden state differs by {maxDiff:G3} (max |ref| {maxRef:G3}, relative {maxDiff / maxRef:G3})");

        // The pooler (tanh(W·h_CLS + b)) from the imported tensors equals ORT's pooler output.
        var pooled = results.First(r => r.Name != "last_hidden_state").AsEnumerable<float>().ToArray();
        var w = model.Tensor(N.PoolerWeight).ToArray(); var bias = model.Tensor(N.PoolerBias).ToArray();
        for (int b = 0; b < batch; b++)
            for (int o = 0; o < hidden; o++)
            {
                double sum = bias[o];
                for (int k = 0; k < hidden; k++) sum += w[o * hidden + k] * reference[(b * seq) * hidden + k];
                Assert.True(Math.Abs(Math.Tanh(sum) - pooled[b * hidden + o]) < 1e-4, $"pooler output {b},{o}: {Math.Tanh(sum)} vs {pooled[b * hidden + o]}");
            }
    }

    [Theory]
    [InlineData(SafeTensors.F32)]
    [InlineData(SafeTensors.F16)]
    [InlineData(SafeTensors.BF16)]
    public void HuggingFaceFolderRoundTripGivesTheSameModel(string dtype)
    {
        var model = _f.Encoder.CreateModel(HeadKind.Classification, 2, seed: 3, out _);
        var dir = Path.Combine(_f.Dir, "hf-" + dtype);
        HuggingFaceFolder.Write(dir, model, _f.Encoder.Vocab, lowerCase: true, dtype, labelNames: ["negative", "positive"]);
        var back = HuggingFaceFolder.Read(dir);
        Assert.Equal(model.Config, back.Config with { });
        Assert.Equal(_f.Encoder.Vocab, back.Vocab);
        var reloaded = back.CreateModel(HeadKind.Classification, 2, seed: 99, out var random);
        Assert.Empty(random); // the classifier came back too
        // Per element: exact for F32; within the format's rounding (half an ulp: 2^-11 relative for F16, 2^-8 for BF16) otherwise.
        double rel = dtype switch { SafeTensors.F16 => 1.0 / 2048, SafeTensors.BF16 => 1.0 / 256, _ => 0 };
        var a = model.Parameters; var c = reloaded.Parameters;
        int worst = -1; double worstExcess = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double tol = rel * Math.Abs(a[i]) + (dtype == SafeTensors.F16 ? 6e-8 : 0); // F16 subnormals: absolute step 2^-24
            double excess = Math.Abs(a[i] - c[i]) - tol;
            if (excess > worstExcess) { worstExcess = excess; worst = i; }
        }
        Assert.True(worst < 0, worst < 0 ? "" : $"parameter {worst}: {a[worst]} came back as {c[worst]} ({dtype})");
        if (dtype != SafeTensors.F32) Assert.False(a.AsSpan().SequenceEqual(c), "16-bit storage should round some values");

        // And the model computes the same (up to the rounding) on real sentences.
        var (ids, mask, types, seq) = Encode(_f.Tokenizer, Sentences.Take(2).ToList());
        var input = new EncoderInput(2, seq, ids, types, mask);
        var expected = model.Forward(input).ToArray();
        var actual = reloaded.Forward(input).ToArray();
        double logitTol = dtype switch { SafeTensors.F32 => 0, SafeTensors.F16 => 2e-2, _ => 1e-1 };
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= logitTol, $"logit {i}: {expected[i]} vs {actual[i]} ({dtype})");
    }
}
