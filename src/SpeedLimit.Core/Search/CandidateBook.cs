using System.Diagnostics;
using SpeedLimit.Latency;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

/// <summary>
/// The evaluation cache of one study: every architecture is evaluated (and measured) at most
/// once; with a store, each result is committed as it completes and earlier results are served
/// from it.
/// </summary>
internal sealed class CandidateBook
{
    private readonly Dictionary<Architecture, CandidateRecord> _byArch = new();
    private readonly StudyStore? _store;
    private readonly long _studyId;
    private readonly string _task;
    private readonly Precision _precision;
    private readonly string _budget;
    private readonly int _seed;
    private readonly CandidateQueue? _queue;

    public CandidateBook(StudyStore? store, long studyId, string task, Precision precision, string budget, int seed, CandidateQueue? queue = null)
    {
        _queue = store is null ? null : queue;
        _store = store;
        _studyId = studyId;
        _task = task;
        _precision = precision;
        _budget = budget;
        _seed = seed;
        if (store is not null)
            foreach (var c in store.LoadCandidates(studyId)) _byArch[c.Arch] = c;
        PreloadedCount = _byArch.Count;
    }

    public int PreloadedCount { get; }
    public int Evaluations { get; private set; }
    public int Reused { get; private set; }
    public int Measurements { get; private set; }
    public int ReusedMeasurements { get; private set; }
    /// <summary>Wall seconds of this run's evaluator calls (for ETA).</summary>
    public double FreshEvaluationSeconds { get; private set; }

    public int Count => _byArch.Count;
    /// <summary>Fresh evaluations go through a candidate queue (workers) rather than the evaluator in this process.</summary>
    public bool Distributed => _queue is not null;
    public bool TryGet(Architecture arch, out CandidateRecord record) => _byArch.TryGetValue(arch, out record!);
    public IReadOnlyList<CandidateRecord> All() => _byArch.Values.OrderBy(c => c.Order).ToList();

    /// <summary>The stored result, or a fresh evaluation committed before it is returned.</summary>
    public CandidateRecord Evaluate(Architecture arch, double? predictedMs, ICandidateEvaluator evaluator, CancellationToken cancellation, out bool reused)
    {
        if (_byArch.TryGetValue(arch, out var known))
        {
            Reused++;
            reused = true;
            return known;
        }
        cancellation.ThrowIfCancellationRequested();
        int seed = EvolutionarySearch.CandidateSeed(_seed, arch);
        var started = DateTimeOffset.UtcNow;
        var watch = Stopwatch.StartNew();
        var result = evaluator.Evaluate(arch, seed, cancellation)
            ?? throw new InvalidOperationException($"the candidate evaluator returned no result for {arch}");
        watch.Stop();
        if (result.Arch != arch)
            throw new InvalidOperationException($"the candidate evaluator was asked for {arch} but returned a result for {result.Arch}");
        if (!double.IsFinite(result.Metric))
            throw new InvalidOperationException($"the candidate evaluator returned a non-finite metric ({result.Metric}) for {arch}; it must map failed runs to a finite score");
        var record = new CandidateRecord(arch, _byArch.Count, _task, _precision, _budget, seed, result.Metric, predictedMs,
            result.SecondsSpent, watch.Elapsed.TotalSeconds, started, DateTimeOffset.UtcNow);
        _store?.InsertCandidate(_studyId, record);
        _byArch[arch] = record;
        Evaluations++;
        FreshEvaluationSeconds += watch.Elapsed.TotalSeconds;
        reused = false;
        return record;
    }

    /// <summary>
    /// Evaluates a batch. Without a queue: one after another, as <see cref="Evaluate"/>. With one:
    /// the fresh ones are enqueued together, and once workers have committed them all they are added
    /// to the study in batch order (one transaction), so completion order ranks equal those of a
    /// single-process run whatever finished first.
    /// </summary>
    public IReadOnlyList<(CandidateRecord Record, bool Reused)> EvaluateMany(IReadOnlyList<(Architecture Arch, double? PredictedMs)> items,
        ICandidateEvaluator evaluator, CancellationToken cancellation)
    {
        var result = new List<(CandidateRecord, bool)>(items.Count);
        if (_queue is null)
        {
            foreach (var (arch, predicted) in items)
            {
                var rec = Evaluate(arch, predicted, evaluator, cancellation, out var reused);
                result.Add((rec, reused));
            }
            return result;
        }
        cancellation.ThrowIfCancellationRequested();
        var fresh = items.Where(i => !_byArch.ContainsKey(i.Arch)).Select(i => (i.Arch, EvolutionarySearch.CandidateSeed(_seed, i.Arch))).Distinct().ToList();
        var done = fresh.Count == 0 ? new Dictionary<Architecture, QueueEntry>()
            : _queue.EvaluateAll(_studyId, fresh, evaluator, cancellation).ToDictionary(e => e.Arch);
        var added = new List<CandidateRecord>();
        foreach (var (arch, predicted) in items)
        {
            if (_byArch.TryGetValue(arch, out var known))
            {
                Reused++;
                result.Add((known, true));
                continue;
            }
            var e = done[arch];
            var record = new CandidateRecord(arch, _byArch.Count, _task, _precision, _budget, e.Seed, e.Metric!.Value, predicted,
                e.EvaluationSeconds ?? 0, e.WallSeconds ?? 0, e.StartedAt ?? DateTimeOffset.UnixEpoch, e.FinishedAt ?? DateTimeOffset.UnixEpoch);
            _byArch[arch] = record;
            added.Add(record);
            Evaluations++;
            FreshEvaluationSeconds += record.WallSeconds;
            result.Add((record, false));
        }
        _store!.InsertCandidates(_studyId, added);
        return result;
    }

    /// <summary>The candidate with its measurement, measuring (and committing) only when not yet measured.</summary>
    public CandidateRecord Measure(CandidateRecord candidate, ILatencyMeasurer measurer, BoundStatistic statistic,
        Action<LatencyRecord>? onMeasured, CancellationToken cancellation)
    {
        var current = _byArch[candidate.Arch];
        if (current.MeasuredMs is not null)
        {
            ReusedMeasurements++;
            return current;
        }
        cancellation.ThrowIfCancellationRequested();
        var watch = Stopwatch.StartNew();
        var m = measurer.Measure(current.Arch, cancellation)
            ?? throw new InvalidOperationException($"the latency measurer returned no measurement for {current.Arch}");
        watch.Stop();
        if (m.Arch != current.Arch)
            throw new InvalidOperationException($"the latency measurer was asked for {current.Arch} but measured {m.Arch}");
        double ms = statistic == BoundStatistic.P90 ? m.P90Ms : m.MedianMs;
        if (!double.IsFinite(ms) || ms <= 0)
            throw new InvalidOperationException($"the latency measurer returned an invalid latency ({ms} ms) for {current.Arch}");
        _store?.SetMeasurement(_studyId, current.Arch, ms, m, watch.Elapsed.TotalSeconds);
        var updated = current with { MeasuredMs = ms, Measurement = m, MeasurementSeconds = watch.Elapsed.TotalSeconds };
        _byArch[current.Arch] = updated;
        Measurements++;
        onMeasured?.Invoke(m);
        return updated;
    }
}
