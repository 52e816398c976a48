// The debiasing run: a tuner (LoRA adapters, or a soft prompt, Adapters/) on a frozen base, trained on counterfactual
// pairs of the tune split until the measured validation bias falls under the threshold while captioning holds.
// Per optimizer step: micro-batches of the objectives (Objectives.cs) → backward (tuner parameters only) → clip →
// AdamW (explicit weight decay, warmup + cosine/constant). Every eval_every steps the evaluator measures the pairwise
// probe gap on validation pairs (train attributes) and CIDEr-D on validation captions; the best adapter passing the
// accuracy guard is saved; StopPolicy.cs says when the run ends. Checkpoints are atomic (TrainingCheckpoint.cs); a
// killed run resumes from the last one with the same data order (each step's batch is a function of seed and step).
// At the end the evaluator compares base and tuned on the test split, both from the one model in memory: the base
// with the tuner disabled (or its evaluation copied from the evaluation cache, Evaluation/EvalCache.cs), then the tuned
// with the best adapter's weights. PhaseClock.cs records wall and CPU seconds per phase (trainer_state.json "timing").
// Overlap (ValidationWorker.cs; recipe key overlap, measured when auto): a second copy of the model on a second thread
// runs the base's validation, every validation (of a snapshot of the tuner's tensors at its step) and, in pieces while
// no validation waits, the base's test evaluation while this thread trains on; at the end it answers half of the tuned
// model's test evaluation (EvalPieces: the same batches, so the same outputs as one call). Results are applied in step
// order with the rules of the sequential loop (Judge), so the validation points, the best adapter and the stop are the
// same; steps trained past a validation that stops the run are dropped (the run's state, checkpoint and adapter are
// those of that step). The checkpoint of a validation step is written before its result: a run resumed from it
// validates that step again first.
using System.Diagnostics;
using System.Text.Json.Nodes;
using Serilog;
using TorchSharp;
using VlaBias.Adapters;
using VlaBias.Data;
using VlaBias.Evaluation;
using VlaBias.Generation;
using VlaBias.Images;
using VlaBias.Model;
using VlaBias.Recipes;
using static TorchSharp.torch;

namespace VlaBias.Training;

public sealed record TuneProgress(long Step, long MaxSteps, IReadOnlyDictionary<string, double> Terms, ValidationPoint? Last, string? Note);

public sealed record TuneResult(string RunDir, StopReason Stop, long BestStep, long Steps, IReadOnlyList<ValidationPoint> Evaluations,
    ValidationPoint Base, TimeSpan Elapsed, JsonObject? BaseMetrics, JsonObject? TunedMetrics)
{
    public bool ThresholdReached => Stop.GoalReached;
}

