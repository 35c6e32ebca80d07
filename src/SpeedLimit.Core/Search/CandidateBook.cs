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
        var fresh = EvaluateFresh(arch, evaluator, cancellation);
        reused = false;
        return Commit(arch, predictedMs, fresh, fresh.WallSeconds);
    }

    /// <summary>One evaluator call, checked, with its seed and times; nothing is recorded (safe to run side by side).</summary>
    private FreshEvaluation EvaluateFresh(Architecture arch, ICandidateEvaluator evaluator, CancellationToken cancellation)
    {
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
        return new FreshEvaluation(seed, result, watch.Elapsed.TotalSeconds, started, DateTimeOffset.UtcNow);
    }

    /// <summary>
    /// The order in which side-by-side evaluations take a batch's candidates: the most work first (layers × h × (2h + f),
    /// the encoder's multiply-adds per token up to a constant), so the batch does not end with one large candidate
    /// running alone on one thread while the others wait. Ties keep batch order.
    /// </summary>
    internal static int[] LargestFirst(IReadOnlyList<Architecture> archs) =>
        Enumerable.Range(0, archs.Count).OrderByDescending(i => (long)archs[i].Layers * archs[i].Hidden * (2L * archs[i].Hidden + archs[i].Ffn)).ToArray();

    private readonly record struct FreshEvaluation(int Seed, CandidateResult Result, double WallSeconds, DateTimeOffset Started, DateTimeOffset Finished);

    /// <summary>Adds a fresh evaluation to the study (and its store) as the next record; <paramref name="etaSeconds"/> is what it adds to the time per evaluation that ETAs use.</summary>
    private CandidateRecord Commit(Architecture arch, double? predictedMs, FreshEvaluation fresh, double etaSeconds)
    {
        var record = new CandidateRecord(arch, _byArch.Count, _task, _precision, _budget, fresh.Seed, fresh.Result.Metric, predictedMs,
            fresh.Result.SecondsSpent, fresh.WallSeconds, fresh.Started, fresh.Finished);
        _store?.InsertCandidate(_studyId, record);
        _byArch[arch] = record;
        Evaluations++;
        FreshEvaluationSeconds += etaSeconds;
        return record;
    }

    /// <summary>
    /// A batch's fresh candidates evaluated <see cref="ICandidateEvaluator.ConcurrentEvaluations"/> at a time, each taken
    /// by the next free thread (largest first, <see cref="LargestFirst"/>) and committed once every one before it in the
    /// batch is: the records, their order and the store are what evaluating one at a time leaves (the evaluator's
    /// results do not depend on it). After a failure the candidates before it in batch order still run and are committed, nothing after it is,
    /// and the failure is rethrown, as one at a time would leave it.
    /// </summary>
    private List<(CandidateRecord, bool)> EvaluateSideBySide(IReadOnlyList<(Architecture Arch, double? PredictedMs)> items,
        ICandidateEvaluator evaluator, CancellationToken cancellation)
    {
        cancellation.ThrowIfCancellationRequested();
        var fresh = items.Where(i => !_byArch.ContainsKey(i.Arch)).DistinctBy(i => i.Arch).ToList();
        var outcomes = fresh.Select(_ => new TaskCompletionSource<FreshEvaluation>(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
        var schedule = LargestFirst(fresh.Select(f => f.Arch).ToList());
        int next = -1, failedAt = int.MaxValue;
        var workers = Enumerable.Range(0, Math.Min(evaluator.ConcurrentEvaluations, fresh.Count)).Select(_ => Task.Factory.StartNew(() =>
        {
            int taken;
            while ((taken = Interlocked.Increment(ref next)) < fresh.Count)
            {
                int i = schedule[taken];
                // After a failure, only the candidates before it in batch order still run (one at a time would have).
                if (i > Volatile.Read(ref failedAt) || cancellation.IsCancellationRequested)
                {
                    outcomes[i].SetCanceled();
                    continue;
                }
                try { outcomes[i].SetResult(EvaluateFresh(fresh[i].Arch, evaluator, cancellation)); }
                catch (Exception e)
                {
                    outcomes[i].SetException(e);
                    for (int seen = Volatile.Read(ref failedAt); i < seen; seen = Volatile.Read(ref failedAt))
                        if (Interlocked.CompareExchange(ref failedAt, i, seen) == seen) break;
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        var clock = Stopwatch.StartNew();
        double committedAt = 0;
        int committed = 0;
        for (; committed < fresh.Count; committed++)
        {
            var outcome = outcomes[committed].Task;
            ((IAsyncResult)outcome).AsyncWaitHandle.WaitOne();
            if (!outcome.IsCompletedSuccessfully) break;
            // ETAs see the batch's elapsed time, shared out: side by side, a candidate's own wall time overstates its cost
            double now = clock.Elapsed.TotalSeconds;
            Commit(fresh[committed].Arch, fresh[committed].PredictedMs, outcome.Result, now - committedAt);
            committedAt = now;
        }
        Task.WaitAll(workers, CancellationToken.None);
        if (committed < fresh.Count)
        {
            cancellation.ThrowIfCancellationRequested();
            var failed = outcomes[committed].Task; // the first failure in batch order: every candidate before it is committed
            if (failed.IsFaulted) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failed.Exception!.InnerException!);
            throw new OperationCanceledException(cancellation);
        }
        var result = new List<(CandidateRecord, bool)>(items.Count);
        var notYetListed = fresh.Select(f => f.Arch).ToHashSet(); // a repeat in the batch is reused, as one at a time
        foreach (var (arch, _) in items)
        {
            bool isFresh = notYetListed.Remove(arch);
            if (!isFresh) Reused++;
            result.Add((_byArch[arch], !isFresh));
        }
        return result;
    }

    /// <summary>
    /// Evaluates a batch. Without a queue: one after another, as <see cref="Evaluate"/>, or side by side when the evaluator
    /// allows several at once (<see cref="EvaluateSideBySide"/>, the same records). With one:
    /// the fresh ones are enqueued together, and once workers have committed them all they are added
    /// to the study in batch order (one transaction), so completion order ranks equal those of a
    /// single-process run whatever finished first.
    /// </summary>
    public IReadOnlyList<(CandidateRecord Record, bool Reused)> EvaluateMany(IReadOnlyList<(Architecture Arch, double? PredictedMs)> items,
        ICandidateEvaluator evaluator, CancellationToken cancellation)
    {
        if (_queue is null && evaluator.ConcurrentEvaluations > 1) return EvaluateSideBySide(items, evaluator, cancellation);
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
    /// <remarks>With a bound, the measurer may sample longer while the verdict is uncertain; the stored value is the statistic's point estimate.</remarks>
    public CandidateRecord Measure(CandidateRecord candidate, ILatencyMeasurer measurer, BoundStatistic statistic, LatencyBound? bound,
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
        var m = (bound is null ? measurer.Measure(current.Arch, cancellation) : measurer.Measure(current.Arch, bound, cancellation))
            ?? throw new InvalidOperationException($"the latency measurer returned no measurement for {current.Arch}");
        watch.Stop();
        if (m.Arch != current.Arch)
            throw new InvalidOperationException($"the latency measurer was asked for {current.Arch} but measured {m.Arch}");
        double ms = LatencyBound.Estimate(m, statistic);
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
