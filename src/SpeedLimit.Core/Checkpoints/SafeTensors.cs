using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace SpeedLimit.Checkpoints;

/// <summary>
/// A tensor to write: row-major shape, its values, and the dtype stored on disk: <c>F32</c> (default,
/// exact), <c>F16</c> (IEEE half, round to nearest even; overflow becomes ±Inf) or <c>BF16</c> (the top
/// 16 bits of the float, round to nearest even, as PyTorch converts).
/// </summary>
public sealed record SafeTensorEntry(string Name, int[] Shape, ReadOnlyMemory<float> Data, string DType = SafeTensors.F32);

/// <summary>A tensor read back, converted to float whatever its stored dtype.</summary>
public sealed record SafeTensor(string Name, int[] Shape, string DType, float[] Data)
{
    public long Length => Data.LongLength;
}

/// <summary>A tensor's header entry: dtype, shape and byte range in the data section.</summary>
internal sealed record SafeTensorInfo(string Name, string DType, int[] Shape, long Begin, long End)
{
    public long Count => Shape.Aggregate(1L, (p, d) => p * d);
}

/// <summary>
/// A validated safetensors file held open: the header (tensor list in data order and metadata)
/// is checked completely on <see cref="Open"/>, before any data is read, and tensors are then
/// read one at a time straight into buffers the caller owns (e.g. slices of a flat parameter
/// buffer), so loading a model needs no second copy.
/// </summary>
internal sealed class SafeTensorsReader : IDisposable
{
    private readonly FileStream _stream;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafeTensorInfo> _byName;

    private SafeTensorsReader(string path, FileStream stream, List<SafeTensorInfo> entries, Dictionary<string, string> metadata, long dataStart)
    {
        Path = path;
        _stream = stream;
        _dataStart = dataStart;
        Tensors = entries;
        Metadata = metadata;
        _byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
    }

    /// <summary>Opens and validates; throws <see cref="InvalidDataException"/> naming the file and the problem.</summary>
    /// <param name="allowNonFloat">Accept tensors of the other safetensors dtypes (I64, U8, F64, …) in the header,
    /// e.g. Hugging Face's <c>position_ids</c> buffer; F64 reads as float, the others cannot be read, only skipped.</param>
    public static SafeTensorsReader Open(string path, bool allowNonFloat = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint '{path}' does not exist", path);
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            var (entries, metadata, dataStart) = SafeTensors.ReadHeader(path, fs, allowNonFloat);
            return new SafeTensorsReader(path, fs, entries, metadata, dataStart);
        }
        catch
        {
            fs.Dispose();
            throw;
        }
    }

    public string Path { get; }
    /// <summary>Tensor entries sorted by their position in the data section.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public SafeTensorInfo? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>Reads one tensor, converted to float, into <paramref name="destination"/> (exactly its element count).</summary>
    public void ReadInto(SafeTensorInfo info, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (!_byName.TryGetValue(info.Name, out var own) || own != info)
            throw new ArgumentException($"tensor '{info.Name}' is not an entry of '{Path}'");
        if (destination.Length != info.Count)
            throw new ArgumentException($"tensor '{info.Name}' has {info.Count} values but the destination holds {destination.Length}");
        _stream.Position = _dataStart + info.Begin;
        try
        {
            if (SafeTensors.ElementSize(info.DType) == 0 && info.DType != "F64")
                throw SafeTensors.Bad(Path, $"tensor '{info.Name}' has dtype {info.DType}, which is not a floating-point type and cannot be read as weights");
            if (info.DType == "F32" && BitConverter.IsLittleEndian)
            {
                _stream.ReadExactly(MemoryMarshal.AsBytes(destination)); // no intermediate byte copy
            }
            else
            {
                var bytes = new byte[info.End - info.Begin];
                _stream.ReadExactly(bytes);
                SafeTensors.Decode(info.DType, bytes, destination);
            }
        }
        catch (EndOfStreamException)
        {
            throw SafeTensors.Bad(Path, $"file ended while reading tensor '{info.Name}'; was it changed while being read?");
        }
    }

    public void Dispose() => _stream.Dispose();
}

