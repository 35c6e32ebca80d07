using System.Diagnostics;
using System.Globalization;
using SpeedLimit.Latency;
using SpeedLimit.Latency.Predictors;
using SpeedLimit.Model;

namespace SpeedLimit.Search;

/// <summary>
/// SpeedLimit's evolutionary search (paper Algorithm 1 with AutoTinyBERT-style mutation) over the
/// narrowed space A* = {a : predicted(a)·(1+margin) ≤ bound}, for one or more bounds sharing one
/// evaluation cache, followed by verification of each bound's winner by measurement.
/// It is given its predictor, evaluator and measurer; it never builds them.
/// </summary>
internal sealed class EvolutionarySearch
{
    private readonly ILatencyPredictor _predictor;
    private readonly ICandidateEvaluator _evaluator;
    private readonly ILatencyMeasurer? _measurer;

    public EvolutionarySearch(ILatencyPredictor predictor, ICandidateEvaluator evaluator, ILatencyMeasurer? measurer = null)
    {
        _predictor = predictor ?? throw new ArgumentNullException(nameof(predictor));
        _evaluator = evaluator ?? throw new ArgumentNullException(nameof(evaluator));
        _measurer = measurer;
    }

    /// <summary>Receives a report after every candidate and measurement.</summary>
    public IProgress<SearchProgress>? Progress { get; set; }

    /// <summary>Called with every new measurement, e.g. to append it to the predictor's dataset.</summary>
    public Action<LatencyRecord>? OnMeasured { get; set; }

    /// <summary>Series name for reports; defaults to "int8 search" / "fp32 search".</summary>
    public string? Label { get; set; }

    /// <summary>
    /// With a queue (on the same store), this search is its study's coordinator: each generation's
    /// candidates are enqueued for workers (see <see cref="StudyWorker"/>) and added to the study in
    /// the search's own order once done, so the result equals a single-process run's.
    /// </summary>
    public CandidateQueue? Queue { get; set; }

    private CandidateBook Book(StudyStore? store, long studyId, string studyName, string task, Precision precision, string budget, int seed)
    {
        if (Queue is not null && store is not null)
        {
            if (!ReferenceEquals(Queue.Store, store)) throw new ArgumentException("the candidate queue must be on the study's own store", nameof(store));
            Queue.Attach(studyId, studyName);
        }
        return new CandidateBook(store, studyId, task, precision, budget, seed, store is null ? null : Queue);
    }

    /// <summary>Runs a search in memory (nothing persisted).</summary>
    public SearchResult Run(SearchDefinition definition, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var watch = Stopwatch.StartNew();
        var (archs, preds, margin) = Narrow(definition);
        var book = new CandidateBook(null, 0, definition.Task, definition.Precision, definition.Budget, definition.Seed);
        return new Session(this, definition, null, archs, preds, margin, book, watch, cancellation).Execute();
    }

    /// <summary>
    /// Starts a new study in the store (an error if the name exists) and runs it, committing every
    /// candidate as it finishes. Infeasible bounds fail before anything is written.
    /// </summary>
    public SearchResult Run(SearchDefinition definition, StudyStore store, string studyName, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(definition);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentException.ThrowIfNullOrWhiteSpace(studyName);
        if (store.Exists(studyName))
            throw new UserInputException($"study '{studyName}' already exists in '{store.Path}'; resume it, or choose another study name");
        var watch = Stopwatch.StartNew();
        var (archs, preds, margin) = Narrow(definition);
        var row = store.Create(studyName, StudyStore.SearchKind, definition.ToJson(), margin, preds);
        var book = Book(store, row.Id, studyName, definition.Task, definition.Precision, definition.Budget, definition.Seed);
        return new Session(this, definition, studyName, archs, preds, margin, book, watch, cancellation).Execute();
    }

