using System.Numerics.Tensors;
using SpeedLimit.Kernels;

namespace SpeedLimit.Latency.Predictors;

/// <summary>Settings of the paper's MLP latency predictor (defaults are the paper's).</summary>
public sealed class MlpOptions
{
    /// <summary>Units per hidden layer (paper: 2000).</summary>
    public int Width { get; set; } = 2000;
    /// <summary>Hidden ReLU layers (paper: 3).</summary>
    public int HiddenLayers { get; set; } = 3;
    /// <summary>Optimizer steps (paper: 5000).</summary>
    public int Steps { get; set; } = 5000;
    /// <summary>Examples per step (paper: 128).</summary>
    public int BatchSize { get; set; } = 128;
    /// <summary>Adam learning rate (paper: 1e-5).</summary>
    public double LearningRate { get; set; } = 1e-5;
    public double Beta1 { get; set; } = 0.9;
    public double Beta2 { get; set; } = 0.99;
    public double Epsilon { get; set; } = 1e-8;
    public int Seed { get; set; } = 1;
    /// <summary>GEMM threads (0: <see cref="Gemm.DefaultThreads"/>).</summary>
    public int Threads { get; set; }

    public void Validate()
    {
        if (Width < 1) throw new ArgumentException($"MLP width {Width} must be at least 1");
        if (HiddenLayers < 1) throw new ArgumentException($"MLP hidden layers {HiddenLayers} must be at least 1");
        if (Steps < 1) throw new ArgumentException($"MLP steps {Steps} must be at least 1");
        if (BatchSize < 1) throw new ArgumentException($"MLP batch size {BatchSize} must be at least 1");
        if (!(LearningRate > 0)) throw new ArgumentException($"MLP learning rate {LearningRate} must be positive");
        if (Beta1 is < 0 or >= 1 || Beta2 is < 0 or >= 1) throw new ArgumentException("Adam betas must lie in [0, 1)");
        if (!(Epsilon > 0)) throw new ArgumentException("Adam epsilon must be positive");
    }
}

/// <summary>
/// A fully connected ReLU network in → width × hidden → 1, written as forward/backward layer
/// pairs over flat spans. All weights and biases live in one parameter buffer and their
/// gradients in one gradient buffer of the same layout, so the optimizer loops over one span.
/// Weights are stored (out,in) row-major, as PyTorch's Linear.
/// </summary>
internal sealed class LatencyMlp
{
    private readonly int[] _dims;          // layer widths: in, width, ..., width, 1
    private readonly int[] _weightOffset;  // per linear layer
    private readonly int[] _biasOffset;

    public LatencyMlp(int inputs, int width, int hiddenLayers)
    {
        if (inputs < 1 || width < 1 || hiddenLayers < 1) throw new ArgumentException("MLP sizes must be positive");
        _dims = new int[hiddenLayers + 2];
        _dims[0] = inputs;
        for (int i = 1; i <= hiddenLayers; i++) _dims[i] = width;
        _dims[^1] = 1;
        _weightOffset = new int[LinearLayers];
        _biasOffset = new int[LinearLayers];
        int offset = 0;
        for (int l = 0; l < LinearLayers; l++)
        {
            _weightOffset[l] = offset; offset += _dims[l + 1] * _dims[l];
            _biasOffset[l] = offset; offset += _dims[l + 1];
        }
        Parameters = new float[offset];
        Gradients = new float[offset];
    }

    public int Inputs => _dims[0];
    public int Width => _dims[1];
    public int HiddenLayers => _dims.Length - 2;
    public int LinearLayers => _dims.Length - 1;
    public float[] Parameters { get; }
    public float[] Gradients { get; }
    public int ParameterCount => Parameters.Length;

    /// <summary>PyTorch's default Linear init: U(−1/√in, 1/√in) for weights and biases.</summary>
    public void Initialize(Random random)
    {
        for (int l = 0; l < LinearLayers; l++)
        {
            float bound = 1f / MathF.Sqrt(_dims[l]);
            var w = Weight(Parameters, l);
            for (int i = 0; i < w.Length; i++) w[i] = (float)(random.NextDouble() * 2 - 1) * bound;
            var b = Bias(Parameters, l);
            for (int i = 0; i < b.Length; i++) b[i] = (float)(random.NextDouble() * 2 - 1) * bound;
        }
    }

    private Span<float> Weight(float[] buffer, int layer) => buffer.AsSpan(_weightOffset[layer], _dims[layer + 1] * _dims[layer]);
    private Span<float> Bias(float[] buffer, int layer) => buffer.AsSpan(_biasOffset[layer], _dims[layer + 1]);

