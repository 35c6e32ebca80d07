using System.Runtime.InteropServices;
using Google.Protobuf;

namespace SpeedLimit.Onnx;

/// <summary>ONNX tensor element types (TensorProto.DataType in onnx.proto).</summary>
public enum OnnxDataType { Float = 1, UInt8 = 2, Int8 = 3, Int32 = 6, Int64 = 7 }

/// <summary>A constant tensor (an initializer); <see cref="RawData"/> is little-endian, row-major.</summary>
public sealed record OnnxTensor(string Name, OnnxDataType DataType, long[] Dims, ReadOnlyMemory<byte> RawData)
{
    public static OnnxTensor Float(string name, long[] dims, ReadOnlySpan<float> values) =>
        new(name, OnnxDataType.Float, dims, MemoryMarshal.AsBytes(values).ToArray());

    public static OnnxTensor Int8(string name, long[] dims, ReadOnlySpan<sbyte> values) =>
        new(name, OnnxDataType.Int8, dims, MemoryMarshal.AsBytes(values).ToArray());

    public static OnnxTensor Int64(string name, long[] dims, ReadOnlySpan<long> values) =>
        new(name, OnnxDataType.Int64, dims, MemoryMarshal.AsBytes(values).ToArray());
}

/// <summary>One node attribute: exactly one of the value fields is set.</summary>
public sealed record OnnxAttribute(string Name, long? Int = null, float? Float = null, long[]? Ints = null, string? String = null);

/// <summary>One operator application.</summary>
public sealed record OnnxNode(string OpType, string Name, string[] Inputs, string[] Outputs, OnnxAttribute[] Attributes, string Domain = "");

/// <summary>A graph input or output: a tensor type whose dimensions are fixed (number) or symbolic (name).</summary>
public sealed record OnnxValueInfo(string Name, OnnxDataType ElementType, object[] Dims);

public sealed record OnnxGraph(string Name, IReadOnlyList<OnnxNode> Nodes, IReadOnlyList<OnnxTensor> Initializers,
    IReadOnlyList<OnnxValueInfo> Inputs, IReadOnlyList<OnnxValueInfo> Outputs);

/// <param name="Metadata">ModelProto.metadata_props: free-form key/value pairs that runtimes expose (ORT: ModelMetadata.CustomMetadataMap).</param>
public sealed record OnnxModel(OnnxGraph Graph, IReadOnlyDictionary<string, long> OpsetImports, long IrVersion = 8,
    string ProducerName = "speedlimit", string ProducerVersion = "1", string DocString = "",
    IReadOnlyDictionary<string, string>? Metadata = null);

/// <summary>
/// Serializes the subset of onnx.proto the exporter needs (ModelProto, GraphProto, NodeProto,
/// TensorProto, ValueInfoProto, AttributeProto) with Google.Protobuf's wire-format writer.
/// Field numbers are those of the public onnx.proto schema. Each message is built as a tree
/// whose sizes are computed before writing, so large initializers are copied once.
/// </summary>
internal static class OnnxProtoWriter
{
    public static byte[] ToBytes(OnnxModel model)
    {
        var message = Model(model);
        var bytes = new byte[message.Size];
        var output = new CodedOutputStream(bytes);
        message.WriteTo(output);
        output.CheckNoSpaceLeft();
        return bytes;
    }

    /// <summary>Writes the model to <paramref name="path"/> via a temporary file and a rename, so a reader never sees half a model.</summary>
    public static void Save(OnnxModel model, string path)
    {
        AtomicFile.Write(path, stream =>
        {
            using var output = new CodedOutputStream(stream, leaveOpen: true);
            Model(model).WriteTo(output);
            output.Flush();
        });
    }

    private static ProtoMessage Model(OnnxModel m)
    {
        var msg = new ProtoMessage();
        msg.Varint(1, m.IrVersion);                 // ir_version
        msg.String(2, m.ProducerName);              // producer_name
        msg.String(3, m.ProducerVersion);           // producer_version
        if (m.DocString.Length > 0) msg.String(6, m.DocString); // doc_string
        msg.Message(7, Graph(m.Graph));             // graph
        foreach (var (domain, version) in m.OpsetImports)
        {
            var op = new ProtoMessage();
            op.String(1, domain);                   // OperatorSetIdProto.domain
            op.Varint(2, version);                  // OperatorSetIdProto.version
            msg.Message(8, op);                     // opset_import
        }
        foreach (var (key, value) in m.Metadata ?? new Dictionary<string, string>())
        {
            var entry = new ProtoMessage();
            entry.String(1, key);                   // StringStringEntryProto.key
            entry.String(2, value);                 // StringStringEntryProto.value
            msg.Message(14, entry);                 // metadata_props
        }
        return msg;
    }

    private static ProtoMessage Graph(OnnxGraph g)
    {
        var msg = new ProtoMessage();
        foreach (var n in g.Nodes) msg.Message(1, Node(n));          // node
        msg.String(2, g.Name);                                        // name
        foreach (var t in g.Initializers) msg.Message(5, Tensor(t)); // initializer
        foreach (var v in g.Inputs) msg.Message(11, ValueInfo(v));   // input
        foreach (var v in g.Outputs) msg.Message(12, ValueInfo(v));  // output
        return msg;
    }