/// <summary>The whole content of a safetensors file, tensors in data order.</summary>
public sealed class SafeTensorsFile
{
    internal SafeTensorsFile(IReadOnlyList<SafeTensor> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        Tensors = tensors;
        Metadata = metadata;
        ByName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public IReadOnlyList<SafeTensor> Tensors { get; }
    public IReadOnlyDictionary<string, SafeTensor> ByName { get; }
    /// <summary>The <c>__metadata__</c> string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
}

/// <summary>
/// Reader and writer of the safetensors format (Hugging Face): an 8-byte little-endian header
/// length N, N bytes of UTF-8 JSON mapping tensor names to {dtype, shape, data_offsets} plus an
/// optional "__metadata__" string map, then the raw little-endian data, offsets relative to the
/// data section. Writes are atomic; reads validate the whole header against the file before
/// reading any data and return nothing on error.
/// </summary>
public static class SafeTensors
{
    /// <summary>Headers larger than this are rejected as corrupt (the reference implementation uses 100 MB too).</summary>
    public const long MaxHeaderBytes = 100_000_000;
    public const string MetadataKey = "__metadata__";
    public const string F32 = "F32";
    public const string F16 = "F16";
    public const string BF16 = "BF16";

    /// <summary>Bytes per element of a supported dtype, 0 for an unsupported one.</summary>
    public static int ElementSize(string dtype) => dtype switch { F32 => 4, F16 => 2, BF16 => 2, _ => 0 };

    /// <summary>
    /// Writes the tensors (in the given order, each in its <see cref="SafeTensorEntry.DType"/>) and string metadata to <paramref name="path"/>
    /// via a temporary file in the same folder and a rename, so a crash never leaves a half file.
    /// The header is padded with spaces so the data starts 8-byte aligned.
    /// </summary>
    public static void Write(string path, IReadOnlyList<SafeTensorEntry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        byte[] header = BuildHeader(tensors, metadata);

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        AtomicFile.Write(path, fs =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
            fs.Write(len);
            fs.Write(header);
            foreach (var t in tensors) WriteTensor(fs, t);
        });
    }

