using System.Diagnostics;
using System.Globalization;

namespace SpeedLimit.Search;

/// <summary>
/// Keeps a lease alive from a background thread on its own connection: calls
/// <c>beat</c> every interval; when it returns false (another holder took over) or no beat has
/// succeeded for a whole lease, <see cref="LostToken"/> is cancelled so the holder stops its work.
/// </summary>
internal sealed class LeaseKeeper : IDisposable
{
    private readonly CancellationTokenSource _lost = new();
    private readonly ManualResetEventSlim _stop = new();
    private readonly Thread _thread;

    public LeaseKeeper(string storeLocation, TimeSpan interval, TimeSpan lease, Func<StudyStore, bool> beat, string what)
    {
        _thread = new Thread(() =>
        {
            StudyStore? store = null;
            var lastOk = Stopwatch.StartNew();
            try
            {
                while (!_stop.Wait(interval))
                {
                    try
                    {
                        store ??= StudyStore.Open(storeLocation);
                        if (!beat(store)) { LostReason = $"{what}: the lease was taken over"; break; }
                        lastOk.Restart();
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        store?.Dispose();
                        store = null; // reconnect at the next beat
                        if (lastOk.Elapsed > lease) { LostReason = $"{what}: no heartbeat reached the database for {lease.TotalSeconds:0} s ({ex.Message})"; break; }
                    }
                }
            }
            finally
            {
                store?.Dispose();
                if (LostReason is not null) _lost.Cancel();
            }
        }) { IsBackground = true, Name = "lease heartbeat" };
        _thread.Start();
    }

    public CancellationToken LostToken => _lost.Token;
    public bool Lost => _lost.IsCancellationRequested;
    public string? LostReason { get; private set; }

    public void Dispose()
    {
        _stop.Set();
        _thread.Join();
        _stop.Dispose();
        _lost.Dispose();
    }
}

public sealed class StudyWorkerOptions
{
    /// <summary>How the worker shows up in <c>study status</c> (default host:pid).</summary>
    public string Name { get; set; } = DefaultName();
    /// <summary>How often an idle worker looks for queued candidates.</summary>
    public int PollMilliseconds { get; set; } = 500;
    /// <summary>Exit after this long with nothing to claim (null: run until cancelled).</summary>
    public double? IdleExitSeconds { get; set; }
    /// <summary>Stop after this many evaluated candidates (null: no limit).</summary>
    public int? MaxCandidates { get; set; }

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Name)) throw new ArgumentException("worker name is empty; give --name or leave the default (host:pid)");
        if (PollMilliseconds < 10) throw new ArgumentException($"poll interval {PollMilliseconds} ms must be at least 10 ms");
        if (IdleExitSeconds is < 0) throw new ArgumentException($"idle exit {IdleExitSeconds} s must be ≥ 0");
        if (MaxCandidates is < 1) throw new ArgumentException($"max candidates {MaxCandidates} must be ≥ 1");
    }

    public static string DefaultName() => $"{Environment.MachineName}:{Environment.ProcessId}";
}

/// <summary>What a worker did with one claim.</summary>
public sealed record WorkerEvent(string Study, Architecture Arch, int Attempt, string Outcome, double? Metric, double Seconds, string? ReclaimedFrom);

public sealed record WorkerSummary(int Evaluated, int LeasesLost, double BusySeconds, double TotalSeconds);

/// <summary>
/// A worker: claims one queued candidate at a time from a shared study store, evaluates it with
/// the evaluator built from the study's published package, keeps its lease alive with a heartbeat
/// and commits the result in one transaction. A worker killed mid-candidate stops heartbeating; its
/// lease goes stale and the next claim by any worker takes the candidate over. Workers never
/// measure latency: that is the coordinator's (on the deployment CPU).
/// </summary>
public sealed class StudyWorker
{
    private readonly string _location;
    private readonly Func<StudyStore, long, string, ICandidateEvaluator> _evaluatorFor;
    private readonly StudyWorkerOptions _options;

    /// <param name="evaluatorFor">Builds the evaluator of a study from its published package (store, study id, package spec).</param>
    public StudyWorker(string location, Func<StudyStore, long, string, ICandidateEvaluator> evaluatorFor, StudyWorkerOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(location);
        _location = location;
        _evaluatorFor = evaluatorFor ?? throw new ArgumentNullException(nameof(evaluatorFor));
        _options = options ?? new StudyWorkerOptions();
        _options.Validate();
    }

