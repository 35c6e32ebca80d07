namespace SpeedLimit.Model;

/// <summary>
/// One padded batch for the encoder: flat row-major (B,T) arrays. AttentionMask is 1 for real
/// tokens and 0 for padding.
/// </summary>
public sealed record EncoderInput(int Batch, int SequenceLength, int[] InputIds, int[] TokenTypeIds, int[] AttentionMask)
{
    public int Tokens => Batch * SequenceLength;

    /// <summary>A batch where every token is real and of type 0.</summary>
    public static EncoderInput Unpadded(int batch, int seqLen, int[] inputIds) =>
        new(batch, seqLen, inputIds, new int[batch * seqLen], Enumerable.Repeat(1, batch * seqLen).ToArray());

    /// <summary>Checks shapes and id ranges against a config; throws a clear ArgumentException.</summary>
    public void Validate(BertConfig config)
    {
        if (Batch < 1 || SequenceLength < 1) throw new ArgumentException($"batch {Batch} × sequence {SequenceLength}: both must be positive");
        if (SequenceLength > config.MaxPositions)
            throw new ArgumentException($"sequence length {SequenceLength} exceeds the model's {config.MaxPositions} positions; truncate inputs to at most {config.MaxPositions} tokens");
        int n = Tokens;
        if (InputIds.Length != n || TokenTypeIds.Length != n || AttentionMask.Length != n)
            throw new ArgumentException($"input arrays must each hold batch×sequence = {n} values (got ids {InputIds.Length}, types {TokenTypeIds.Length}, mask {AttentionMask.Length})");
        for (int i = 0; i < n; i++)
        {
            if ((uint)InputIds[i] >= (uint)config.VocabSize)
                throw new ArgumentException($"token id {InputIds[i]} at position {i} is outside the vocabulary of {config.VocabSize}; use a tokenizer whose vocabulary matches the model");
            if ((uint)TokenTypeIds[i] >= (uint)config.TypeVocabSize)
                throw new ArgumentException($"token type {TokenTypeIds[i]} at position {i} is outside 0..{config.TypeVocabSize - 1}");
            if (AttentionMask[i] is not (0 or 1))
                throw new ArgumentException($"attention mask value {AttentionMask[i]} at position {i} must be 0 or 1");
        }
    }
}
