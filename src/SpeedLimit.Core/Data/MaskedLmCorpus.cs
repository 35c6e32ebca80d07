using System.Text;

namespace SpeedLimit.Data;

/// <summary>Settings of masked-LM pretraining data (BERT's defaults).</summary>
internal sealed class MaskedLmOptions
{
    /// <summary>Length of each segment including [CLS] and [SEP].</summary>
    public int SegmentLength { get; set; } = 128;
    public double MaskProbability { get; set; } = 0.15;
    /// <summary>Of the selected positions: this share becomes [MASK] …</summary>
    public double MaskTokenFraction { get; set; } = 0.8;
    /// <summary>… this share a random token; the rest stays unchanged.</summary>
    public double RandomTokenFraction { get; set; } = 0.1;
    public int Seed { get; set; } = 1234;
    /// <summary>Segments held for shuffling (memory bound); 1 keeps file order.</summary>
    public int ShuffleBufferSegments { get; set; } = 1024;
    /// <summary>Characters read per chunk; text is cut at whitespace so no word is split.</summary>
    public int ReadChunkChars { get; set; } = 1 << 16;

    internal void Validate()
    {
        if (SegmentLength < 3) throw new ArgumentException($"segment length {SegmentLength} must be at least 3 ([CLS], a token, [SEP])");
        if (!(MaskProbability > 0 && MaskProbability < 1)) throw new ArgumentException($"mask probability {MaskProbability} must be in (0, 1)");
        if (MaskTokenFraction < 0 || RandomTokenFraction < 0 || MaskTokenFraction + RandomTokenFraction > 1)
            throw new ArgumentException($"mask/random fractions {MaskTokenFraction}/{RandomTokenFraction} must be non-negative and sum to at most 1");
        if (ShuffleBufferSegments < 1) throw new ArgumentException("shuffle buffer must hold at least 1 segment");
        if (ReadChunkChars < 16) throw new ArgumentException("read chunk must be at least 16 characters");
    }
}

/// <summary>A masked segment: model input and labels (original id where masked, -100 elsewhere).</summary>
internal sealed record MaskedSegment(int[] InputIds, int[] Labels);

/// <summary>
/// Plain-text files → token stream → fixed-length segments <c>[CLS] … [SEP]</c> → BERT masking.
/// Files are read in chunks, so a corpus larger than memory streams through; memory is bounded by
/// the chunk size and the shuffle buffer. Text flows across lines and files (RoBERTa-style packing);
/// only the very last segment may be shorter. Everything random comes from the seed and the epoch.
/// </summary>
internal sealed class MaskedLmCorpus
{
    private readonly IReadOnlyList<string> _files;
    private readonly ITextEncoder _encoder;
    private readonly MaskedLmOptions _options;