    /// <summary>Activation buffers for a batch: acts[l] is the input of linear layer l, acts[^1] the output.</summary>
    public sealed class Workspace
    {
        internal Workspace(int[] dims, int batch)
        {
            Batch = batch;
            Acts = dims.Select(d => new float[batch * d]).ToArray();
            Grads = dims.Select(d => new float[batch * d]).ToArray();
        }
        public int Batch { get; }
        internal float[][] Acts { get; }
        internal float[][] Grads { get; }
        public Span<float> Input => Acts[0];
        public ReadOnlySpan<float> Output => Acts[^1];
    }

    public Workspace CreateWorkspace(int batch) => new(_dims, batch);

    /// <summary>Runs the network on ws.Input (B,in) for the first <paramref name="rows"/> rows; the result is ws.Output (B,1).</summary>
    public void Forward(Workspace ws, int rows, int threads = 0)
    {
        for (int l = 0; l < LinearLayers; l++)
        {
            int din = _dims[l], dout = _dims[l + 1];
            var y = ws.Acts[l + 1].AsSpan(0, rows * dout);
            LinearForward(ws.Acts[l].AsSpan(0, rows * din), Weight(Parameters, l), Bias(Parameters, l), y, rows, din, dout, threads);
            if (l < LinearLayers - 1) ReluForward(y);
        }
    }

    /// <summary>
    /// Mean squared error of ws.Output against <paramref name="targets"/> (B); with
    /// <paramref name="backward"/>, accumulates ∂loss/∂parameters into <see cref="Gradients"/>.
    /// </summary>
    public double LossAndBackward(Workspace ws, int rows, ReadOnlySpan<float> targets, bool backward, int threads = 0)
    {
        var output = ws.Acts[^1].AsSpan(0, rows);
        var dOutput = ws.Grads[^1].AsSpan(0, rows);
        TensorPrimitives.Subtract(output, targets[..rows], dOutput);           // (B,1) residual
        double loss = (double)TensorPrimitives.Dot(dOutput, dOutput) / rows;
        if (!backward) return loss;
        TensorPrimitives.Multiply(dOutput, 2f / rows, dOutput);                 // ∂(mean r²)/∂out
        for (int l = LinearLayers - 1; l >= 0; l--)
        {
            int din = _dims[l], dout = _dims[l + 1];
            var dY = ws.Grads[l + 1].AsSpan(0, rows * dout);
            if (l < LinearLayers - 1) ReluBackward(ws.Acts[l + 1].AsSpan(0, rows * dout), dY);
            Span<float> dX = default;
            if (l > 0)
            {
                dX = ws.Grads[l].AsSpan(0, rows * din);
                dX.Clear();
            }
            LinearBackward(dY, ws.Acts[l].AsSpan(0, rows * din), Weight(Parameters, l), dX,
                Weight(Gradients, l), Bias(Gradients, l), rows, din, dout, threads);
        }
        return loss;
    }

    // y(B,out) = x(B,in)·Wᵀ + b
    internal static void LinearForward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y,
        int rows, int din, int dout, int threads)
    {
        Gemm.Multiply(false, true, rows, dout, din, x, din, w, din, y, dout, accumulate: false, threads: threads);
        for (int r = 0; r < rows; r++)
        {
            var row = y.Slice(r * dout, dout);
            TensorPrimitives.Add(row, b, row);
        }
    }

    // dX(B,in) += dY·W ; dW(out,in) += dYᵀ·x ; db(out) += Σ_rows dY. dX may be empty (first layer).
    internal static void LinearBackward(ReadOnlySpan<float> dY, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> dX,
        Span<float> dW, Span<float> dB, int rows, int din, int dout, int threads)
    {
        if (!dX.IsEmpty)
            Gemm.Multiply(false, false, rows, din, dout, dY, dout, w, din, dX, din, accumulate: true, threads: threads);
        Gemm.Multiply(true, false, dout, din, rows, dY, dout, x, din, dW, din, accumulate: true, threads: threads);
        for (int r = 0; r < rows; r++) TensorPrimitives.Add(dB, dY.Slice(r * dout, dout), dB);
    }

    internal static void ReluForward(Span<float> y) => TensorPrimitives.Max(y, 0f, y);

    // The ReLU output is positive exactly where its input was, so the output serves as the mask.
    internal static void ReluBackward(ReadOnlySpan<float> y, Span<float> dY)
    {
        for (int i = 0; i < y.Length; i++)
            if (y[i] <= 0f) dY[i] = 0f;
    }
}
