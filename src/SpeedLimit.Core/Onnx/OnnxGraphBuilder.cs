namespace SpeedLimit.Onnx;

/// <summary>Builds an <see cref="OnnxGraph"/> node by node, naming intermediate values uniquely.</summary>
internal sealed class OnnxGraphBuilder(string name)
{
    private readonly List<OnnxNode> _nodes = [];
    private readonly List<OnnxTensor> _initializers = [];
    private readonly List<OnnxValueInfo> _inputs = [];
    private readonly List<OnnxValueInfo> _outputs = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private int _counter;

    public string Input(string inputName, OnnxDataType type, params object[] dims)
    {
        Claim(inputName);
        _inputs.Add(new OnnxValueInfo(inputName, type, dims));
        return inputName;
    }

    public void Output(string value, OnnxDataType type, params object[] dims) => _outputs.Add(new OnnxValueInfo(value, type, dims));

    public string Initializer(OnnxTensor tensor)
    {
        Claim(tensor.Name);
        _initializers.Add(tensor);
        return tensor.Name;
    }

    public string Float(string tensorName, long[] dims, ReadOnlySpan<float> values) => Initializer(OnnxTensor.Float(tensorName, dims, values));
    public string Int64(string tensorName, long[] dims, ReadOnlySpan<long> values) => Initializer(OnnxTensor.Int64(tensorName, dims, values));
    public string Int8(string tensorName, long[] dims, ReadOnlySpan<sbyte> values) => Initializer(OnnxTensor.Int8(tensorName, dims, values));

    /// <summary>Adds a node with one output and returns that output's name (<paramref name="output"/> or a fresh one).</summary>
    public string Node(string opType, string[] inputs, OnnxAttribute[]? attributes = null, string? output = null, string domain = "") =>
        NodeMulti(opType, inputs, 1, attributes, output is null ? null : [output], domain)[0];

    /// <summary>Adds a node with several outputs.</summary>
    public string[] NodeMulti(string opType, string[] inputs, int outputCount, OnnxAttribute[]? attributes = null, string[]? outputs = null, string domain = "")
    {
        int id = _counter++;
        outputs ??= Enumerable.Range(0, outputCount).Select(i => $"{opType}_{id}_out{i}").ToArray();
        foreach (var o in outputs) Claim(o);
        _nodes.Add(new OnnxNode(opType, $"{opType}_{id}", inputs, outputs, attributes ?? [], domain));
        return outputs;
    }

    public OnnxGraph Build() => new(name, _nodes.ToList(), _initializers.ToList(), _inputs.ToList(), _outputs.ToList());

    private void Claim(string valueName)
    {
        if (!_names.Add(valueName)) throw new InvalidOperationException($"value name '{valueName}' used twice in graph '{name}'");
    }
}
