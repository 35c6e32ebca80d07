using Microsoft.ML.OnnxRuntime;

namespace SpeedLimit.Onnx;

/// <summary>How ONNX Runtime runs a model.</summary>
public sealed class OnnxRunnerOptions
{
    /// <summary>Intra-op threads (the threads one inference uses). Inter-op is always 1 and execution sequential.</summary>
    public int IntraOpThreads { get; set; } = 1;
    /// <summary>Whether idle intra-op workers spin (ORT's default) rather than sleep; spinning lowers latency and burns CPU.</summary>
    public bool AllowSpinning { get; set; } = true;
}

/// <summary>Preallocated inputs and output for one (batch, sequence) shape; the arrays are what ORT reads and writes.</summary>
public sealed class OnnxInputBuffer : IDisposable
{
    internal OnnxInputBuffer(int batch, int sequenceLength, int labels)
    {
        Batch = batch;
        SequenceLength = sequenceLength;
        Labels = labels;
        InputIds = new long[batch * sequenceLength];
        AttentionMask = new long[batch * sequenceLength];
        TokenTypeIds = new long[batch * sequenceLength];
        Logits = new float[batch * labels];
        long[] shape = [batch, sequenceLength];
        Inputs = [
            OrtValue.CreateTensorValueFromMemory(InputIds, shape),
            OrtValue.CreateTensorValueFromMemory(AttentionMask, shape),
            OrtValue.CreateTensorValueFromMemory(TokenTypeIds, shape),
        ];
        Outputs = [OrtValue.CreateTensorValueFromMemory(Logits, [batch, labels])];
    }

    public int Batch { get; }
    public int SequenceLength { get; }
    public int Labels { get; }
    /// <summary>(batch, sequence) row-major.</summary>
    public long[] InputIds { get; }
    public long[] AttentionMask { get; }
    public long[] TokenTypeIds { get; }
    /// <summary>(batch, labels), written by <see cref="OnnxRunner.Run"/>.</summary>
    public float[] Logits { get; }
    internal OrtValue[] Inputs { get; }
    internal OrtValue[] Outputs { get; }

    public void Dispose()
    {
        foreach (var v in Inputs) v.Dispose();
        foreach (var v in Outputs) v.Dispose();
    }
}

/// <summary>
/// An exported BERT model on ONNX Runtime's CPU provider: explicit intra-op threads, one inter-op
/// thread, sequential execution, all graph optimizations. Owns its session; dispose it.
/// </summary>
public sealed class OnnxRunner : IDisposable
{
    private static readonly string[] InputNames = [BertOnnxExporter.InputIds, BertOnnxExporter.AttentionMask, BertOnnxExporter.TokenTypeIds];
    private static readonly string[] OutputNames = [BertOnnxExporter.Logits];
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();

    public OnnxRunner(byte[] model, OnnxRunnerOptions? options = null) : this(options, o => new InferenceSession(model, o), "in-memory model") { }

    public OnnxRunner(string path, OnnxRunnerOptions? options = null) : this(options, o => new InferenceSession(path, o), path)
    {
    }