    /// <summary>
    /// Continues a study (killed or finished): the search is replayed from the start with the same
    /// seed and finished candidates are served from the store, so the RNG path, and so the result,
    /// equal an uninterrupted run's. The narrowing predictions and margin stored with the study are
    /// reused, so a retrained predictor does not change the path. When <paramref name="expected"/>
    /// is given it must equal the stored definition.
    /// </summary>
    public SearchResult Resume(StudyStore store, string studyName, SearchDefinition? expected = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        var row = store.Require(studyName, StudyStore.SearchKind);
        if (expected is not null) StudyStore.RequireSameDefinition(row, expected.ToJson(), store.Path);
        Queue?.Attach(row.Id, studyName); // a second coordinator is refused before anything is read or done
        var definition = SearchDefinition.FromJson(row.DefinitionJson);
        var watch = Stopwatch.StartNew();
        var archs = Enumerate(definition);
        var preds = store.LoadPredictions(row.Id, archs.Length);
        var margin = row.Margin ?? throw new InvalidDataException($"study '{studyName}' in '{store.Path}' has no stored margin; start a new study");
        CheckFeasible(definition, archs, preds, margin);
        var book = Book(store, row.Id, studyName, definition.Task, definition.Precision, definition.Budget, definition.Seed);
        return new Session(this, definition, studyName, archs, preds, margin, book, watch, cancellation).Execute();
    }

    /// <summary>Resumes the study when the store has it (its definition must equal this one), else starts it.</summary>
    public SearchResult RunOrResume(SearchDefinition definition, StudyStore store, string studyName, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        return store.Exists(studyName)
            ? Resume(store, studyName, definition, cancellation)
            : Run(definition, store, studyName, cancellation);
    }

    /// <summary>
    /// Evaluates (and, with a measurer, measures) fixed baseline architectures. With a store the
    /// study is created or, when it exists with the same definition, continued.
    /// </summary>
    public BaselineResult EvaluateBaselines(BaselineDefinition definition, StudyStore? store = null, string? studyName = null,
        string? label = null, CancellationToken cancellation = default, BoundStatistic statistic = BoundStatistic.P90)
    {
        ArgumentNullException.ThrowIfNull(definition);
        if (store is not null && string.IsNullOrWhiteSpace(studyName)) throw new ArgumentException("a study name is required with a study store", nameof(studyName));
        long studyId = 0;
        if (store is not null)
        {
            if (store.Exists(studyName!))
            {
                var row = store.Require(studyName!, StudyStore.BaselinesKind);
                StudyStore.RequireSameDefinition(row, definition.ToJson(), store.Path);
                studyId = row.Id;
            }
            else studyId = store.Create(studyName!, StudyStore.BaselinesKind, definition.ToJson(), null, null).Id;
        }
        var book = Book(store, studyId, studyName ?? "", definition.Task, definition.Precision, definition.Budget, definition.Seed);
        var watch = Stopwatch.StartNew();
        var entries = new List<BaselineEntry>();
        int n = definition.Architectures.Count, step = 0;
        // With a queue every baseline is handed to the workers at once; evaluated in order otherwise.
        var evaluated = book.Distributed
            ? book.EvaluateMany(definition.Architectures.Select(b => (b.Arch, (double?)_predictor.PredictMs(b.Arch))).ToList(), _evaluator, cancellation)
            : null;
        foreach (var b in definition.Architectures)
        {
            double? predicted = _predictor.PredictMs(b.Arch);
            bool reused;
            CandidateRecord rec;
            if (evaluated is not null) (rec, reused) = evaluated[step];
            else rec = book.Evaluate(b.Arch, predicted, _evaluator, cancellation, out reused);
            if (_measurer is not null) rec = book.Measure(rec, _measurer, statistic, null, OnMeasured, cancellation);
            entries.Add(new BaselineEntry(b.Name, rec));
            step++;
            Progress?.Report(new SearchProgress(SearchPhase.Baselines, $"baseline {b.Name} {b.Arch}: metric {rec.Metric:F4}",
                null, 0, 0, 0, 0, step, n, b.Arch, rec.Metric, reused, entries.Max(e => e.Candidate.Metric), watch.Elapsed,
                Eta(book, n - step)));
        }
        return new BaselineResult(label ?? $"{PrecisionName(definition.Precision)} baselines", studyName, definition, entries);
    }