    private static ProtoMessage Node(OnnxNode n)
    {
        var msg = new ProtoMessage();
        foreach (var i in n.Inputs) msg.String(1, i);       // input
        foreach (var o in n.Outputs) msg.String(2, o);      // output
        msg.String(3, n.Name);                              // name
        msg.String(4, n.OpType);                            // op_type
        foreach (var a in n.Attributes) msg.Message(5, Attribute(a)); // attribute
        if (n.Domain.Length > 0) msg.String(7, n.Domain);   // domain
        return msg;
    }

    // AttributeProto.AttributeType values.
    private const int AttrFloat = 1, AttrInt = 2, AttrString = 3, AttrInts = 7;

    private static ProtoMessage Attribute(OnnxAttribute a)
    {
        var msg = new ProtoMessage();
        msg.String(1, a.Name);                              // name
        if (a.Float is { } f) { msg.Float(2, f); msg.Varint(20, AttrFloat); }
        else if (a.Int is { } i) { msg.Varint(3, i); msg.Varint(20, AttrInt); }
        else if (a.String is { } s) { msg.String(4, s); msg.Varint(20, AttrString); }
        else if (a.Ints is { } ints) { foreach (var v in ints) msg.Varint(8, v); msg.Varint(20, AttrInts); }
        else throw new ArgumentException($"attribute '{a.Name}' has no value");
        return msg;
    }

    private static ProtoMessage Tensor(OnnxTensor t)
    {
        var msg = new ProtoMessage();
        foreach (var d in t.Dims) msg.Varint(1, d);         // dims
        msg.Varint(2, (int)t.DataType);                     // data_type
        msg.String(8, t.Name);                              // name
        msg.Bytes(9, t.RawData);                            // raw_data
        return msg;
    }

    private static ProtoMessage ValueInfo(OnnxValueInfo v)
    {
        var shape = new ProtoMessage();
        foreach (var d in v.Dims)
        {
            var dim = new ProtoMessage();
            switch (d)
            {
                case int n: dim.Varint(1, n); break;        // dim_value
                case long n: dim.Varint(1, n); break;
                case string s: dim.String(2, s); break;     // dim_param
                default: throw new ArgumentException($"value '{v.Name}': dimension {d} must be a number or a name");
            }
            shape.Message(1, dim);                          // TensorShapeProto.dim
        }
        var tensorType = new ProtoMessage();
        tensorType.Varint(1, (int)v.ElementType);           // TypeProto.Tensor.elem_type
        tensorType.Message(2, shape);                       // TypeProto.Tensor.shape
        var type = new ProtoMessage();
        type.Message(1, tensorType);                        // TypeProto.tensor_type
        var msg = new ProtoMessage();
        msg.String(1, v.Name);                              // name
        msg.Message(2, type);                               // type
        return msg;
    }

    /// <summary>A message under construction: its fields in order, with the encoded size known up front.</summary>
    private sealed class ProtoMessage
    {
        private readonly List<(int Field, object Value)> _fields = [];
        private int _size = -1;

        public void Varint(int field, long value) => _fields.Add((field, value));
        public void String(int field, string value) => _fields.Add((field, value));
        public void Bytes(int field, ReadOnlyMemory<byte> value) => _fields.Add((field, UnsafeByteOperations.UnsafeWrap(value)));
        public void Float(int field, float value) => _fields.Add((field, value));
        public void Message(int field, ProtoMessage value) => _fields.Add((field, value));

        public int Size
        {
            get
            {
                if (_size >= 0) return _size;
                long size = 0;
                foreach (var (number, value) in _fields)
                {
                    size += CodedOutputStream.ComputeTagSize(number);
                    size += value switch
                    {
                        long v => CodedOutputStream.ComputeInt64Size(v),
                        string s => CodedOutputStream.ComputeStringSize(s),
                        ByteString b => CodedOutputStream.ComputeBytesSize(b),
                        float => 4,
                        ProtoMessage m => CodedOutputStream.ComputeLengthSize(m.Size) + m.Size,
                        _ => throw new InvalidOperationException("unknown field kind"),
                    };
                }
                if (size > int.MaxValue) throw new ArgumentException("model exceeds the 2 GiB protobuf limit; use a smaller architecture or vocabulary");
                return _size = (int)size;
            }
        }

        public void WriteTo(CodedOutputStream output)
        {
            foreach (var (field, value) in _fields)
            {
                switch (value)
                {
                    case long v:
                        output.WriteTag(field, WireFormat.WireType.Varint);
                        output.WriteInt64(v);
                        break;
                    case string s:
                        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
                        output.WriteString(s);
                        break;
                    case ByteString b:
                        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
                        output.WriteBytes(b);
                        break;
                    case float f:
                        output.WriteTag(field, WireFormat.WireType.Fixed32);
                        output.WriteFloat(f);
                        break;
                    case ProtoMessage m:
                        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
                        output.WriteLength(m.Size);
                        m.WriteTo(output);
                        break;
                }
            }
        }
    }
}
