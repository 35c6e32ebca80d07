using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using SpeedLimit.Checkpoints;

namespace SpeedLimit.Tests.Checkpoints;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sl-safetensors-" + Guid.NewGuid().ToString("N"));

    public SafeTensorsTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static float[] RandomArray(Random rng, int n) =>
        Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    /// <summary>Writes 8-byte length + header text + data, exactly as given (for lying headers).</summary>
    private string WriteRaw(string name, string header, byte[] data, ulong? lengthOverride = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, lengthOverride ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        var path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void AssertBad(string path, params string[] fragments)
    {
        SafeTensorsFile? loaded = null;
        var ex = Assert.Throws<InvalidDataException>(() => loaded = SafeTensors.Read(path));
        Assert.Null(loaded);
        Assert.Contains(Path.GetFileName(path), ex.Message);
        foreach (var f in fragments) Assert.Contains(f, ex.Message);
    }

    [Fact]
    public void RoundTrip_IsBitExact_WithMetadataAndEdgeShapes()
    {
        var rng = new Random(1);
        var a = RandomArray(rng, 3 * 5);
        a[0] = float.NaN; a[1] = -0f; a[2] = float.Epsilon; a[3] = float.NegativeInfinity; a[4] = BitConverter.Int32BitsToSingle(0x7FC0_1234); // NaN payload
        var b = RandomArray(rng, 7);
        float[] scalar = [42.5f];
        var path = PathOf("model.safetensors");
        var meta = new Dictionary<string, string> { ["note"] = "héllo \"quoted\"", ["step"] = "12" };
        SafeTensors.Write(path, [new("a", [3, 5], a), new("empty", [0, 4], Array.Empty<float>()), new("b", [7], b), new("s", [], scalar)], meta);

        var file = SafeTensors.Read(path);
        Assert.Equal(["a", "empty", "b", "s"], file.Tensors.Select(t => t.Name).ToArray());
        Assert.Equal([3, 5], file.ByName["a"].Shape);
        Assert.Equal([0, 4], file.ByName["empty"].Shape);
        Assert.Empty(file.ByName["s"].Shape);
        Assert.Equal(a.Select(BitConverter.SingleToInt32Bits), file.ByName["a"].Data.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(b.Select(BitConverter.SingleToInt32Bits), file.ByName["b"].Data.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(scalar, file.ByName["s"].Data);
        Assert.Equal(meta, file.Metadata);
        Assert.Equal(["model.safetensors"], Directory.GetFiles(_dir).Select(f => Path.GetFileName(f)).ToArray()); // no temp left
    }

    [Fact]
    public void WrittenFile_ParsesWithAnIndependentMinimalReader()
    {
        var rng = new Random(2);
        var w = RandomArray(rng, 6); var v = RandomArray(rng, 5);
        var path = PathOf("independent.safetensors");
        SafeTensors.Write(path, [new("w", [2, 3], w), new("v", [5], v)], new Dictionary<string, string> { ["k"] = "x" });

        // the standard layout, read by hand: u64 LE length, JSON, data
        var bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + n) % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.StartsWith("{", header);
        Assert.Equal(header.TrimEnd(' ').Length, header.TrimEnd().Length); // padding is spaces only
        using var doc = JsonDocument.Parse(header);
        var root = doc.RootElement;
        Assert.Equal("x", root.GetProperty("__metadata__").GetProperty("k").GetString());
        var we = root.GetProperty("w");
        Assert.Equal("F32", we.GetProperty("dtype").GetString());
        Assert.Equal([2, 3], we.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        Assert.Equal([0L, 24L], we.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        Assert.Equal([24L, 44L], root.GetProperty("v").GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        Assert.Equal(8 + n + 44, bytes.Length);
        for (int i = 0; i < 5; i++)
            Assert.Equal(v[i], BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(8 + n + 24 + 4 * i))));
    }

    [Fact]
    public void ReadsF16AndBF16AsFloat()
    {
        var data = new byte[2 * 3 + 2 * 2];
        float[] halfValues = [1.5f, -2f, 0.099975586f]; // exactly representable in F16
        for (int i = 0; i < 3; i++) BinaryPrimitives.WriteHalfLittleEndian(data.AsSpan(2 * i), (Half)halfValues[i]);
        float[] bfValues = [3.140625f, -1024f];         // exactly representable in BF16
        for (int i = 0; i < 2; i++) BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(6 + 2 * i), (ushort)(BitConverter.SingleToInt32Bits(bfValues[i]) >> 16));
        var path = WriteRaw("half.safetensors",
            """{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[6,10]}}""", data);
        var file = SafeTensors.Read(path);
        Assert.Equal(halfValues, file.ByName["h"].Data);
        Assert.Equal(bfValues, file.ByName["b"].Data);
        Assert.Equal("BF16", file.ByName["b"].DType);
    }

    private string GoodFile(string name)
    {
        var path = PathOf(name);
        SafeTensors.Write(path, [new("a", [2, 2], new float[] { 1, 2, 3, 4 }), new("b", [3], new float[] { 5, 6, 7 })]);
        return path;
    }

    private static byte[] Floats(int n) => new byte[4 * n];

    [Fact]
    public void ShorterThanEightBytes() => AssertBad(WriteBytes("short.safetensors", [1, 2, 3, 4, 5]), "shorter than the 8-byte");

    private string WriteBytes(string name, byte[] bytes)
    {
        var p = PathOf(name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    [Fact]
    public void HeaderLongerThanFile_Truncated()
    {
        var path = GoodFile("trunc-header.safetensors");
        var bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        File.WriteAllBytes(path, bytes.AsSpan(0, (int)(8 + n - 3)).ToArray());
        AssertBad(path, "exceeds", "truncated");
    }

    [Fact]
    public void AbsurdHeaderLength() =>
        AssertBad(WriteRaw("absurd.safetensors", "{}", [], lengthOverride: 1UL << 40), "absurd");

    [Fact]
    public void TruncatedDataSection()
    {
        var path = GoodFile("trunc-data.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length - 4).ToArray());
        AssertBad(path, "'b'", "reach past");
    }

    [Fact]
    public void InvalidJson() =>
        AssertBad(WriteRaw("json.safetensors", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]""", Floats(1)), "not valid JSON");

    [Fact]
    public void HeaderNotAnObject() => AssertBad(WriteRaw("array.safetensors", "[1,2]", []), "must be an object");

    [Fact]
    public void UnsupportedDtype() =>
        AssertBad(WriteRaw("dtype.safetensors", """{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}""", new byte[8]), "unsupported dtype 'I64'", "'a'");

    [Fact]
    public void ShapeDisagreesWithByteLength() =>
        AssertBad(WriteRaw("shape.safetensors", """{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}""", Floats(5)), "'a'", "24 bytes", "20 bytes");

    [Fact]
    public void OffsetsOutsideData() =>
        AssertBad(WriteRaw("outside.safetensors", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", Floats(3)), "'b'", "reach past");

    [Fact]
    public void OverlappingOffsets() =>
        AssertBad(WriteRaw("overlap.safetensors", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", Floats(3)), "overlaps");

    [Fact]
    public void GapInOffsets() =>
        AssertBad(WriteRaw("gap.safetensors", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", Floats(3)), "gap of 4 bytes", "'b'");

    [Fact]
    public void DataLongerThanLastOffset() =>
        AssertBad(WriteRaw("trailing.safetensors", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", Floats(3)), "data section is 12 bytes", "cover 8");

    [Fact]
    public void DuplicateNames() =>
        AssertBad(WriteRaw("dup.safetensors", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", Floats(2)), "'a' appears twice");

    [Fact]
    public void NegativeOrReversedOffsetsAndBadMetadata()
    {
        AssertBad(WriteRaw("rev.safetensors", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}""", Floats(1)), "begin ≤ end");
        AssertBad(WriteRaw("neg.safetensors", """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", Floats(1)), "non-negative");
        AssertBad(WriteRaw("meta.safetensors", """{"__metadata__":{"k":3},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", Floats(1)), "metadata 'k'");
        AssertBad(WriteRaw("missing.safetensors", """{"a":{"dtype":"F32","data_offsets":[0,4]}}""", Floats(1)), "'shape'");
    }

    [Fact]
    public void Write_RejectsBadInput_AndLeavesExistingFileIntact()
    {
        var path = GoodFile("keep.safetensors");
        var before = File.ReadAllBytes(path);
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(path, [new("a", [2, 2], new float[3])]));
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(path, [new("a", [1], new float[1]), new("a", [1], new float[1])]));
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(path, [new("__metadata__", [1], new float[1])]));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Fact]
    public void Reader_ReadsTensorsIntoCallerSlices()
    {
        var path = GoodFile("reader.safetensors");
        using var reader = SafeTensorsReader.Open(path);
        Assert.Equal(["a", "b"], reader.Tensors.Select(t => t.Name).ToArray());
        var flat = new float[9];
        reader.ReadInto(reader.Find("b")!, flat.AsSpan(1, 3));
        reader.ReadInto(reader.Find("a")!, flat.AsSpan(5, 4));
        Assert.Equal([0f, 5, 6, 7, 0, 1, 2, 3, 4], flat);
        Assert.Null(reader.Find("c"));
        Assert.Contains("destination holds 3", Assert.Throws<ArgumentException>(() => reader.ReadInto(reader.Find("a")!, new float[3])).Message);
        Assert.Throws<ArgumentException>(() => reader.ReadInto(new SafeTensorInfo("a", "F32", [1], 0, 4), new float[1]));
    }

    [Fact]
    public void MissingFile_IsFileNotFound() =>
        Assert.Throws<FileNotFoundException>(() => SafeTensors.Read(PathOf("nope.safetensors")));
}