    /// <summary>The evaluator seed of an architecture: a stable mix of the study seed and (e, h, f).</summary>
    public static int CandidateSeed(int studySeed, Architecture arch) =>
        (int)(Mix((ulong)(uint)studySeed, ((ulong)(uint)arch.Layers << 42) ^ ((ulong)(uint)arch.Hidden << 21) ^ (uint)arch.Ffn) & 0x7FFF_FFFF);

    /// <summary>The RNG seed of one bound's search: from the bound's value, so a bound's path does not depend on the other bounds.</summary>
    internal static int BoundSeed(int studySeed, double boundMs) => (int)(Mix((ulong)(uint)studySeed, (ulong)BitConverter.DoubleToInt64Bits(boundMs)) & 0x7FFF_FFFF);

    private static ulong Mix(ulong a, ulong b)
    {
        // SplitMix64 finaliser over both words: spreads nearby seeds and tuples apart.
        ulong z = a * 0x9E3779B97F4A7C15UL + b + 0x632BE59BD9B4E019UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    internal static string PrecisionName(Precision p) => p.ToString().ToLowerInvariant();

    private static TimeSpan? Eta(CandidateBook book, int stepsLeft) =>
        book.Evaluations == 0 ? null : TimeSpan.FromSeconds(book.FreshEvaluationSeconds / book.Evaluations * Math.Max(0, stepsLeft));

    // ---- narrowing -----------------------------------------------------------------------

    private static Architecture[] Enumerate(SearchDefinition definition)
    {
        var space = definition.Space;
        if (space.Count > definition.Options.MaxEnumeratedArchitectures)
            throw new UserInputException($"search space {space} has more than {definition.Options.MaxEnumeratedArchitectures:N0} architectures to narrow; use coarser steps or raise MaxEnumeratedArchitectures");
        return space.Enumerate().ToArray();
    }

    private (Architecture[] Archs, double[] Preds, double Margin) Narrow(SearchDefinition definition)
    {
        var archs = Enumerate(definition);
        Progress?.Report(new SearchProgress(SearchPhase.Narrowing, $"predicting the latency of {archs.Length:N0} architectures",
            null, 0, definition.BoundsMs.Count, 0, definition.Options.Generations, 0, archs.Length, null, null, false, null, TimeSpan.Zero, null));
        var preds = new double[archs.Length];
        if (_predictor is IBatchLatencyPredictor batch) batch.PredictMs(archs, preds);
        else for (int i = 0; i < archs.Length; i++) preds[i] = _predictor.PredictMs(archs[i]);
        for (int i = 0; i < preds.Length; i++)
            if (!double.IsFinite(preds[i]))
                throw new InvalidOperationException($"the latency predictor returned a non-finite latency ({preds[i]}) for {archs[i]}");
        double margin = _predictor.RelativeMargin;
        if (!double.IsFinite(margin) || margin < 0)
            throw new InvalidOperationException($"the latency predictor's relative margin {margin} must be a finite number ≥ 0");
        CheckFeasible(definition, archs, preds, margin);
        return (archs, preds, margin);
    }

    /// <summary>Fails before any evaluation when some bound has an empty A*, naming the fastest option.</summary>
    private static void CheckFeasible(SearchDefinition definition, Architecture[] archs, double[] preds, double margin)
    {
        int fastest = 0;
        for (int i = 1; i < preds.Length; i++) if (preds[i] < preds[fastest]) fastest = i;
        double fastestWithMargin = LatencyBound.PredictedUpperMs(preds[fastest], margin);
        var infeasible = definition.BoundsMs.Where(b => fastestWithMargin > b).ToList();
        if (infeasible.Count == 0) return;
        var inv = CultureInfo.InvariantCulture;
        throw new UserInputException(string.Format(inv,
            "latency bound{0} {1} ms cannot be met: no architecture of the space ({2}) is predicted within it with the predictor's {3:0.#}% margin; the fastest is {4} at {5:0.###} ms predicted ({6:0.###} ms with margin); raise the bound to at least {6:0.###} ms or search a smaller space",
            infeasible.Count > 1 ? "s" : "", string.Join(", ", infeasible.Select(b => b.ToString("0.###", inv))), definition.Space,
            margin * 100, archs[fastest], preds[fastest], fastestWithMargin));
    }

    // ---- one run -----------------------------------------------------------------------

    private sealed class Session
    {
        private readonly EvolutionarySearch _owner;
        private readonly SearchDefinition _def;
        private readonly SearchOptions _opt;
        private readonly string? _studyName;
        private readonly Architecture[] _archs;
        private readonly double[] _preds;
        private readonly double _margin;
        private readonly CandidateBook _book;
        private readonly Stopwatch _watch;
        private readonly CancellationToken _cancellation;
        private readonly Dictionary<Architecture, int> _index = new();
        private readonly int _nh, _nf;
        private int _completedSteps, _totalSteps, _verifiedSteps;
        // Verification: architectures measured for earlier bounds, and for the current one.
        private readonly HashSet<Architecture> _measuredEarlier = new(), _thisBound = new();
        // Measurements verification took, in order, for recalibrating the margin.
        private readonly List<(LatencyRecord Record, double MeasuredMs)> _calibration = new();
        private readonly HashSet<Architecture> _calibrated = new();
        private double? _bestMetric;

        public Session(EvolutionarySearch owner, SearchDefinition def, string? studyName, Architecture[] archs, double[] preds,
            double margin, CandidateBook book, Stopwatch watch, CancellationToken cancellation)
        {
            _owner = owner; _def = def; _opt = def.Options; _studyName = studyName;
            _archs = archs; _preds = preds; _margin = margin; _book = book; _watch = watch; _cancellation = cancellation;
            for (int i = 0; i < archs.Length; i++) _index[archs[i]] = i;
            _nh = def.Space.Hidden.Count;
            _nf = def.Space.Ffn.Count;
        }

        private sealed record BoundSearch(List<int> Visited, List<GenerationSummary> Generations, bool Exhausted, int NarrowedCount, double Seconds);

        private sealed record Verification(Architecture? Winner, bool Verified, int Rank, string Note, double Seconds);

        public SearchResult Execute()
        {
            double narrowSeconds = _watch.Elapsed.TotalSeconds;
            var bounds = _def.BoundsMs;
            _totalSteps = bounds.Sum(b => (int)Math.Min((long)_opt.Generations * _opt.CandidatesPerGeneration, Feasible(b, _margin).Count(x => x)));

            // Search every bound's A* with the stored margin (the candidates are shared: a looser bound's search can
            // find a tighter bound's winner). Then verify bound by bound: each bound ranks its candidates with the margin
            // recalibrated by the measurements verification has taken so far.
            var searches = new BoundSearch[bounds.Count];
            var searchWatch = Stopwatch.StartNew();
            for (int b = 0; b < bounds.Count; b++) searches[b] = SearchBound(b, Feasible(bounds[b], _margin));
            searchWatch.Stop();

            var verifications = new Verification[bounds.Count];
            var margins = new double[bounds.Count];
            var verifyWatch = Stopwatch.StartNew();
            for (int b = 0; b < bounds.Count; b++)
            {
                margins[b] = CurrentMargin();
                verifications[b] = Verify(b, margins[b]);
                _measuredEarlier.UnionWith(_thisBound);
                _thisBound.Clear();
            }
            verifyWatch.Stop();

            var all = _book.All();
            var byArch = all.ToDictionary(c => c.Arch);
            var results = new List<BoundResult>();
            for (int b = 0; b < bounds.Count; b++)
            {
                var s = searches[b];
                var v = verifications[b];
                results.Add(new BoundResult(bounds[b], _margin, s.NarrowedCount, s.Exhausted,
                    s.Visited.Select(i => _archs[i]).ToList(), s.Generations, Ranked(bounds[b], margins[b]).Select(c => c.Arch).ToList(),
                    v.Winner is null ? null : byArch[v.Winner], v.Verified, v.Rank, v.Note, s.Seconds, v.Seconds, margins[b]));
            }
            var front = ParetoFront.Compute(all, c => c.PredictedMs!.Value, c => c.Metric);
            var measuredFront = ParetoFront.Compute(all.Where(c => c.MeasuredMs is not null), c => c.MeasuredMs!.Value, c => c.Metric);
            var timings = new SearchTimings(narrowSeconds, searchWatch.Elapsed.TotalSeconds, verifyWatch.Elapsed.TotalSeconds,
                _watch.Elapsed.TotalSeconds, _book.Evaluations, _book.Reused, _book.Measurements, _book.ReusedMeasurements);
            Report(SearchPhase.Done, "search finished", null, 0, 0, null, null, false);
            return new SearchResult(_owner.Label ?? $"{PrecisionName(_def.Precision)} search", _studyName, _def, results, all, front, measuredFront, timings);
        }

        private bool[] Feasible(double boundMs, double margin)
        {
            var bound = new LatencyBound(boundMs, _opt.VerifyStatistic);
            var ok = new bool[_archs.Length];
            for (int i = 0; i < ok.Length; i++) ok[i] = bound.MeetsPredicted(_preds[i], margin);
            return ok;
        }

        /// <summary>
        /// The stored margin, recalibrated with every measurement verification has taken so far (in
        /// verification order, so a resumed run, served the same stored measurements, gets the same
        /// margins) when the predictor supports it.
        /// </summary>
        private double CurrentMargin()
        {
            if (_owner._predictor is not IRecalibratingLatencyPredictor recalibrating || _calibration.Count == 0) return _margin;
            double m = recalibrating.RecalibratedMargin(_calibration);
            if (!double.IsFinite(m) || m < 0) throw new InvalidOperationException($"the latency predictor's recalibrated margin {m} must be a finite number ≥ 0");
            return m;
        }

        private BoundSearch SearchBound(int boundIndex, bool[] feasible)
        {
            var watch = Stopwatch.StartNew();
            double bound = _def.BoundsMs[boundIndex];
            // Unvisited members of A*: a swap-remove pool, so a fresh sample is O(1) and exact.
            var pool = new List<int>();
            var position = new int[_archs.Length];
            Array.Fill(position, -1);
            for (int i = 0; i < feasible.Length; i++)
                if (feasible[i]) { position[i] = pool.Count; pool.Add(i); }
            int narrowed = pool.Count;

            var random = new Random(BoundSeed(_def.Seed, bound));
            var visited = new List<int>();
            var generations = new List<GenerationSummary>();
            double? best = null;

            for (int g = 1; g <= _opt.Generations && pool.Count > 0; g++)
            {
                var parents = g == 1 ? new List<int>() : TopByMetric(visited, _opt.Parents);
                var members = new List<int>();
                int mutations = 0, fresh = 0, fallbacks = 0, reused = 0;
                while (members.Count < _opt.CandidatesPerGeneration && pool.Count > 0)
                {
                    int chosen = -1;
                    if (parents.Count > 0 && random.NextDouble() < _opt.MutationProbability)
                    {
                        chosen = TryMutate(parents[random.Next(parents.Count)], random, position);
                        if (chosen >= 0) mutations++;
                        else fallbacks++;
                    }
                    if (chosen < 0)
                    {
                        chosen = pool[random.Next(pool.Count)];
                        fresh++;
                    }
                    Take(chosen, pool, position);
                    members.Add(chosen);
                }

                // One batch per generation: the members are chosen before any is evaluated, so a queue
                // can hand them to several workers; the records come back in member order.
                var evaluated = _book.EvaluateMany(members.Select(i => (_archs[i], (double?)_preds[i])).ToList(), _owner._evaluator, _cancellation);
                for (int m = 0; m < members.Count; m++)
                {
                    int idx = members[m];
                    var (rec, wasReused) = evaluated[m];
                    if (wasReused) reused++;
                    visited.Add(idx);
                    if (best is null || rec.Metric > best) best = rec.Metric;
                    if (_bestMetric is null || rec.Metric > _bestMetric) _bestMetric = rec.Metric;
                    _completedSteps++;
                    Report(SearchPhase.Searching,
                        string.Create(CultureInfo.InvariantCulture, $"bound {bound:0.###} ms, generation {g}/{_opt.Generations}: {rec.Arch} metric {rec.Metric:0.####}, predicted {rec.PredictedMs:0.###} ms{(wasReused ? " (cached)" : "")}"),
                        bound, boundIndex, g, rec.Arch, rec.Metric, wasReused);
                }
                generations.Add(new GenerationSummary(g, members.Count, mutations, fresh, fallbacks, reused, best ?? double.NaN));
            }
            return new BoundSearch(visited, generations, pool.Count == 0, narrowed, watch.Elapsed.TotalSeconds);
        }

        private static void Take(int idx, List<int> pool, int[] position)
        {
            int at = position[idx];
            int last = pool[^1];
            pool[at] = last;
            position[last] = at;
            pool.RemoveAt(pool.Count - 1);
            position[idx] = -1;
        }

        /// <summary>A bounded ±step move of the parent that lands on an unvisited member of A*, or -1.</summary>
        private int TryMutate(int parent, Random random, int[] position)
        {
            var space = _def.Space;
            int e0 = parent / (_nh * _nf), h0 = parent / _nf % _nh, f0 = parent % _nf;
            for (int attempt = 0; attempt < _opt.MutationAttempts; attempt++)
            {
                int de = 0, dh = 0, df = 0;
                if (random.NextDouble() < _opt.DimensionMutationProbability) de = Move(random, _opt.LayerMaxSteps);
                if (random.NextDouble() < _opt.DimensionMutationProbability) dh = Move(random, _opt.HiddenMaxSteps);
                if (random.NextDouble() < _opt.DimensionMutationProbability) df = Move(random, _opt.FfnMaxSteps);
                if (de == 0 && dh == 0 && df == 0)
                {
                    switch (random.Next(3))
                    {
                        case 0: de = Move(random, _opt.LayerMaxSteps); break;
                        case 1: dh = Move(random, _opt.HiddenMaxSteps); break;
                        default: df = Move(random, _opt.FfnMaxSteps); break;
                    }
                }
                int e = e0 + de, h = h0 + dh, f = f0 + df;
                if (e < 0 || e >= space.Layers.Count || h < 0 || h >= _nh || f < 0 || f >= _nf) continue;
                int idx = (e * _nh + h) * _nf + f;
                if (position[idx] >= 0) return idx; // in A* and not yet visited by this bound
            }
            return -1;
        }

        private static int Move(Random random, int maxSteps) => random.Next(1, maxSteps + 1) * (random.Next(2) == 0 ? -1 : 1);

        /// <summary>The k best visited architectures: metric, then predicted latency, then grid order.</summary>
        private List<int> TopByMetric(List<int> visited, int k)
        {
            return visited
                .Select(i => (Index: i, Metric: _book.TryGet(_archs[i], out var r) ? r.Metric : double.NegativeInfinity))
                .OrderByDescending(x => x.Metric).ThenBy(x => _preds[x.Index]).ThenBy(x => x.Index)
                .Take(k).Select(x => x.Index).ToList();
        }

        /// <summary>Every evaluated candidate inside this bound's A*, best first.</summary>
        private List<CandidateRecord> Ranked(double boundMs, double margin)
        {
            var bound = new LatencyBound(boundMs, _opt.VerifyStatistic);
            return _book.All()
                .Where(c => bound.MeetsPredicted(_preds[_index[c.Arch]], margin))
                .OrderByDescending(c => c.Metric).ThenBy(c => _preds[_index[c.Arch]]).ThenBy(c => _index[c.Arch])
                .ToList();
        }

        private Verification Verify(int boundIndex, double margin)
        {
            var watch = Stopwatch.StartNew();
            double bound = _def.BoundsMs[boundIndex];
            var latencyBound = new LatencyBound(bound, _opt.VerifyStatistic);
            var inv = CultureInfo.InvariantCulture;
            var ranked = Ranked(bound, margin);
            if (ranked.Count == 0) return new Verification(null, false, -1, "no candidate was evaluated inside A*", 0);
            if (_owner._measurer is null)
            {
                var top = ranked[0];
                return new Verification(top.Arch, false, 0,
                    string.Format(inv, "not verified: no latency measurer was given; {0} is predicted at {1:0.###} ms", top.Arch, top.PredictedMs), watch.Elapsed.TotalSeconds);
            }
            // Walk the ranking best-first. Candidates an earlier bound already measured are free;
            // every other one counts against the limit, whether or not the store (a resumed run)
            // already holds its measurement, so the outcome does not depend on crash history.
            var missed = new List<CandidateRecord>();
            int counted = 0;
            for (int r = 0; r < ranked.Count; r++)
            {
                bool free = _measuredEarlier.Contains(ranked[r].Arch);
                if (!free && counted >= _opt.MaxVerifications) continue;
                if (!free) counted++;
                bool stored = _book.TryGet(ranked[r].Arch, out var current) && current.MeasuredMs is not null;
                var rec = _book.Measure(ranked[r], _owner._measurer, _opt.VerifyStatistic, latencyBound, _owner.OnMeasured, _cancellation);
                _thisBound.Add(rec.Arch);
                if (_calibrated.Add(rec.Arch)) _calibration.Add((rec.Measurement!, rec.MeasuredMs!.Value));
                var judgement = latencyBound.Judge(rec.Measurement!);
                if (!free)
                {
                    _verifiedSteps++;
                    Report(SearchPhase.Verifying, string.Format(inv, "bound {0:0.###} ms: {1} {2} (predicted {3:0.###} ms){4}", bound, rec.Arch, judgement.Describe(), rec.PredictedMs, stored ? " (stored)" : ""),
                        bound, boundIndex, 0, rec.Arch, rec.Metric, stored);
                }
                if (judgement.Meets)
                {
                    string note = r == 0
                        ? string.Format(inv, "verified: {0} {1} (predicted {2:0.###} ms)", rec.Arch, judgement.Describe(), rec.PredictedMs)
                        : string.Format(inv, "fell back: {0} did not meet the bound by measurement ({1}); took #{2} {3}, {4}",
                            r == 1 ? "the best candidate" : $"the {r} best candidates",
                            Listing(missed, latencyBound, inv), r + 1, rec.Arch, judgement.Describe());
                    return new Verification(rec.Arch, true, r, note, watch.Elapsed.TotalSeconds);
                }
                missed.Add(rec);
            }
            var fastest = missed.MinBy(m => m.MeasuredMs!.Value)!;
            int uncertain = missed.Count(m => latencyBound.Judge(m.Measurement!).Verdict == BoundVerdict.Uncertain);
            return new Verification(null, false, -1, string.Format(inv,
                "none of the {0} best candidates met {1} by measurement ({2} uncertain at the protocol's limit; fastest measured: {3} {4}, predicted {5:0.###} ms); the predictor underestimates here or the machine is noisy: rerun (the measurements recalibrate the margin), or raise the bound",
                missed.Count, latencyBound, uncertain, fastest.Arch, latencyBound.Judge(fastest.Measurement!).Describe(), fastest.PredictedMs), watch.Elapsed.TotalSeconds);
        }

        private static string Listing(List<CandidateRecord> missed, LatencyBound bound, CultureInfo inv) =>
            string.Join(", ", missed.Take(3).Select(m => string.Format(inv, "{0} {1:0.###} ms {2}", m.Arch, m.MeasuredMs, LatencyBound.Name(bound.Judge(m.Measurement!).Verdict))))
            + (missed.Count > 3 ? $", and {missed.Count - 3} more" : "");

        private void Report(SearchPhase phase, string message, double? bound, int boundIndex, int generation, Architecture? arch, double? metric, bool reused)
        {
            var progress = _owner.Progress;
            if (progress is null) return;
            progress.Report(new SearchProgress(phase, message, bound, boundIndex, _def.BoundsMs.Count, generation, _opt.Generations,
                phase == SearchPhase.Verifying ? _verifiedSteps : _completedSteps,
                phase == SearchPhase.Verifying ? _def.BoundsMs.Count * _opt.MaxVerifications : _totalSteps, arch, metric, reused, _bestMetric, _watch.Elapsed,
                phase == SearchPhase.Searching ? Eta(_book, _totalSteps - _completedSteps) : null));
        }
    }
}
