// The debiasing run: a tuner (LoRA adapters, or a soft prompt, Adapters/) on a frozen base, trained on counterfactual
// pairs of the tune split until the measured validation bias falls under the threshold while captioning holds.
// Per optimizer step: micro-batches of the objectives (Objectives.cs) → backward (tuner parameters only) → clip →
// AdamW (explicit weight decay, warmup + cosine/constant). Every eval_every steps the evaluator measures the pairwise
// probe gap on validation pairs (train attributes) and CIDEr-D on validation captions; the best adapter passing the
// accuracy guard is saved; StopPolicy.cs says when the run ends. Checkpoints are atomic (TrainingCheckpoint.cs); a
// killed run resumes from the last one with the same data order (each step's batch is a function of seed and step).
// At the end the evaluator compares base and tuned on the test split, both from the one model in memory: the base
// with the tuner disabled, then the tuned with the best adapter's weights.
using System.Diagnostics;
using System.Text.Json.Nodes;
using Serilog;
using TorchSharp;
using VlaBias.Adapters;
using VlaBias.Data;
using VlaBias.Evaluation;
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
        var run = RunFolder.Prepare(cfg);
        onRunDir?.Invoke(run.Dir);
        run.WriteConfig(resolved);
        Log.Information("tune: run folder {Run}", run.Dir);

        var vla = Vla.Load(cfg.Model, dtype: ComputeDType.Parse(cfg.DType));
        var (tune, val, manifestDir) = Splits(cfg);
        var suite = Suite.Load(cfg.Suite);
        var words = WordLists.Load(suite.Words, suite.World);
        var tuner = CreateTuner(vla, cfg);
        var data = TuneData.Build(vla, tune, words, suite.CaptionPrompt);
        if (data.Pairs.Count == 0) throw new BadInputException($"{cfg.Data}: the tune split has no counterfactual pairs (items sharing 'pair' with genders man and woman)");
        Log.Information("tune: {Pairs} pairs, {Probes} probe questions, {Retain} retain examples, {Val} validation items; method {Method}, {Count} trainable parameters",
            data.Pairs.Count, data.ProbeQuestions, data.Retain.Count, val.Count, cfg.Method.Name(), tuner.ParameterCount);

        using var tuneBank = ImageBank.Load(tune, manifestDir, vla.Images);
        using var valBank = ImageBank.Load(val, manifestDir, vla.Images);
        var validator = new Evaluator(vla, suite with { Facts = false, ProbesWithUnknown = false, Bootstrap = 0 });
        ValidationPoint Validate(long step, double loss, string? cache, string identity) => Validation(validator, val, valBank, words, step, loss, cache, identity);
        ValidationPoint basePoint;
        using (tuner.Disable()) basePoint = Validate(0, double.NaN, run.BaseValidationCache, Evaluator.ModelIdentity(cfg.Model, null));
        Log.Information("tune: base on validation: pairwise probe gap {Bias:F4}, CIDEr-D {Cider:F3}", basePoint.Bias, basePoint.CiderD);

        var parameters = tuner.Parameters().ToList();
        var opt = optim.AdamW(parameters, lr: cfg.Lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: cfg.WeightDecay);
        var state = Resume(cfg, run, vla, tuner, opt);
        // The vision tower and projector stay frozen unless adapted: their features are computed once.
        using var tuneFeatures = cfg.LoraVision || cfg.LoraProjector ? null : validator.ImageFeatures(tuneBank);
        var terms = Objectives.For(cfg, data);
        var stop = new StopPolicy(cfg, basePoint);
        StopReason? reason = stop.Restored(state);
        vla.Model.train();
        while (state.Step < cfg.MaxSteps && reason is null)
        {
            cancel.ThrowIfCancellationRequested();
            long step = state.Step;
            foreach (var g in opt.ParamGroups) g.LearningRate = LearningRate.For(cfg, step);
            opt.zero_grad();
            var (total, values, nonFinite) = ForwardBackward(cfg, vla, tuner, data, terms, tuneBank, tuneFeatures, step);
            if (nonFinite is not null) { reason = nonFinite; state = state with { NonFinite = true }; Log.Error("tune: {Reason}", reason.Text); break; }
            nn.utils.clip_grad_norm_(parameters, cfg.GradClip);
            opt.step();
            (state, reason) = stop.AfterStep(state with { Step = step + 1, Ema = double.IsNaN(state.Ema) ? total : 0.9 * state.Ema + 0.1 * total });
            values["loss"] = total;
            string? note = null;
            if (stop.EvaluateNow(state.Step, reason))
            {
                var v = Validate(state.Step, state.Ema, null, "");
                bool guard = stop.Guard(v);
                state = state with { Evaluations = [.. state.Evaluations, v] };
                note = $"val bias {v.Bias:F4} cider {v.CiderD:F3}{(guard ? "" : " (accuracy guard)")}";
                Log.Information("tune: step {Step}: validation pairwise probe gap {Bias:F4}, CIDEr-D {Cider:F3} (base {BaseCider:F3}), loss {Loss:F4}",
                    state.Step, v.Bias, v.CiderD, basePoint.CiderD, state.Ema);
                if (guard && (state.BestStep < 0 || v.Bias < state.BestBias)) { tuner.Save(run.Dir); state = state with { BestStep = state.Step, BestBias = v.Bias }; }
                reason ??= stop.AfterEvaluation(v);
            }
            if (note is not null || state.Step % cfg.SaveEvery == 0 || reason is not null)
                TrainingCheckpoint.Save(run.Checkpoint, vla.Model, opt, new TrainingCheckpoint.State(state.Step, state.Ema, state.ToJson()), tuner.CheckpointTensors());
            progress?.Report(new TuneProgress(state.Step, cfg.MaxSteps, values, state.Evaluations.LastOrDefault(), note));
        }
        reason = StopPolicy.AtEnd(reason, state.BestStep >= 0);
        // No evaluation passed the accuracy guard: keep the last adapter so the run is still inspectable.
        if (state.BestStep < 0) { tuner.Save(run.Dir); state = state with { BestStep = state.Step }; }
        run.WriteState(reason, state, basePoint, clock.Elapsed, cfg, tuner.ParameterCount);
        Log.Information("tune: stopped after {Steps} steps: {Reason}; best adapter from step {Best}", state.Step, reason.Text, state.BestStep);

        JsonObject? baseMetrics = null, tunedMetrics = null;
        if (cfg.FinalEval && !state.NonFinite) (baseMetrics, tunedMetrics) = FinalEvaluation(cfg, run, vla, tuner);
        run.WriteState(reason, state, basePoint, clock.Elapsed, cfg, tuner.ParameterCount);
        if (baseMetrics is not null) run.WriteReport();
        return new TuneResult(run.Dir, reason, state.BestStep, state.Step, state.Evaluations, basePoint, clock.Elapsed, baseMetrics, tunedMetrics);
    }

    /// <summary>The tune and validation items (sorted by id; validation limited to val_pairs pairs) and the manifest's folder.</summary>
    private static (List<ManifestItem> tune, List<ManifestItem> val, string manifestDir) Splits(TuneConfig cfg)
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
        return (tune, val, Path.GetDirectoryName(Path.GetFullPath(cfg.Data))!);
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
        TuneData data, IReadOnlyList<LossTerm> terms, ImageBank bank, Tensor? features, long step)
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
            (loss / cfg.GradAccum).backward();
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
    private static ValidationPoint Validation(Evaluator validator, IReadOnlyList<ManifestItem> val, ImageBank bank, WordLists words,
        long step, double loss, string? cache, string identity)
    {
        var samples = validator.Collect(val, bank, null, cache, identity, q => q.AttributeSplit == Split.Train);
        var pairs = MetricsCalculator.ProbePairs(samples.Where(s => s.Kind == SampleKind.Probe && s.Options?.Count == 2 && s.AttributeSplit == Split.Train));
        double bias = pairs.Count == 0 ? double.NaN : Evaluation.Metrics.PairwiseProbeGap.Compute(pairs);
        var caps = samples.Where(s => s.Kind == SampleKind.Caption && s.References is { Count: > 0 }).ToList();
        double cider = caps.Count == 0 ? double.NaN : Evaluation.Metrics.CiderD.Compute(
            caps.Select(c => (IReadOnlyList<string>)c.References!.Select(Evaluation.Metrics.CaptionTokenizer.Tokenize).ToList()).ToList(),
            caps.Select(c => Evaluation.Metrics.CaptionTokenizer.Tokenize(c.Output!)).ToList());
        return new ValidationPoint(step, bias, cider, loss);
    }

    /// <summary>
    /// Base and tuned on the suite's split: eval/base (the tuner disabled), eval/tuned (the best adapter's weights read
    /// back), comparison.md. One model in memory serves both.
    /// </summary>
    private static (JsonObject baseDoc, JsonObject tunedDoc) FinalEvaluation(TuneConfig cfg, RunFolder run, Vla vla, ITunable tuner)
    {
        var suite = Suite.Load(cfg.Suite) with { Bootstrap = cfg.TestBootstrap };
        // The base evaluation is the same for every run of this base: share its cache across runs.
        string sharedCache = Path.Combine(cfg.RunsDir, ".cache");
        Directory.CreateDirectory(sharedCache);
        Directory.CreateDirectory(run.BaseEval);
        string cacheName = Path.Combine(sharedCache, $"base-{suite.Name}-{suite.Split}.jsonl");
        var baseCache = Path.Combine(run.BaseEval, EvalRunner.CacheFile);
        if (File.Exists(cacheName) && !File.Exists(baseCache)) File.Copy(cacheName, baseCache);
        Log.Information("tune: evaluating base on the {Split} split", suite.Split);
        EvalOutcome b;
        using (tuner.Disable()) b = EvalRunner.Run(vla, new EvalRequest(cfg.Model, null, suite, run.BaseEval, Shard.All));
        File.Copy(baseCache, cacheName, overwrite: true);
        tuner.LoadWeights(run.Dir);
        Log.Information("tune: evaluating tuned on the {Split} split", suite.Split);
        var t = EvalRunner.Run(vla, new EvalRequest(cfg.Model, run.Dir, suite, run.TunedEval, Shard.All));
        Comparison.Write(run.ComparisonFile, [("base", b.Metrics!), ("tuned", t.Metrics!)]);
        return (b.Metrics!, t.Metrics!);
    }
}