    private static byte[] BuildHeader(IReadOnlyList<SafeTensorEntry> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    ArgumentNullException.ThrowIfNull(v, $"metadata '{k}'");
                    json.WriteString(k, v);
                }
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                ArgumentNullException.ThrowIfNull(t);
                if (string.IsNullOrEmpty(t.Name)) throw new ArgumentException("a tensor name is empty; every tensor needs a unique non-empty name");
                if (t.Name == MetadataKey) throw new ArgumentException($"'{MetadataKey}' is reserved for metadata and cannot name a tensor");
                if (!names.Add(t.Name)) throw new ArgumentException($"tensor name '{t.Name}' appears twice; names must be unique");
                ArgumentNullException.ThrowIfNull(t.Shape, $"shape of '{t.Name}'");
                long count = 1;
                foreach (int d in t.Shape)
                {
                    if (d < 0) throw new ArgumentException($"tensor '{t.Name}' has a negative dimension in shape [{string.Join(", ", t.Shape)}]");
                    count *= d;
                }
                if (count != t.Data.Length)
                    throw new ArgumentException($"tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}] ({count} values) but {t.Data.Length} values were given");
                int size = ElementSize(t.DType ?? "");
                if (size == 0) throw new ArgumentException($"tensor '{t.Name}': dtype '{t.DType}' cannot be written (supported: F32, F16, BF16)");
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", t.DType);
                json.WriteStartArray("shape");
                foreach (int d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + count * size);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += count * size;
            }
            json.WriteEndObject();
        }
        int raw = (int)buffer.Length;
        int padded = (raw + 7) / 8 * 8; // 8 + N stays 8-byte aligned
        var header = new byte[padded];
        buffer.GetBuffer().AsSpan(0, raw).CopyTo(header);
        header.AsSpan(raw).Fill((byte)' ');
        return header;
    }

    private static void WriteTensor(Stream s, SafeTensorEntry t)
    {
        if (t.DType == F32) { WriteFloats(s, t.Data.Span); return; }
        const int Chunk = 1 << 14;
        var bytes = new byte[Math.Min(Chunk, t.Data.Length) * 2];
        for (int start = 0; start < t.Data.Length; start += Chunk)
        {
            var part = t.Data.Span.Slice(start, Math.Min(Chunk, t.Data.Length - start));
            Encode16(t.DType, part, bytes);
            s.Write(bytes, 0, part.Length * 2);
        }
    }

    /// <summary>Converts floats to F16 or BF16 little-endian bytes (round to nearest even).</summary>
    internal static void Encode16(string dtype, ReadOnlySpan<float> values, Span<byte> destination)
    {
        for (int i = 0; i < values.Length; i++)
        {
            ushort bits = dtype == F16 ? BitConverter.HalfToUInt16Bits((Half)values[i]) : ToBFloat16Bits(values[i]);
            BinaryPrimitives.WriteUInt16LittleEndian(destination.Slice(i * 2), bits);
        }
    }

    /// <summary>bfloat16 of a float: round to nearest, ties to even; NaN stays a (quiet) NaN.</summary>
    internal static ushort ToBFloat16Bits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    private static void WriteFloats(Stream s, ReadOnlySpan<float> data)
    {
        if (BitConverter.IsLittleEndian)
        {
            s.Write(MemoryMarshal.AsBytes(data));
            return;
        }
        Span<byte> four = stackalloc byte[4];
        foreach (float f in data)
        {
            BinaryPrimitives.WriteSingleLittleEndian(four, f);
            s.Write(four);
        }
    }

    /// <summary>
    /// Reads and validates a safetensors file. Throws <see cref="InvalidDataException"/> naming
    /// the file and the problem (and returns nothing) when anything is wrong.
    /// </summary>
    public static SafeTensorsFile Read(string path)
    {
        using var reader = SafeTensorsReader.Open(path);
        var tensors = new List<SafeTensor>(reader.Tensors.Count);
        foreach (var info in reader.Tensors)
        {
            var data = new float[info.Count];
            reader.ReadInto(info, data);
            tensors.Add(new SafeTensor(info.Name, info.Shape, info.DType, data));
        }
        return new SafeTensorsFile(tensors, reader.Metadata);
    }

    internal static (List<SafeTensorInfo> Entries, Dictionary<string, string> Metadata, long DataStart) ReadHeader(string path, FileStream fs, bool allowNonFloat = false)
    {
        long fileLength = fs.Length;
        if (fileLength < 8)
            throw Bad(path, $"file is {fileLength} bytes, shorter than the 8-byte header length; it is truncated or not a safetensors file");
        Span<byte> lenBytes = stackalloc byte[8];
        fs.ReadExactly(lenBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLength > MaxHeaderBytes)
            throw Bad(path, $"header length {headerLength} bytes is absurd (limit {MaxHeaderBytes}); the file is corrupt or not a safetensors file");
        if ((long)headerLength > fileLength - 8)
            throw Bad(path, $"header length {headerLength} bytes exceeds the {fileLength - 8} bytes after the length field; the file is truncated");
        var headerBytes = new byte[(int)headerLength];
        fs.ReadExactly(headerBytes);
        long dataLength = fileLength - 8 - (long)headerLength;

        var (entries, metadata) = ParseHeader(path, headerBytes, allowNonFloat);
        ValidateLayout(path, entries, dataLength);
        return (entries, metadata, 8 + (long)headerLength);
    }

    private static (List<SafeTensorInfo>, Dictionary<string, string>) ParseHeader(string path, byte[] headerBytes, bool allowNonFloat)
    {
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(headerBytes); }
        catch (DecoderFallbackException) { throw Bad(path, "header is not valid UTF-8"); }

        JsonDocument doc;
        try { doc = JsonDocument.Parse(text); }
        catch (JsonException ex) { throw Bad(path, $"header is not valid JSON ({ex.Message})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad(path, $"header JSON must be an object, found {root.ValueKind}");
            var entries = new List<SafeTensorInfo>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in root.EnumerateObject())
            {
                if (!seen.Add(prop.Name)) throw Bad(path, $"name '{prop.Name}' appears twice in the header");
                if (prop.Name == MetadataKey)
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad(path, $"'{MetadataKey}' must be an object of strings");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw Bad(path, $"metadata '{m.Name}' must be a string, found {m.Value.ValueKind}");
                        if (!metadata.TryAdd(m.Name, m.Value.GetString()!)) throw Bad(path, $"metadata key '{m.Name}' appears twice");
                    }
                    continue;
                }
                entries.Add(ParseEntry(path, prop, allowNonFloat));
            }
            return (entries, metadata);
        }
    }

    private static SafeTensorInfo ParseEntry(string path, JsonProperty prop, bool allowNonFloat)
    {
        string name = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object) throw Bad(path, $"tensor '{name}': entry must be an object with dtype, shape and data_offsets");
        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw Bad(path, $"tensor '{name}': missing or non-string 'dtype'");
        string dtype = dt.GetString()!;
        int size = ElementSize(dtype);
        if (size == 0 && allowNonFloat) size = OtherElementSize(dtype);
        if (size == 0) throw Bad(path, $"tensor '{name}': unsupported dtype '{dtype}' (supported: F32, F16, BF16)");
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Bad(path, $"tensor '{name}': missing or non-array 'shape'");
        var shape = new int[sh.GetArrayLength()];
        long count = 1;
        int k = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int dim) || dim < 0)
                throw Bad(path, $"tensor '{name}': shape entries must be non-negative integers, found {d.GetRawText()}");
            shape[k++] = dim;
            count *= dim;
            if (count * size > Array.MaxLength) throw Bad(path, $"tensor '{name}': shape [{string.Join(", ", shape.Take(k))}...] is larger than one array can hold (2 GB)");
        }
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Bad(path, $"tensor '{name}': 'data_offsets' must be an array [begin, end]");
        if (!off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw Bad(path, $"tensor '{name}': data_offsets {off.GetRawText()} must be integers with 0 ≤ begin ≤ end");
        if (count * size != end - begin)
            throw Bad(path, $"tensor '{name}': shape [{string.Join(", ", shape)}] × {size} bytes ({dtype}) = {count * size} bytes but data_offsets span {end - begin} bytes");
        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    private static void ValidateLayout(string path, List<SafeTensorInfo> entries, long dataLength)
    {
        foreach (var e in entries)
            if (e.End > dataLength)
                throw Bad(path, $"tensor '{e.Name}': data_offsets [{e.Begin}, {e.End}] reach past the {dataLength}-byte data section; the file is truncated or the header lies");
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long expected = 0;
        SafeTensorInfo? previous = null;
        foreach (var e in entries)
        {
            if (e.Begin < expected)
                throw Bad(path, $"tensor '{e.Name}' [{e.Begin}, {e.End}] overlaps tensor '{previous!.Name}' [{previous.Begin}, {previous.End}]");
            if (e.Begin > expected)
                throw Bad(path, $"gap of {e.Begin - expected} bytes in the data section before tensor '{e.Name}' (starts at {e.Begin}, expected {expected})");
            expected = e.End;
            previous = e;
        }
        if (expected != dataLength)
            throw Bad(path, $"data section is {dataLength} bytes but the tensors cover {expected}; the file has trailing bytes or was damaged");
    }

    internal static void Decode(string dtype, byte[] bytes, Span<float> result)
    {
        int count = result.Length;
        switch (dtype)
        {
            case "F32":
                for (int i = 0; i < count; i++) result[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4));
                break;
            case "F16":
                for (int i = 0; i < count; i++) result[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan(i * 2));
                break;
            case "F64":
                for (int i = 0; i < count; i++) result[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(bytes.AsSpan(i * 8));
                break;
            case "BF16":
                // bfloat16 is the top half of a float32
                for (int i = 0; i < count; i++)
                    result[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(i * 2)) << 16);
                break;
            default:
                throw new InvalidOperationException($"dtype {dtype} passed validation but has no decoder");
        }
    }

    /// <summary>Sizes of the safetensors dtypes that are not weights we read (0 when unknown).</summary>
    private static int OtherElementSize(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "I32" or "U32" => 4,
        "I16" or "U16" => 2,
        "I8" or "U8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
        _ => 0,
    };

    internal static InvalidDataException Bad(string path, string problem) =>
        new($"safetensors file '{path}': {problem}");
}
