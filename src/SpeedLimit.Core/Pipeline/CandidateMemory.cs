using SpeedLimit.Model;
using SpeedLimit.Quantization;

namespace SpeedLimit.Pipeline;

/// <summary>
/// The memory a candidate's evaluation needs in proportion to the model: the activation workspace, the parameter and
/// gradient buffers, AdamW's two moment buffers and the int8 simulation's scratch, kept from one candidate to the next.
/// A search evaluates hundreds of sub-models of different sizes one after another. Allocated afresh for each, these
/// buffers made every candidate touch tens to hundreds of MB of new pages: the .NET GC gives freed large buffers back
/// to the operating system, so the next candidate faulted them in again, at 10–15 µs a 4 KiB page on a VM whose host
/// backs guest memory lazily (a tenth or more of a small candidate's time). Buffers are used as prefixes: sized for
/// the supermodel, they hold any of its sub-models. Untouched capacity costs address space only.
/// </summary>
internal sealed class CandidateMemory(long parameters, BertActivations? workspace)
{
    // Sized for the largest model it will hold (the supermodel's), so it never regrows; BertModel and AdamW check that
    // a model fits.
    private readonly float[] _parameters = new float[parameters], _gradients = new float[parameters],
        _firstMoment = new float[parameters], _secondMoment = new float[parameters];

    /// <summary>The activation workspace lent to each candidate's model (a model may replace it with a larger one: take that back).</summary>
    public BertActivations? Workspace { get; set; } = workspace;

    /// <summary>The last candidate's int8 simulation, whose scratch the next one takes over.</summary>
    public Int8Simulation? Int8 { get; set; }

    /// <summary>Parameter and gradient storage for a model (see <see cref="BertModel(BertConfig, float[], float[])"/>).</summary>
    public (float[] Parameters, float[] Gradients) ModelStorage => (_parameters, _gradients);

    /// <summary>Storage for AdamW's first and second moments.</summary>
    public (float[] First, float[] Second) MomentStorage => (_firstMoment, _secondMoment);
}