    public MaskedLmCorpus(IReadOnlyList<string> files, ITextEncoder encoder, MaskedLmOptions options)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (files.Count == 0) throw new ArgumentException("no corpus files given; pass at least one plain-text file");
        foreach (var f in files)
        {
            if (!File.Exists(f)) throw new FileNotFoundException($"corpus file '{f}' does not exist", f);
            if (new FileInfo(f).Length == 0) throw new InvalidDataException($"{f}: corpus file is empty");
        }
        _files = files;
        _encoder = encoder;
        _options = options;
    }

    /// <summary>Unmasked segments in file order: [CLS] + up to SegmentLength-2 tokens + [SEP].</summary>
    public IEnumerable<int[]> Segments()
    {
        int content = _options.SegmentLength - 2;
        var pending = new List<int>(content * 2);
        foreach (var ids in TokenChunks())
        {
            pending.AddRange(ids);
            int taken = 0;
            while (pending.Count - taken >= content)
            {
                yield return Wrap(pending, taken, content);
                taken += content;
            }
            pending.RemoveRange(0, taken);
        }
        if (pending.Count > 0) yield return Wrap(pending, 0, pending.Count);
    }

    /// <summary>Masked segments for one epoch, shuffled through a bounded buffer.</summary>
    public IEnumerable<MaskedSegment> MaskedSegments(int epoch = 0)
    {
        var rng = new Random(Seeds.Combine(_options.Seed, epoch, 0x3a5c));
        var buffer = new List<int[]>(_options.ShuffleBufferSegments);
        foreach (var segment in Segments())
        {
            if (buffer.Count < _options.ShuffleBufferSegments) { buffer.Add(segment); continue; }
            int pick = rng.Next(buffer.Count);
            var chosen = buffer[pick];
            buffer[pick] = segment;
            yield return Mask(chosen, _encoder, _options, rng);
        }
        rng.Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(buffer));
        foreach (var segment in buffer) yield return Mask(segment, _encoder, _options, rng);
    }

    /// <summary>Padded MLM batches of <paramref name="batchSize"/> segments (the last may be smaller).</summary>
    public IEnumerable<TokenBatch> Batches(int batchSize, int epoch = 0)
    {
        if (batchSize <= 0) throw new ArgumentException($"batch size {batchSize} must be positive");
        var group = new List<MaskedSegment>(batchSize);
        int index = 0;
        foreach (var s in MaskedSegments(epoch))
        {
            group.Add(s);
            if (group.Count == batchSize) { yield return Collate(group, index, _encoder.PadId); index += group.Count; group.Clear(); }
        }
        if (group.Count > 0) yield return Collate(group, index, _encoder.PadId);
    }

    /// <summary>
    /// BERT masking: each non-special position is selected with probability p; a selected one
    /// becomes [MASK] (80 %), a random non-special token (10 %) or stays (10 %). Labels hold the
    /// original id at selected positions and -100 elsewhere.
    /// </summary>
    public static MaskedSegment Mask(int[] segment, ITextEncoder encoder, MaskedLmOptions options, Random rng)
    {
        var input = (int[])segment.Clone();
        var labels = new int[segment.Length];
        Array.Fill(labels, TokenBatch.IgnoreLabel);
        for (int i = 0; i < segment.Length; i++)
        {
            if (encoder.IsSpecial(segment[i]) || rng.NextDouble() >= options.MaskProbability) continue;
            labels[i] = segment[i];
            double u = rng.NextDouble();
            if (u < options.MaskTokenFraction) input[i] = encoder.MaskId;
            else if (u < options.MaskTokenFraction + options.RandomTokenFraction) input[i] = RandomToken(encoder, rng);
        }
        return new MaskedSegment(input, labels);
    }

    private static int RandomToken(ITextEncoder encoder, Random rng)
    {
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            int id = rng.Next(encoder.VocabSize);
            if (!encoder.IsSpecial(id)) return id;
        }
        throw new InvalidOperationException("vocabulary has no non-special tokens to sample");
    }

    private int[] Wrap(List<int> tokens, int start, int count)
    {
        var seg = new int[count + 2];
        seg[0] = _encoder.ClsId;
        tokens.CopyTo(start, seg, 1, count);
        seg[^1] = _encoder.SepId;
        return seg;
    }

    /// <summary>Token ids chunk by chunk; each chunk of text ends at whitespace, so words stay whole.</summary>
    private IEnumerable<IReadOnlyList<int>> TokenChunks()
    {
        var buffer = new char[_options.ReadChunkChars];
        var carry = new StringBuilder();
        foreach (var file in _files)
        {
            using var reader = new StreamReader(file, new UTF8Encoding(false), detectEncodingFromByteOrderMarks: true);
            int read;
            while ((read = reader.Read(buffer, 0, buffer.Length)) > 0)
            {
                carry.Append(buffer, 0, read);
                int cut = LastWhitespace(carry);
                if (cut < 0)
                {
                    // No whitespace in a whole chunk: cut anyway rather than grow without bound.
                    if (carry.Length < 4 * buffer.Length) continue;
                    cut = carry.Length - 1;
                }
                var text = carry.ToString(0, cut + 1);
                carry.Remove(0, cut + 1);
                var ids = _encoder.Tokenize(text);
                if (ids.Count > 0) yield return ids;
            }
            // Files never share a word: flush the tail of each file.
            if (carry.Length > 0)
            {
                var ids = _encoder.Tokenize(carry.ToString());
                carry.Clear();
                if (ids.Count > 0) yield return ids;
            }
        }
    }

    private static int LastWhitespace(StringBuilder sb)
    {
        for (int i = sb.Length - 1; i >= 0; i--) if (char.IsWhiteSpace(sb[i])) return i;
        return -1;
    }

    private static TokenBatch Collate(List<MaskedSegment> group, int firstIndex, int padId)
    {
        int b = group.Count, t = group.Max(s => s.InputIds.Length);
        var ids = new int[b * t];
        var types = new int[b * t];
        var mask = new int[b * t];
        var labels = new int[b * t];
        Array.Fill(labels, TokenBatch.IgnoreLabel);
        if (padId != 0) Array.Fill(ids, padId);
        for (int r = 0; r < b; r++)
        {
            var s = group[r];
            s.InputIds.CopyTo(ids, r * t);   // row r of (B,T)
            s.Labels.CopyTo(labels, r * t);
            mask.AsSpan(r * t, s.InputIds.Length).Fill(1);
        }
        return new TokenBatch(b, t, ids, types, mask, Enumerable.Range(firstIndex, b).ToArray(), tokenLabels: labels);
    }
}
