using SpeedLimit.Checkpoints;
using SpeedLimit.Latency;

namespace SpeedLimit.Pipeline;

/// <summary>
/// Everything about a run request that can be checked before any work: the options records,
/// the task files (read and tokenized), the teacher (read, finite, compatible), the corpus files
/// (readable, not empty) and a reused latency dataset (every line valid, measured on this
/// device). Nothing is created on disk; a failure is a <see cref="UserInputException"/> or
/// <see cref="ArgumentException"/> naming the problem and the fix.
/// </summary>
public static class RunPreflight
{
    /// <summary>What the checks loaded, handed to the run so nothing is read twice.</summary>
    public sealed record Checked(EncodedTask Task, IReadOnlyList<string> Warnings);

    /// <param name="measuring">The fingerprint of the device latency is measured on (default: this machine; with
    /// <c>--latency-endpoint</c>, the endpoint's), named <paramref name="deviceName"/> in messages.</param>
    public static Checked Run(PipelineOptions options, DeviceFingerprint? measuring = null, string? deviceName = null)
    {
        options.Validate();
        var warnings = Warnings(options).ToList();
        var task = EncodedTask.Load(options.Data, options.Seed);
        if (options.Supermodel.TeacherCheckpoint is { } teacher)
            SupermodelStage.LoadTeacher(teacher, task, options.TrainThreads); // reads every tensor: shape, finiteness, vocabulary, positions
        foreach (var file in options.Supermodel.PretrainCorpus) CheckCorpus(file);
        if (options.Profiling.DatasetPath is { } dataset && File.Exists(dataset))
            CheckLatencyDataset(dataset, options.Profiling, measuring ?? DeviceFingerprint.Current(options.Profiling.Threads), deviceName,
                "use a new --latency-data file, or pass --allow-other-devices to fit on them anyway");
        return new Checked(task, warnings);
    }

    /// <summary>Settings that work but are probably not what the user wants.</summary>
    public static IEnumerable<string> Warnings(PipelineOptions options)
    {
        int cores = Environment.ProcessorCount;
        if (options.TrainThreads > cores)
            yield return $"--threads {options.TrainThreads} exceeds this machine's {cores} cores; training will be slower, not faster";
        if (options.Profiling.Threads > cores && options.Profiling.Endpoint is null) // a remote device has its own cores
            yield return $"--latency-threads {options.Profiling.Threads} exceeds this machine's {cores} cores; latencies will be measured oversubscribed";
        if (options.Data.MaxSequenceLength > options.Profiling.SequenceLength)
            yield return $"--max-length {options.Data.MaxSequenceLength} is longer than the {options.Profiling.SequenceLength} tokens latency is measured at; the bound holds for {options.Profiling.SequenceLength}-token inputs only";
    }

    private static void CheckCorpus(string file)
    {
        try
        {
            using var stream = File.OpenRead(file);
            if (stream.Length == 0) throw new UserInputException($"pretraining corpus file '{file}' is empty; give plain-text files with sentences");
            stream.ReadExactly(new byte[Math.Min(4096, (int)Math.Min(int.MaxValue, stream.Length))]);
        }
        catch (UnauthorizedAccessException)
        {
            throw new UserInputException($"pretraining corpus file '{file}' cannot be read: permission denied");
        }
    }

    /// <summary>
    /// Every line must parse; records of another device than <paramref name="here"/> are refused unless the user opted in
    /// (<paramref name="fix"/> says how to proceed).
    /// </summary>
    public static void CheckLatencyDataset(string path, ProfilingOptions profiling, DeviceFingerprint here, string? deviceName, string fix)
    {
        var records = LatencyDataset.Load(path);
        if (profiling.AllowOtherDevices) return;
        var other = records.Where(r => !r.Device.SameDeviceAs(here)).ToList();
        if (other.Count > 0)
        {
            string which = deviceName is null ? "this machine" : $"the measuring device, {deviceName}";
            throw new UserInputException(
                $"latency dataset '{path}' holds {other.Count} record(s) measured on another device ({other[0].Device}; {which}: {here}); " +
                $"a predictor fitted on them would misjudge {(deviceName is null ? "this machine" : "that device")} — {fix}");
        }
    }
}