public static class DebiasTrainer
{
    public static TuneResult Run(TuneConfig cfg, Recipe resolved, IProgress<TuneProgress>? progress = null, CancellationToken cancel = default, Action<string>? onRunDir = null)
    {
        cfg.Validate();
        var clock = Stopwatch.StartNew();
        var phases = new PhaseClock();
        var run = RunFolder.Prepare(cfg);
        onRunDir?.Invoke(run.Dir);
        run.WriteConfig(resolved);
        Log.Information("tune: run folder {Run}", run.Dir);

        Vla vla;
        var parameterCount = new Lazy<long>(() => ComputeDType.ParameterCount(Assets.Resolve(cfg.Model)));   // read for auto only, once
        using (phases.Time("load model")) vla = Vla.Load(cfg.Model, dtype: ComputeDType.Resolve(cfg.DType, cfg.Model, () => parameterCount.Value).DType);
        var (checkpointing, why) = TuneConfig.Checkpointing(cfg.GradientCheckpointing, () => parameterCount.Value);
        vla.Model.LanguageModel.Model.GradientCheckpointing = checkpointing;
        Log.Write(checkpointing ? Serilog.Events.LogEventLevel.Information : Serilog.Events.LogEventLevel.Debug,
            "tune: gradient checkpointing {State} ({Reason})", checkpointing ? "on" : "off", why);
        var scope = phases.Time("manifest");
        var (tune, val, manifestDir, items) = Splits(cfg);
        var suite = Suite.Load(cfg.Suite);
        var words = WordLists.Load(suite.Words, suite.World);
        scope.Dispose();
        ITunable tuner;
        using (phases.Time("tuner")) tuner = CreateTuner(vla, cfg);
        scope = phases.Time("tune data");
        var data = TuneData.Build(vla, tune, words, suite.CaptionPrompt);
        scope.Dispose();
        if (data.Pairs.Count == 0) throw new BadInputException($"{cfg.Data}: the tune split has no counterfactual pairs (items sharing 'pair' with genders man and woman)");
        Log.Information("tune: {Pairs} pairs, {Probes} probe questions, {Retain} retain examples, {Val} validation items; method {Method}, {Count} trainable parameters",
            data.Pairs.Count, data.ProbeQuestions, data.Retain.Count, val.Count, cfg.Method.Name(), tuner.ParameterCount);

        scope = phases.Time("images");
        using var tuneBank = ImageBank.Load(tune, manifestDir, vla.Images);
        using var valBank = ImageBank.Load(val, manifestDir, vla.Images);
        scope.Dispose();
        var validatorSuite = suite with { Facts = false, ProbesWithUnknown = false, Bootstrap = 0 };
        var validator = new Evaluator(vla, validatorSuite);
        // Before any result is computed: with the worker, this thread's intra-op threads change.
        using var worker = StartWorker(cfg, vla, val, valBank, validatorSuite, phases);
        // The vision tower and projector stay frozen unless adapted: their features are computed once, for the tune
        // images (every step) and the validation images (every validation).
        bool frozenVision = !cfg.LoraVision && !cfg.LoraProjector;
        scope = phases.Time("image features");
        using var tuneFeatures = frozenVision ? validator.ImageFeatures(tuneBank) : null;
        using var valFeatures = frozenVision ? validator.ImageFeatures(valBank) : null;
        scope.Dispose();
        var sides = new Sides(vla, tuner, validator, worker, worker is null ? null : new Evaluator(worker.Vla, validatorSuite), phases);
        Func<long, double, string?, string, ValidationPoint> Validate(Evaluator ev) =>
            (step, loss, cache, identity) => Validation(ev, val, valBank, valFeatures, words, step, loss, cache, identity);
        var baseTask = sides.Run("base validation", (m, t, ev) => { using (t.Disable()) return BaseValidation(cfg, m, suite, run, Validate(ev)); });
        ValidationPoint BasePoint() => baseTask.GetAwaiter().GetResult();
        baseTask.ContinueWith(t => Log.Information("tune: base on validation: pairwise probe gap {Bias:F4}, CIDEr-D {Cider:F3}", t.Result.Bias, t.Result.CiderD),
            TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously);
        // The base's test evaluation reads nothing the training changes: with the worker it runs now, in pieces, whenever
        // the worker has no validation to do.
        var baseTest = cfg.FinalEval ? sides.BaseTestWhenIdle(BaseTestRequest(cfg, run, items)) : null;

        var parameters = tuner.Parameters().ToList();
        var opt = optim.AdamW(parameters, lr: cfg.Lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: cfg.WeightDecay);
        var state = Resume(cfg, run, vla, tuner, opt);
        var terms = Objectives.For(cfg, data, phases);
        var stop = new StopPolicy(cfg, BasePoint);
        // The worker keeps its own copy of what the results decide, to save the best adapter from its weights.
        var workerState = state;
        bool workerStopped = false;
        var pending = new Queue<(RunState at, Task<ValidationPoint> point)>();
        string? lastNote = null;

        // Queues (worker: on a snapshot of the tuner's tensors) or runs (inline) the validation of the tuner as it is now.
        void StartValidation(RunState at)
        {
            var snapshot = worker is null ? null : ValidationWorker.Snapshot(tuner);
            pending.Enqueue((at, sides.Run("validation", (_, t, ev) =>
            {
                if (snapshot is not null) worker!.Load(snapshot);
                var v = Validate(ev)(at.Step, at.Ema, null, "");
                if (worker is not null && !workerStopped)
                {
                    var (next, stopNow, save, _) = Judge(stop, workerState, v);
                    workerState = next;
                    if (save) t.Save(run.Dir);
                    workerStopped = stopNow is not null;
                }
                return v;
            })));
        }

        // Applies queued results in step order while they are ready (all of them, waiting, when wait is true, or those
        // before step `before`). A result that stops the run returns the state at its step and the reason.
        StopReason? ApplyResults(ref RunState s, bool wait, long before = long.MaxValue)
        {
            while (pending.Count > 0 && (wait || pending.Peek().at.Step < before || pending.Peek().point.IsCompleted))
            {
                var (at, task) = pending.Dequeue();
                var v = task.GetAwaiter().GetResult();
                var (next, stopNow, save, guard) = Judge(stop, s, v);
                Log.Information("tune: step {Step}: validation pairwise probe gap {Bias:F4}, CIDEr-D {Cider:F3} (base {BaseCider:F3}), loss {Loss:F4}",
                    v.Step, v.Bias, v.CiderD, BasePoint().CiderD, at.Ema);
                lastNote = $"val bias {v.Bias:F4} cider {v.CiderD:F3}{(guard ? "" : " (accuracy guard)")}";
                if (save && worker is null) tuner.Save(run.Dir);
                s = next;
                if (stopNow is not null)
                {
                    // the run ends at this validation's step: later steps and their validations are dropped
                    s = s with { Step = at.Step, Ema = at.Ema, BelowCount = at.BelowCount, NonFinite = false };
                    pending.Clear();
                    return stopNow;
                }
            }
            return null;
        }

        StopReason? reason = stop.Restored(state);
        // A checkpoint written at a validation step before that validation's result (overlap): validate it now.
        if (reason is null && state.Step > 0 && stop.EvaluateNow(state.Step, null) && (state.Evaluations.LastOrDefault()?.Step ?? -1) < state.Step)
        {
            StartValidation(state);
            reason = ApplyResults(ref state, wait: true);
        }
        vla.Model.train();
        while (state.Step < cfg.MaxSteps && reason is null)
        {
            cancel.ThrowIfCancellationRequested();
            long step = state.Step;
            foreach (var g in opt.ParamGroups) g.LearningRate = LearningRate.For(cfg, step);
            opt.zero_grad();
            var (total, values, nonFinite) = ForwardBackward(cfg, vla, tuner, data, terms, tuneBank, tuneFeatures, step, phases);
            if (nonFinite is not null)
            {
                // a pending validation that stops the run comes first: the sequential loop never reached this step
                reason = ApplyResults(ref state, wait: true);
                if (reason is not null) break;
                reason = nonFinite; state = state with { NonFinite = true }; Log.Error("tune: {Reason}", reason.Text); break;
            }
            using (phases.Time("step: clip + optimizer"))
            {
                nn.utils.clip_grad_norm_(parameters, cfg.GradClip);
                opt.step();
            }
            (state, reason) = stop.AfterStep(state with { Step = step + 1, Ema = double.IsNaN(state.Ema) ? total : 0.9 * state.Ema + 0.1 * total });
            values["loss"] = total;
            lastNote = null;
            bool evaluated = stop.EvaluateNow(state.Step, reason);
            if (evaluated) StartValidation(state);
            // Results up to this step when a checkpoint is due (a rule fired: all of them), else those that are ready.
            bool checkpoint = evaluated || state.Step % cfg.SaveEvery == 0 || reason is not null;
            long now = state.Step;
            if (ApplyResults(ref state, wait: reason is not null, before: checkpoint ? now : long.MinValue) is { } stopped) reason = stopped;
            if (state.Step != now) break;   // a validation of an earlier step stopped the run; this step is dropped
            if (checkpoint)
                using (phases.Time("checkpoint"))
                    TrainingCheckpoint.Save(run.Checkpoint, vla.Model, opt, new TrainingCheckpoint.State(state.Step, state.Ema, state.ToJson()), tuner.CheckpointTensors());
            progress?.Report(new TuneProgress(state.Step, cfg.MaxSteps, values, state.Evaluations.LastOrDefault(), lastNote));
        }
        if (reason is null || pending.Count > 0)
        {
            var stopped = ApplyResults(ref state, wait: true);
            if (stopped is not null) reason = stopped;
        }
        var basePoint = BasePoint();
        reason = StopPolicy.AtEnd(reason, state.BestStep >= 0);
        // No evaluation passed the accuracy guard: keep the last adapter so the run is still inspectable.
        if (state.BestStep < 0) { tuner.Save(run.Dir); state = state with { BestStep = state.Step }; }
        run.WriteState(reason, state, basePoint, clock.Elapsed, cfg, tuner.ParameterCount);
        Log.Information("tune: stopped after {Steps} steps: {Reason}; best adapter from step {Best}", state.Step, reason.Text, state.BestStep);

        JsonObject? baseMetrics = null, tunedMetrics = null;
        if (cfg.FinalEval && !state.NonFinite) (baseMetrics, tunedMetrics) = FinalEvaluation(cfg, run, tuner, sides, phases, baseTest, items);
        run.WriteState(reason, state, basePoint, clock.Elapsed, cfg, tuner.ParameterCount, phases.ToJson());
        if (baseMetrics is not null)
        {
            using (phases.Time("run report")) run.WriteReport();
            run.WriteState(reason, state, basePoint, clock.Elapsed, cfg, tuner.ParameterCount, phases.ToJson());
        }
        Log.Information("tune: timing: {Timing}", phases.Summary());
        return new TuneResult(run.Dir, reason, state.BestStep, state.Step, state.Evaluations, basePoint, clock.Elapsed, baseMetrics, tunedMetrics);
    }