    public IProgress<WorkerEvent>? Progress { get; set; }

    public WorkerSummary Run(CancellationToken cancellation = default)
    {
        var total = Stopwatch.StartNew();
        var idle = Stopwatch.StartNew();
        var evaluators = new Dictionary<(long, string), ICandidateEvaluator>();
        int evaluated = 0, lost = 0;
        double busy = 0;
        using var store = StudyStore.Open(_location);
        while (!cancellation.IsCancellationRequested && (_options.MaxCandidates is not int max || evaluated < max))
        {
            var claim = store.Claim(_options.Name);
            if (claim is null)
            {
                if (_options.IdleExitSeconds is double limit && idle.Elapsed.TotalSeconds >= limit) break;
                cancellation.WaitHandle.WaitOne(_options.PollMilliseconds);
                continue;
            }
            // The lease's heartbeat starts before the package is loaded: fetching a large supermodel
            // must not look like a dead worker.
            var outcome = Evaluate(store, _location, claim, () =>
            {
                var spec = store.LoadPackage(claim.StudyId)
                    ?? throw new InvalidDataException($"study '{claim.StudyName}' has queued candidates but no published package; restart its coordinator");
                if (!evaluators.TryGetValue((claim.StudyId, spec), out var evaluator))
                    evaluators[(claim.StudyId, spec)] = evaluator = _evaluatorFor(store, claim.StudyId, spec);
                return evaluator;
            }, cancellation);
            busy += outcome.Seconds;
            if (outcome.Committed) evaluated++;
            else lost++;
            Progress?.Report(new WorkerEvent(claim.StudyName, claim.Arch, claim.Attempt, outcome.Committed ? "done" : $"lease lost ({outcome.Note})",
                outcome.Metric, outcome.Seconds, claim.ReclaimedFrom));
            idle.Restart();
        }
        return new WorkerSummary(evaluated, lost, busy, total.Elapsed.TotalSeconds);
    }

    internal sealed record Outcome(bool Committed, double? Metric, double Seconds, string? Note);

    /// <summary>
    /// Evaluates one claim under a heartbeat and commits it; shared by workers and the coordinator's
    /// own evaluation. A user cancel puts the candidate back; a lost lease drops the work.
    /// </summary>
    internal static Outcome Evaluate(StudyStore store, string location, ClaimedCandidate claim, Func<ICandidateEvaluator> evaluator, CancellationToken cancellation)
    {
        var lease = TimeSpan.FromSeconds(claim.LeaseSeconds);
        var interval = TimeSpan.FromSeconds(Math.Max(0.05, claim.LeaseSeconds / 4));
        var started = DateTimeOffset.UtcNow;
        var watch = Stopwatch.StartNew();
        CandidateResult result;
        using (var keeper = new LeaseKeeper(location, interval, lease, s => s.Heartbeat(claim),
            string.Create(CultureInfo.InvariantCulture, $"{claim.StudyName} {claim.Arch}")))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellation, keeper.LostToken))
        {
            try
            {
                result = evaluator().Evaluate(claim.Arch, claim.Seed, linked.Token)
                    ?? throw new InvalidOperationException($"the candidate evaluator returned no result for {claim.Arch}");
            }
            catch (OperationCanceledException) when (keeper.Lost && !cancellation.IsCancellationRequested)
            {
                return new Outcome(false, null, watch.Elapsed.TotalSeconds, keeper.LostReason);
            }
            catch
            {
                try { store.Release(claim); } catch (Exception ex) when (ex is not OutOfMemoryException) { /* the lease expires instead */ }
                throw;
            }
            if (keeper.Lost) return new Outcome(false, null, watch.Elapsed.TotalSeconds, keeper.LostReason);
        }
        watch.Stop();
        bool committed = store.Complete(claim, result, watch.Elapsed.TotalSeconds, started, DateTimeOffset.UtcNow);
        return new Outcome(committed, result.Metric, watch.Elapsed.TotalSeconds, committed ? null : "another worker took the candidate over");
    }
}