    private OnnxRunner(OnnxRunnerOptions? options, Func<SessionOptions, InferenceSession> open, string source)
    {
        options ??= new OnnxRunnerOptions();
        if (options.IntraOpThreads < 1) throw new ArgumentException($"intra-op threads {options.IntraOpThreads} must be at least 1");
        Options = options;
        using var sessionOptions = new SessionOptions
        {
            IntraOpNumThreads = options.IntraOpThreads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        sessionOptions.AddSessionConfigEntry("session.intra_op.allow_spinning", options.AllowSpinning ? "1" : "0");
        try
        {
            _session = open(sessionOptions);
        }
        catch (OnnxRuntimeException ex)
        {
            _runOptions.Dispose();
            throw new InvalidDataException($"ONNX Runtime could not load {source}: {ex.Message}", ex);
        }
        if (!_session.OutputMetadata.TryGetValue(BertOnnxExporter.Logits, out var logits) || logits.Dimensions.Length != 2 || logits.Dimensions[1] < 1)
        {
            Dispose();
            throw new InvalidDataException($"{source} is not a SpeedLimit BERT export: it needs an output '{BertOnnxExporter.Logits}' of shape (batch, labels)");
        }
        Labels = logits.Dimensions[1];
        Metadata = new Dictionary<string, string>(_session.ModelMetadata.CustomMetadataMap);
        if (Metadata.TryGetValue(BertOnnxExporter.PositionLimitKey, out var limit) && int.TryParse(limit, System.Globalization.CultureInfo.InvariantCulture, out var n) && n > 0)
            PositionLimit = n;
        Contract = ModelContract.FromMetadata(Metadata);
    }

    public OnnxRunnerOptions Options { get; }
    public int Labels { get; }
    /// <summary>The file's metadata_props (empty for files without any).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Positions the model has embeddings for (from its metadata); null when the file does not say.</summary>
    public int? PositionLimit { get; }
    /// <summary>The task and tokenizer contract the file carries, if any.</summary>
    public ModelContract? Contract { get; }

    /// <summary>Fails with a clear message when an input is longer than the model can take (ORT would fail deep inside with a broadcast error).</summary>
    private void CheckLength(int length, string what)
    {
        if (PositionLimit is int limit && length > limit)
            throw new ArgumentException($"{what} has {length} tokens but the model has only {limit} positions; truncate inputs to at most {limit} tokens" +
                (Contract is { } c ? $" (the model was trained and scored at max length {c.MaxLength}, longest-first truncation)" : ""));
    }

    /// <summary>ONNX Runtime's native library version, e.g. "1.31.1".</summary>
    public static string RuntimeVersion => OrtEnv.Instance().GetVersionString();

    public OnnxInputBuffer CreateBuffer(int batch, int sequenceLength)
    {
        if (batch < 1 || sequenceLength < 1) throw new ArgumentException($"batch {batch} and sequence length {sequenceLength} must be at least 1");
        CheckLength(sequenceLength, "a buffer");
        return new OnnxInputBuffer(batch, sequenceLength, Labels);
    }

    /// <summary>Runs the model on the buffer's inputs, writing <see cref="OnnxInputBuffer.Logits"/>.</summary>
    public void Run(OnnxInputBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        CheckLength(buffer.SequenceLength, "the input");
        _session.Run(_runOptions, InputNames, buffer.Inputs, OutputNames, buffer.Outputs);
    }

    /// <summary>
    /// Logits for many examples, <paramref name="batchSize"/> at a time; each batch is padded (id 0,
    /// mask 0) to its longest example. Returns one (labels) row per example, in order.
    /// </summary>
    public float[][] Predict(IReadOnlyList<int[]> tokenIds, IReadOnlyList<int[]>? tokenTypeIds = null, int batchSize = 32)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        if (batchSize < 1) throw new ArgumentException($"batch size {batchSize} must be at least 1");
        if (tokenTypeIds is not null && tokenTypeIds.Count != tokenIds.Count)
            throw new ArgumentException($"{tokenTypeIds.Count} token-type rows for {tokenIds.Count} examples");
        var result = new float[tokenIds.Count][];
        OnnxInputBuffer? buffer = null;
        try
        {
            for (int start = 0; start < tokenIds.Count; start += batchSize)
            {
                int count = Math.Min(batchSize, tokenIds.Count - start);
                int length = 1;
                for (int i = 0; i < count; i++)
                {
                    length = Math.Max(length, tokenIds[start + i].Length);
                    CheckLength(tokenIds[start + i].Length, $"example {start + i}");
                }
                if (buffer is null || buffer.Batch != count || buffer.SequenceLength != length)
                {
                    buffer?.Dispose();
                    buffer = CreateBuffer(count, length);
                }
                Array.Clear(buffer.InputIds);
                Array.Clear(buffer.AttentionMask);
                Array.Clear(buffer.TokenTypeIds);
                for (int i = 0; i < count; i++)
                {
                    var ids = tokenIds[start + i];
                    var types = tokenTypeIds?[start + i];
                    if (types is not null && types.Length != ids.Length)
                        throw new ArgumentException($"example {start + i}: {types.Length} token types for {ids.Length} tokens");
                    for (int t = 0; t < ids.Length; t++)
                    {
                        buffer.InputIds[i * length + t] = ids[t];
                        buffer.AttentionMask[i * length + t] = 1;
                        buffer.TokenTypeIds[i * length + t] = types?[t] ?? 0;
                    }
                }
                Run(buffer);
                for (int i = 0; i < count; i++) result[start + i] = buffer.Logits.AsSpan(i * Labels, Labels).ToArray();
            }
        }
        finally
        {
            buffer?.Dispose();
        }
        return result;
    }

    public void Dispose()
    {
        _session?.Dispose();
        _runOptions.Dispose();
    }
}
