namespace SpeedLimit.Training;

/// <summary>
/// The word-embedding rows that an optimizer step's batches looked up. A classification model's backward pass
/// writes the word-embedding gradient at those rows only, so every other row of the table is exactly zero, and the
/// gradient check and AdamW can skip them instead of streaming the whole table. Fine-tuning batches of a few
/// hundred distinct words leave almost all of a 30k-row table untouched, and for a small model that table is most
/// of the parameters.
/// </summary>
public sealed class TouchedEmbeddingRows
{
    private readonly bool[] _touched;
    private readonly List<int> _marked = []; // the touched rows, each once, to clear them without a pass over the table

    /// <param name="table">Where the word-embedding table lies in the flat gradient buffer.</param>
    /// <param name="rowLength">Floats per row (the hidden size).</param>
    public TouchedEmbeddingRows(ParameterRange table, int rowLength)
    {
        if (rowLength < 1 || table.Offset < 0 || table.Length % rowLength != 0)
            throw new ArgumentException($"an embedding table of {table.Length} floats does not hold whole rows of {rowLength}");
        Table = table;
        RowLength = rowLength;
        _touched = new bool[table.Length / rowLength];
    }

    public ParameterRange Table { get; }
    public int RowLength { get; }
    public int Rows => _touched.Length;

    /// <summary>The marked rows, each once, in the order they were first marked.</summary>
    public IReadOnlyList<int> Marked => _marked;

    /// <summary>Marks the rows of <paramref name="ids"/>; ids outside the table are the forward pass's to reject.</summary>
    public void Mark(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_touched.Length || _touched[id]) continue;
            _touched[id] = true;
            _marked.Add(id);
        }
    }

    /// <summary>Forgets every mark: the gradients were cleared.</summary>
    public void Clear()
    {
        foreach (int row in _marked) _touched[row] = false;
        _marked.Clear();
    }

    /// <summary>
    /// True when the flat range [start, start + length) lies inside the table and covers no touched row, so its
    /// gradient is exactly zero. False when it reaches outside the table: nothing is known there.
    /// </summary>
    public bool IsZero(long start, long length)
    {
        if (length <= 0) return true;
        if (start < Table.Offset || start + length > Table.Offset + Table.Length) return false;
        long first = (start - Table.Offset) / RowLength, last = (start + length - 1 - Table.Offset) / RowLength;
        for (long row = first; row <= last; row++) if (_touched[row]) return false;
        return true;
    }
}
