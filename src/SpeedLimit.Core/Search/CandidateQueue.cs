using System.Globalization;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

internal sealed class CandidateQueueOptions
{
    /// <summary>A claim (worker) or coordinator whose heartbeat is older than this is dead; its candidate goes back to the queue.</summary>
    public double LeaseSeconds { get; set; } = 60;
    /// <summary>How often the coordinator looks at the queue while it waits for workers.</summary>
    public int PollMilliseconds { get; set; } = 200;
    /// <summary>The coordinator evaluates queued candidates itself while it waits (false: workers only).</summary>
    public bool EvaluateLocally { get; set; } = true;
    /// <summary>How the coordinator shows up in <c>study status</c> (default host:pid).</summary>
    public string Owner { get; set; } = StudyWorkerOptions.DefaultName();

    public void Validate()
    {
        if (!(LeaseSeconds >= 0.2) || !double.IsFinite(LeaseSeconds)) throw new ArgumentException($"lease {LeaseSeconds} s must be at least 0.2 s");
        if (PollMilliseconds < 10) throw new ArgumentException($"poll interval {PollMilliseconds} ms must be at least 10 ms");
        if (string.IsNullOrWhiteSpace(Owner)) throw new ArgumentException("the coordinator's name is empty");
    }
}

/// <summary>
/// The coordinator's side of the candidate queue. Given to an <see cref="EvolutionarySearch"/>, it
/// makes the search the one coordinator of its study (a second one is refused), publishes the work
/// package workers need, and evaluates each generation by enqueuing its candidates and waiting for
/// workers (and itself, unless <see cref="CandidateQueueOptions.EvaluateLocally"/> is off) to commit
/// them. The search then adds them to the study in its own deterministic order, so the result does
/// not depend on how many workers ran or which finished first.
/// </summary>
internal sealed class CandidateQueue : IDisposable
{
    private readonly StudyStore _store;
    private readonly string _packageSpec;
    private readonly CandidateQueueOptions _options;
    private readonly Dictionary<long, LeaseKeeper> _coordinating = new();

    /// <param name="packageSpec">What workers need to build the evaluator (opaque to the search; see <c>Pipeline/CandidatePackage.cs</c>).</param>
    public CandidateQueue(StudyStore store, string packageSpec, CandidateQueueOptions? options = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        ArgumentException.ThrowIfNullOrWhiteSpace(packageSpec);
        _packageSpec = packageSpec;
        _options = options ?? new CandidateQueueOptions();
        _options.Validate();
    }

    /// <summary>Called while the coordinator waits, with the current queue entries of the generation.</summary>
    public Action<IReadOnlyList<QueueEntry>>? Waiting { get; set; }

    public CandidateQueueOptions Options => _options;

    public StudyStore Store => _store;

    /// <summary>Takes the study's coordinator lease (or refuses) and publishes the package; idempotent per study.</summary>
    internal void Attach(long studyId, string studyName)
    {
        if (_coordinating.ContainsKey(studyId)) return;
        _store.AcquireCoordinator(studyId, studyName, _options.Owner, _options.LeaseSeconds);
        _store.PublishPackage(studyId, _packageSpec, _options.LeaseSeconds);
        var owner = _options.Owner;
        _coordinating[studyId] = new LeaseKeeper(_store.Location, TimeSpan.FromSeconds(Math.Max(0.05, _options.LeaseSeconds / 4)),
            TimeSpan.FromSeconds(_options.LeaseSeconds), s => s.CoordinatorHeartbeat(studyId, owner), $"coordinator of '{studyName}'");
    }

    /// <summary>
    /// Enqueues the candidates (those already queued or done are kept) and returns their entries
    /// once every one is done.
    /// </summary>
    internal IReadOnlyList<QueueEntry> EvaluateAll(long studyId, IReadOnlyList<(Architecture Arch, int Seed)> items,
        ICandidateEvaluator evaluator, CancellationToken cancellation)
    {
        if (!_coordinating.TryGetValue(studyId, out var lease))
            throw new InvalidOperationException($"study {studyId} is not attached to this candidate queue");
        _store.Enqueue(studyId, items);
        var wanted = items.ToDictionary(i => i.Arch, i => i.Seed);
        while (true)
        {
            cancellation.ThrowIfCancellationRequested();
            if (lease.Lost) throw new UserInputException($"{lease.LostReason}: another coordinator runs this study now; this one stops");
            var entries = _store.QueueEntries(studyId).Where(e => wanted.ContainsKey(e.Arch)).ToList();
            if (entries.Count == wanted.Count && entries.All(e => e.State == StudyStore.Done))
            {
                foreach (var e in entries)
                    if (e.Seed != wanted[e.Arch])
                        throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture,
                            $"queued candidate {e.Arch} of study {studyId} has seed {e.Seed}, the search expects {wanted[e.Arch]}; the study's queue belongs to other settings: start a new study"));
                return entries;
            }
            Waiting?.Invoke(entries);
            if (_options.EvaluateLocally && _store.Claim(_options.Owner + " (coordinator)", studyId) is { } claim)
            {
                StudyWorker.Evaluate(_store, _store.Location, claim, () => evaluator, cancellation);
                continue;
            }
            cancellation.WaitHandle.WaitOne(_options.PollMilliseconds);
        }
    }

    /// <summary>Stops the coordinator heartbeats and hands the studies back (a new coordinator may take them at once).</summary>
    public void Dispose()
    {
        foreach (var (studyId, keeper) in _coordinating)
        {
            keeper.Dispose();
            try { _store.ReleaseCoordinator(studyId, _options.Owner); }
            catch (Exception ex) when (ex is not OutOfMemoryException) { /* the lease expires instead */ }
        }
        _coordinating.Clear();
    }
}