    /// <summary>
    /// The base model on validation, through the run's val_base_cache.jsonl and, when the evaluation cache is on, a
    /// copy of it in the cache under a key over the model's files, the validation data and settings and the code
    /// (EvalCache.cs): a later run of the same base on the same data starts from it.
    /// </summary>
    private static ValidationPoint BaseValidation(TuneConfig cfg, Vla vla, Suite suite, RunFolder run, Func<long, double, string?, string, ValidationPoint> validate)
    {
        var root = EvalCache.Root();
        if (root is null) return validate(0, double.NaN, run.BaseValidationCache, Evaluator.ModelIdentity(cfg.Model, null));
        var parts = EvalCache.KeyParts(vla, cfg.Model, suite with { Manifest = cfg.Data, Split = "val", Facts = false, ProbesWithUnknown = false, Bootstrap = 0 });
        parts["validation"] = $"val_pairs {cfg.ValPairs}; probes over train attributes";
        var key = EvalCache.Key(parts);
        var shared = Path.Combine(root, $"val-{key}.jsonl");
        if (File.Exists(shared) && !File.Exists(run.BaseValidationCache)) File.Copy(shared, run.BaseValidationCache);
        var point = validate(0, double.NaN, run.BaseValidationCache, "content:" + key);
        try
        {
            Directory.CreateDirectory(root);
            var tmp = shared + ".tmp-" + Environment.ProcessId;
            File.Copy(run.BaseValidationCache, tmp, overwrite: true);
            File.Move(tmp, shared, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { Log.Warning("tune: base validation not stored in the evaluation cache {Root}: {Error}", root, e.Message); }
        return point;
    }

    /// <summary>
    /// What one validation decides, given the run's state before it: the state with the point added (and the best step
    /// when it passes the accuracy guard with the lowest bias so far), the stop reason when the threshold rule fires,
    /// whether the adapter is saved as the best, and whether the guard passed. The same rules with or without the worker.
    /// </summary>
    private static (RunState state, StopReason? stop, bool save, bool guard) Judge(StopPolicy stop, RunState s, ValidationPoint v)
    {
        bool guard = stop.Guard(v);
        s = s with { Evaluations = [.. s.Evaluations, v] };
        bool best = guard && (s.BestStep < 0 || v.Bias < s.BestBias);
        if (best) s = s with { BestStep = v.Step, BestBias = v.Bias };
        return (s, stop.AfterEvaluation(v), best, guard);
    }

    /// <summary>
    /// Where work that reads the model but not the training step runs: on this thread with the trained model, its tuner
    /// and validator (timed as PHASE), or queued on the worker with its copies (timed as "worker: PHASE").
    /// </summary>
    private sealed class Sides(Vla vla, ITunable tuner, Evaluator validator, ValidationWorker? worker, Evaluator? workerValidator, PhaseClock phases)
    {
        /// <summary>Pieces of the base's test evaluation on the worker: each short beside the gap between validations.</summary>
        public const int BaseTestPieces = 8;

        public bool HasWorker => worker is not null;

        /// <summary>The trained model (this thread's).</summary>
        public Vla Model => vla;

        public Task<T> Run<T>(string phase, Func<Vla, ITunable, Evaluator, T> work)
        {
            if (worker is null)
                using (phases.Time(phase)) return Task.FromResult(work(vla, tuner, validator));
            return worker.Run(() => { using (phases.Time("worker: " + phase)) return work(worker.Vla, worker.Tuner, workerValidator!); });
        }

        /// <summary>
        /// The base's evaluation of <paramref name="req"/> (through the evaluation cache) queued on the worker as idle
        /// jobs: the cache look-up, then <see cref="BaseTestPieces"/> pieces, then the outputs; null without a worker.
        /// </summary>
        public Task<EvalOutcome>? BaseTestWhenIdle(EvalRequest req)
        {
            if (worker is null) return null;
            const string phase = "worker: base test evaluation";
            Task<T> Idle<T>(Func<T> work) => worker.RunWhenIdle(() =>
            {
                using (phases.Time(phase))
                using (worker.Tuner.Disable()) return work();
            });
            var open = Idle(() =>
            {
                var (entry, hit) = EvalRunner.LookUp(worker.Vla, req);
                return (entry, hit, pieces: hit is null ? EvalPieces.Open(worker.Vla, req, BaseTestPieces) : null);
            });
            // Each later job runs after the look-up (one queue, in order): a failed look-up fails them too.
            for (int i = 1; i <= BaseTestPieces; i++)
            {
                int piece = i;
                Idle(() => open.GetAwaiter().GetResult().pieces?.Collect(worker.Vla, piece));
            }
            return Idle(() =>
            {
                var (entry, hit, pieces) = open.GetAwaiter().GetResult();
                if (hit is not null) return hit;
                using (pieces)
                {
                    var outcome = pieces!.Finish();
                    entry?.Store(req.Out);
                    return outcome;
                }
            });
        }

        /// <summary>
        /// <paramref name="req"/> evaluated with the trained model; with the worker, half of its batches there, after
        /// <paramref name="prepareWorker"/> has set the worker's tuner up like this thread's.
        /// </summary>
        public EvalOutcome Evaluate(string phase, EvalRequest req, Action<ITunable> prepareWorker)
        {
            if (worker is null)
                using (phases.Time(phase)) return EvalRunner.Run(vla, req);
            using var pieces = EvalPieces.Open(vla, req, 2);
            var other = worker.Run(() =>
            {
                using (phases.Time("worker: " + phase))
                {
                    prepareWorker(worker.Tuner);
                    return pieces.Collect(worker.Vla, 2);
                }
            });
            using (phases.Time(phase))
            {
                try { pieces.Collect(vla, 1); }
                finally { other.ContinueWith(_ => { }).Wait(); }   // the worker is done with the pieces before they go
                other.GetAwaiter().GetResult();
                return pieces.Finish();
            }
        }
    }

    /// <summary>
    /// The worker (a second copy of the model and tuner on its own thread) when cfg.Overlap asks for it or, on auto,
    /// <see cref="ValidationWorker.Decide"/> measures it worth having on a batch of validation probes; null otherwise.
    /// With the worker, this thread and the worker get half the threads each.
    /// </summary>
    private static ValidationWorker? StartWorker(TuneConfig cfg, Vla vla, IReadOnlyList<ManifestItem> val, ImageBank valBank,
        Suite validatorSuite, PhaseClock phases)
    {
        var probes = val.SelectMany((it, i) => it.Questions.Where(q => q.Kind == QuestionKind.Probe && q.AttributeSplit == Split.Train).Select(q => (image: i, q))).ToList();
        IReadOnlyList<string> options = probes.Count > 0 && probes[0].q.Options is { Count: > 0 } o ? o : validatorSuite.ProbeOptions;
        probes = probes.Where(p => (p.q.Options is { Count: > 0 } po ? po : validatorSuite.ProbeOptions).SequenceEqual(options)).Take(32).ToList();
        if (probes.Count == 0 && cfg.Overlap == "auto") { Log.Information("tune: overlap auto: no validation probes to measure with; one task"); return null; }
        var gen = new TextGenerator(vla);
        var rows = probes.Select(p => p.image).Distinct().ToList();
        var prompts = probes.Select(p => vla.PromptIds(p.q.Q)).ToList();
        var imageOfRow = probes.Select(p => rows.IndexOf(p.image)).ToList();
        float[][] Probe()
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var features = vla.Model.ImageFeatures(valBank.Select(rows));
            return Evaluator.ScoreOptions(vla, gen, prompts, features, imageOfRow, options, share: true);
        }
        var (use, threads, why) = ValidationWorker.Decide(cfg.Overlap, vla, Probe);
        Log.Information("tune: overlap {Why}", why);
        if (!use) return null;
        int all = get_num_threads();
        set_num_threads(threads);
        phases.ThreadCpu = true;
        var copy = Vla.Load(cfg.Model, dtype: vla.Model.DType);
        return new ValidationWorker(copy, CreateTuner(copy, cfg), threads) { RestoreThreads = all };
    }

    /// <summary>The tune and validation items (sorted by id; validation limited to val_pairs pairs) and the manifest's folder.</summary>
    /// <summary>The tune and validation items of cfg.Data, its folder, and all its items (the test evaluations reuse them).</summary>
    private static (List<ManifestItem> tune, List<ManifestItem> val, string manifestDir, IReadOnlyList<ManifestItem> all) Splits(TuneConfig cfg)
    {
        var items = Manifest.Load(cfg.Data);
        var tune = items.Where(i => i.Split == Split.Tune).OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        var val = items.Where(i => i.Split == Split.Val).OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        if (tune.Count == 0) throw new BadInputException($"{cfg.Data}: no items with split 'tune'");
        if (val.Count == 0) throw new BadInputException($"{cfg.Data}: no items with split 'val' (early stopping measures bias on it)");
        if (cfg.ValPairs > 0)
        {
            var keep = val.Where(v => v.Pair is not null).Select(v => v.Pair!).Distinct().Take(cfg.ValPairs).ToHashSet();
            val = val.Where(v => v.Pair is not null && keep.Contains(v.Pair)).ToList();
        }
        return (tune, val, Path.GetDirectoryName(Path.GetFullPath(cfg.Data))!, items);
    }

    /// <summary>method lora: adapters on the frozen base; method prompt: a soft prefix, everything else frozen.</summary>
    private static ITunable CreateTuner(Vla vla, TuneConfig cfg)
    {
        ITunable tuner;
        if (cfg.Method == TuneMethod.Prompt)
        {
            foreach (var w in vla.Model.parameters()) w.requires_grad = false;
            tuner = SoftPrompt.Create(vla.Model, cfg.PromptTokens, cfg.Seed, cfg.Model);
        }
        else tuner = LoraAdapter.Apply(vla.Model, cfg.Lora, cfg.Seed);
        vla.Attach(tuner);
        return tuner;
    }

    private static RunState Resume(TuneConfig cfg, RunFolder run, Vla vla, ITunable tuner, TorchSharp.Modules.OptimizerHelper opt)
    {
        if (!cfg.Resume) return new RunState();
        if (!TrainingCheckpoint.Exists(run.Checkpoint)) throw new BadInputException($"{run.Dir}: nothing to resume (no {RunFolder.CheckpointName})");
        var s = TrainingCheckpoint.Load(run.Checkpoint, vla.Model, opt, tuner.CheckpointTensors());
        Log.Information("tune: resumed at step {Step}", s.Step);
        return RunState.FromJson(s.Extra!) with { Step = s.Step };
    }

    /// <summary>The grad_accum micro-batches of one step, each a function of (seed, step, micro-batch): loss, term values, or why the loss is unusable.</summary>
    private static (double total, Dictionary<string, double> values, StopReason? nonFinite) ForwardBackward(TuneConfig cfg, Vla vla, ITunable tuner,
        TuneData data, IReadOnlyList<LossTerm> terms, ImageBank bank, Tensor? features, long step, PhaseClock phases)
    {
        var values = new Dictionary<string, double>();
        double total = 0;
        for (int micro = 0; micro < cfg.GradAccum; micro++)
        {
            using var scope = NewDisposeScope();
            var rng = new Random(StepSeed(cfg.Seed, step, micro));   // a function of (seed, step): resumes see the same batches
            manual_seed(cfg.Seed * 1_000_003 + step * 31 + micro);
            using var mb = new MicroBatch(vla, tuner, data, cfg, rng, bank, features);
            var loss = Objectives.Loss(terms, mb, values, cfg.GradAccum);
            double value = loss.ToDouble();
            if (!double.IsFinite(value)) return (total, values, StopPolicy.NonFinite(value, step));
            total += value / cfg.GradAccum;
            using (phases.Time("step: backward")) (loss / cfg.GradAccum).backward();
        }
        return (total, values, null);
    }

    /// <summary>Deterministic across processes (HashCode.Combine is randomised per process).</summary>
    private static int StepSeed(long seed, long step, int micro)
    {
        ulong x = (ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)step * 0xBF58476D1CE4E5B9UL ^ (ulong)micro * 0x94D049BB133111EBUL;
        x ^= x >> 31; x *= 0xD6E8FEB86659FD93UL; x ^= x >> 32;
        return (int)(x & 0x7FFFFFFF);
    }

    /// <summary>Pairwise probe gap (train attributes) and CIDEr-D of the model as it is now on the validation items.</summary>
    private static ValidationPoint Validation(Evaluator validator, IReadOnlyList<ManifestItem> val, ImageBank bank, Tensor? features, WordLists words,
        long step, double loss, string? cache, string identity)
    {
        var samples = validator.Collect(val, bank, null, cache, identity, q => q.AttributeSplit == Split.Train, imageFeatures: features);
        var pairs = MetricsCalculator.ProbePairs(samples.Where(s => s.Kind == SampleKind.Probe && s.Options?.Count == 2 && s.AttributeSplit == Split.Train));
        double bias = pairs.Count == 0 ? double.NaN : Evaluation.Metrics.PairwiseProbeGap.Compute(pairs);
        var caps = samples.Where(s => s.Kind == SampleKind.Caption && s.References is { Count: > 0 }).ToList();
        double cider = caps.Count == 0 ? double.NaN : Evaluation.Metrics.CiderD.Compute(
            caps.Select(c => (IReadOnlyList<string>)c.References!.Select(Evaluation.Metrics.CaptionTokenizer.Tokenize).ToList()).ToList(),
            caps.Select(c => Evaluation.Metrics.CaptionTokenizer.Tokenize(c.Output!)).ToList());
        return new ValidationPoint(step, bias, cider, loss);
    }

    /// <summary>The base's test evaluation; <paramref name="items"/> (cfg.Data's, already read) serve when the suite reads that file.</summary>
    private static EvalRequest BaseTestRequest(TuneConfig cfg, RunFolder run, IReadOnlyList<ManifestItem> items)
    {
        var suite = Suite.Load(cfg.Suite) with { Bootstrap = cfg.TestBootstrap };
        bool same = Path.GetFullPath(suite.Manifest) == Path.GetFullPath(cfg.Data);
        return new(cfg.Model, null, suite, run.BaseEval, Shard.All, Items: same ? items : null);
    }

    /// <summary>
    /// Base and tuned on the suite's split: eval/base (the tuner disabled; copied from the evaluation cache when an
    /// entry for exactly this model, suite, data and code exists, see EvalCache.cs; with the worker, started at the
    /// beginning: <paramref name="baseTest"/>), eval/tuned (the best adapter's weights read back; with the worker, half
    /// of its batches answered there), comparison.md.
    /// </summary>
    private static (JsonObject baseDoc, JsonObject tunedDoc) FinalEvaluation(TuneConfig cfg, RunFolder run, ITunable tuner, Sides sides, PhaseClock phases,
        Task<EvalOutcome>? baseTest, IReadOnlyList<ManifestItem> items)
    {
        var baseRequest = BaseTestRequest(cfg, run, items);
        var suite = baseRequest.Suite;
        Log.Information(sides.HasWorker ? "tune: evaluating base (on the worker) and tuned (on both threads) on the {Split} split" : "tune: evaluating base on the {Split} split", suite.Split);
        var baseTask = baseTest ?? sides.Run("base test evaluation", (m, t, _) => { using (t.Disable()) return EvalRunner.RunCached(m, baseRequest); });
        tuner.LoadWeights(run.Dir);
        if (!sides.HasWorker) Log.Information("tune: evaluating tuned on the {Split} split", suite.Split);
        var t = sides.Evaluate("tuned test evaluation", baseRequest with { Adapter = run.Dir, Out = run.TunedEval }, other => other.LoadWeights(run.Dir));
        var b = baseTask.GetAwaiter().GetResult();
        Comparison.Write(run.ComparisonFile, [("base", b.Metrics!), ("tuned", t.Metrics!)]);
        return (b.Metrics!, t.Metrics!);
    }
}
