// The debiasing run (SPEC §6): LoRA (method lora) or a soft prompt prefix (method prompt, Adapters/SoftPrompt.cs) on a frozen base, trained on counterfactual pairs until the measured validation
// bias falls under the threshold while captioning accuracy holds. Data flow per optimizer step:
//   tune split → P counterfactual pairs (x = man image, x' = woman image of one scene) × K probe prompts
//     parity:  (p_yes(x,q) − p_yes(x',q))², p_yes renormalized over yes/no, plus the symmetric KL of next-token
//              distributions of x and x' teacher-forced on x's gold caption, skipping positions whose target is a
//              gender word (data/words/gender_words.json)
//     unknown: −log p(unknown) on probes offered with a yes/no/unknown choice (Girrbach et al.)
//     retain:  cross-entropy on truthful captions and factual answers
//   → weighted sum → backward (LoRA parameters only) → clip → AdamW (explicit weight decay, warmup + cosine/constant).
// Every eval_every steps the evaluator measures the pairwise probe gap on validation pairs (train attributes) and
// CIDEr-D on validation captions; the best adapter passing the accuracy guard is kept; the run stops at the first
// evaluation with bias ≤ threshold and CIDEr-D ≥ (1 − max_accuracy_drop) × base. Checkpoints (adapter weights,
// optimizer, state) are atomic; a killed run resumes from the last one with the same data order (each step's batch is
// a function of seed and step). At the end the evaluator compares base and tuned on the test split.
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Serilog;
using TorchSharp;
using VlaBias.Adapters;
using VlaBias.Data;
using VlaBias.Evaluation;
using VlaBias.Model;
using VlaBias.Recipes;
using static TorchSharp.torch;

namespace VlaBias.Training;

public sealed record ValidationPoint(long Step, double Bias, double CiderD, double Loss);

public sealed record TuneProgress(long Step, long MaxSteps, IReadOnlyDictionary<string, double> Terms, ValidationPoint? Last, string? Note);

public sealed record TuneResult(string RunDir, string StopReason, bool ThresholdReached, long BestStep, long Steps,
    IReadOnlyList<ValidationPoint> Evaluations, ValidationPoint Base, TimeSpan Elapsed, JsonObject? BaseMetrics, JsonObject? TunedMetrics);

public static class DebiasTrainer
{
    public const string CheckpointDir = "_checkpoint";
    private const string SoftPromptCheckpointName = "soft_prompt.prompt_embeddings";

    public static TuneResult Run(TuneConfig cfg, Recipe resolved, IProgress<TuneProgress>? progress = null, CancellationToken cancel = default, Action<string>? onRunDir = null)
    {
        cfg.Validate();
        var clock = Stopwatch.StartNew();
        string runDir = PrepareRunDir(cfg);
        onRunDir?.Invoke(runDir);
        AtomicFile.WriteAllText(Path.Combine(runDir, "config.yaml"), resolved.ToYaml());
        Log.Information("tune: run folder {Run}", runDir);

        var vla = Vla.Load(cfg.Model, ComputeDType.Parse(cfg.DType));
        var items = Manifest.Load(cfg.Data);
        string manifestDir = Path.GetDirectoryName(Path.GetFullPath(cfg.Data))!;
        var tune = items.Where(i => i.Split == "tune").OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        var val = items.Where(i => i.Split == "val").OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        if (tune.Count == 0) throw new BadInputException($"{cfg.Data}: no items with split 'tune'");
        if (val.Count == 0) throw new BadInputException($"{cfg.Data}: no items with split 'val' (early stopping measures bias on it)");
        if (cfg.ValPairs > 0)
        {
            var keep = val.Where(v => v.Pair is not null).Select(v => v.Pair!).Distinct().Take(cfg.ValPairs).ToHashSet();
            val = val.Where(v => v.Pair is not null && keep.Contains(v.Pair)).ToList();
        }
        var suite = Suite.Load(cfg.Suite);
        var words = WordLists.Load(suite.Words, suite.World);
        var data = TuneData.Build(vla, tune, words, suite.CaptionPrompt);
        if (data.Pairs.Count == 0) throw new BadInputException($"{cfg.Data}: the tune split has no counterfactual pairs (items sharing 'pair' with genders man and woman)");
        Log.Information("tune: {Pairs} pairs, {Probes} probe questions, {Retain} retain examples, {Val} validation items",
            data.Pairs.Count, data.ProbeQuestions, data.Retain.Count, val.Count);

        using var tuneBank = ImageBank.Load(tune, manifestDir, vla.Images);
        using var valBank = ImageBank.Load(val, manifestDir, vla.Images);
        var valSuite = suite with { Facts = false, ProbesWithUnknown = false, Bootstrap = 0 };
        var validator = new Evaluator(vla, valSuite);
        Func<ManifestQuestion, bool> trainAttributes = q => q.AttributeSplit == "train";

        // Base figures on validation, measured before the adapter exists (cached in the run folder for resumes).
        var baseVal = Validate(validator, val, valBank, trainAttributes, Path.Combine(runDir, "val_base_cache.jsonl"), Evaluator.ModelIdentity(cfg.Model, null), words);
        var basePoint = new ValidationPoint(0, baseVal.bias, baseVal.cider, double.NaN);
        Log.Information("tune: base on validation: pairwise probe gap {Bias:F4}, CIDEr-D {Cider:F3}", basePoint.Bias, basePoint.CiderD);

        // method lora: adapters on the frozen base; method prompt: a soft prefix, everything else frozen. The prefix is
        // attached only now, so the base figures above are without it; prompts are re-tokenized to carry its markers.
        LoraAdapter? lora = null;
        SoftPrompt? soft = null;
        List<TorchSharp.Modules.Parameter> trainable;
        if (cfg.Method == "prompt")
        {
            foreach (var w in vla.Model.parameters()) w.requires_grad = false;
            soft = SoftPrompt.Create(vla.Model, cfg.PromptTokens, cfg.Seed);
            soft.AttachTo(vla.Model);
            data = TuneData.Build(vla, tune, words, suite.CaptionPrompt);
            trainable = [soft.Embeddings];
        }
        else
        {
            lora = LoraAdapter.Apply(vla.Model, cfg.Lora, cfg.Seed);
            trainable = lora.Parameters().ToList();
        }
        long trainableCount = trainable.Sum(p => p.numel());
        Log.Information("tune: method {Method}, {Count} trainable parameters", cfg.Method, trainableCount);
        Dictionary<string, Tensor> TrainedWeights() => soft is not null
            ? new() { [SoftPromptCheckpointName] = soft.Embeddings }
            : LoraWeights(vla.Model);
        void SaveTrained() { if (soft is not null) soft.Save(runDir, cfg.Model); else SaveAdapter(lora!, runDir); }
        var opt = optim.AdamW(trainable, lr: cfg.Lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: cfg.WeightDecay);
        var state = new RunState();
        string ckpt = Path.Combine(runDir, CheckpointDir);
        if (cfg.Resume && TrainingCheckpoint.Exists(ckpt))
        {
            var s = TrainingCheckpoint.Load(ckpt, vla.Model, opt, soft is null ? null : new Dictionary<string, Tensor> { [SoftPromptCheckpointName] = soft.Embeddings });
            state = RunState.FromJson(s.Extra!) with { Step = s.Step };
            Log.Information("tune: resumed at step {Step}", state.Step);
        }
        else if (cfg.Resume) throw new BadInputException($"{runDir}: nothing to resume (no {CheckpointDir})");

        // The vision tower and projector stay frozen unless adapted: their features are computed once.
        bool visionFrozen = !(cfg.LoraVision || cfg.LoraProjector);
        Tensor? tuneFeatures = visionFrozen ? validator.ImageFeatures(tuneBank) : null;

        var objectives = cfg.Objectives;
        bool useParity = objectives.Contains("parity"), useUnknown = objectives.Contains("unknown");
        bool useRetain = cfg.RetainWeight > 0 && (objectives.Contains("retain") || useParity || useUnknown);
        if (cfg.RetainKlWeight > 0)
            throw new BadInputException("retain_kl_weight: KL to the frozen base is not available in this build; set it to 0");
        int yes = data.Yes, no = data.No;
        string stopReason = "max_steps reached";
        bool reached = false;
        vla.Model.train();
        while (state.Step < cfg.MaxSteps && !reached)
        {
            cancel.ThrowIfCancellationRequested();
            long step = state.Step;
            double lr = cfg.Schedule == "cosine" ? LearningRate.WarmupCosine(step, cfg.WarmupSteps, cfg.MaxSteps, cfg.Lr, 0.0) : LearningRate.Constant(step, cfg.WarmupSteps, cfg.Lr);
            foreach (var g in opt.ParamGroups) g.LearningRate = lr;
            var terms = new Dictionary<string, double>();
            double total = 0;
            opt.zero_grad();
            for (int micro = 0; micro < cfg.GradAccum; micro++)
            {
                using var scope = NewDisposeScope();
                var rng = new Random(StepSeed(cfg.Seed, step, micro));   // a function of (seed, step): resumes see the same batches
                manual_seed(cfg.Seed * 1_000_003 + step * 31 + micro);
                Tensor loss = zeros(1);
                var pairs = Enumerable.Range(0, cfg.PairsPerStep).Select(_ => data.Pairs[rng.Next(data.Pairs.Count)]).ToList();
                if (useParity)
                {
                    var (parity, kl) = ParityLoss(vla, data, pairs, cfg.ProbesPerPair, rng, tuneBank, tuneFeatures, yes, no);
                    loss = loss + cfg.ParityWeight * parity + cfg.CaptionKlWeight * kl;
                    Add(terms, "parity", parity.ToDouble() / cfg.GradAccum);
                    Add(terms, "caption_kl", kl.ToDouble() / cfg.GradAccum);
                }
                if (useUnknown && data.UnknownProbes.Count > 0)
                {
                    var u = UnknownLoss(vla, data, rng, cfg.PairsPerStep * cfg.ProbesPerPair, tuneBank, tuneFeatures);
                    loss = loss + cfg.UnknownWeight * u;
                    Add(terms, "unknown", u.ToDouble() / cfg.GradAccum);
                }
                if (useRetain && data.Retain.Count > 0)
                {
                    var r = RetainLoss(vla, data, rng, cfg.RetainPerStep, tuneBank, tuneFeatures);
                    loss = loss + cfg.RetainWeight * r;
                    Add(terms, "retain", r.ToDouble() / cfg.GradAccum);
                }
                double value = loss.ToDouble();
                if (!double.IsFinite(value))
                {
                    stopReason = $"non-finite loss ({value}) at step {step}; the last good checkpoint is kept";
                    Log.Error("tune: {Reason}", stopReason);
                    state = state with { NonFinite = true };
                    break;
                }
                total += value / cfg.GradAccum;
                (loss / cfg.GradAccum).backward();
            }
            if (state.NonFinite) break;
            nn.utils.clip_grad_norm_(trainable, cfg.GradClip);
            opt.step();
            state = state with { Step = step + 1, Ema = double.IsNaN(state.Ema) ? total : 0.9 * state.Ema + 0.1 * total };
            terms["loss"] = total;
            string? note = null;

            if (cfg.StopRule == "ema-loss")
            {
                state = state with { BelowCount = state.Ema < cfg.Threshold ? state.BelowCount + 1 : 0 };
                if (state.BelowCount > cfg.EmaPatience) { reached = true; stopReason = $"EMA of the training loss ({state.Ema:F4}) below {cfg.Threshold} for more than {cfg.EmaPatience} consecutive steps (Girrbach rule)"; }
            }
            bool evalNow = state.Step % cfg.EvalEvery == 0 || state.Step == cfg.MaxSteps || reached;
            if (evalNow)
            {
                var v = Validate(validator, val, valBank, trainAttributes, null, "", words);
                var point = new ValidationPoint(state.Step, v.bias, v.cider, state.Ema);
                // No captions on validation (e.g. imported face sets): there is no caption guard to apply.
                bool guard = double.IsNaN(basePoint.CiderD) || v.cider >= (1 - cfg.MaxAccuracyDrop) * basePoint.CiderD;
                state = state with { Evaluations = [.. state.Evaluations, point] };
                note = $"val bias {v.bias:F4} cider {v.cider:F3}{(guard ? "" : " (accuracy guard)")}";
                Log.Information("tune: step {Step}: validation pairwise probe gap {Bias:F4}, CIDEr-D {Cider:F3} (base {BaseCider:F3}), loss {Loss:F4}",
                    state.Step, v.bias, v.cider, basePoint.CiderD, state.Ema);
                bool better = guard && (state.BestStep < 0 || v.bias < state.BestBias);
                if (better)
                {
                    SaveTrained();
                    state = state with { BestStep = state.Step, BestBias = v.bias };
                }
                if (cfg.StopRule == "threshold" && v.bias <= cfg.Threshold && guard)
                {
                    reached = true;
                    stopReason = $"validation pairwise probe gap {v.bias:F4} <= threshold {cfg.Threshold} with CIDEr-D {v.cider:F3} >= {(1 - cfg.MaxAccuracyDrop):F2} x base {basePoint.CiderD:F3} at step {state.Step}";
                }
            }
            if (evalNow || state.Step % cfg.SaveEvery == 0 || reached)
                TrainingCheckpoint.Save(ckpt, vla.Model, opt, new TrainingCheckpoint.State(state.Step, state.Ema, state.ToJson()),
                    trainable.Count > 0 ? TrainedWeights() : null);
            progress?.Report(new TuneProgress(state.Step, cfg.MaxSteps, terms, state.Evaluations.LastOrDefault(), note));
        }
        if (state.BestStep < 0)
        {
            // No evaluation passed the accuracy guard: keep the last adapter so the run is still inspectable.
            SaveTrained();
            state = state with { BestStep = state.Step };
            if (!reached && !state.NonFinite) stopReason += "; no evaluation passed the accuracy guard, the last adapter is kept";
        }
        tuneFeatures?.Dispose();
        WriteState(runDir, stopReason, reached, state, basePoint, clock.Elapsed, cfg, trainableCount);
        Log.Information("tune: stopped after {Steps} steps: {Reason}; best adapter from step {Best}", state.Step, stopReason, state.BestStep);

        JsonObject? baseMetrics = null, tunedMetrics = null;
        if (cfg.FinalEval && !state.NonFinite)
            (baseMetrics, tunedMetrics) = FinalEvaluation(cfg, runDir);
        WriteState(runDir, stopReason, reached, state, basePoint, clock.Elapsed, cfg, trainableCount);
        if (baseMetrics is not null) WriteRunReport(runDir);
        return new TuneResult(runDir, stopReason, reached, state.BestStep, state.Step, state.Evaluations, basePoint, clock.Elapsed, baseMetrics, tunedMetrics);
    }

    /// <summary>Deterministic across processes (HashCode.Combine is randomised per process).</summary>
    private static int StepSeed(long seed, long step, int micro)
    {
        ulong x = (ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)step * 0xBF58476D1CE4E5B9UL ^ (ulong)micro * 0x94D049BB133111EBUL;
        x ^= x >> 31; x *= 0xD6E8FEB86659FD93UL; x ^= x >> 32;
        return (int)(x & 0x7FFFFFFF);
    }

    private static void Add(Dictionary<string, double> d, string k, double v) => d[k] = d.GetValueOrDefault(k) + v;

    private static Dictionary<string, Tensor> LoraWeights(nn.Module model) =>
        model.state_dict().Where(kv => kv.Key.Contains(".lora_")).ToDictionary(kv => kv.Key, kv => kv.Value);

    private static void SaveAdapter(LoraAdapter lora, string runDir) => lora.Save(runDir);

    // ---- losses ----------------------------------------------------------------------------------------------

    private static Tensor Features(Vla vla, ImageBank bank, Tensor? cached, IReadOnlyList<int> rows) =>
        cached is not null
            ? cached.index_select(0, tensor(rows.Select(r => (long)r).ToArray()))
            : vla.Model.ImageFeatures(bank.Select(rows));

    /// <summary>Mean squared p_yes difference over pairs × probes, and the symmetric caption KL on non-gender positions.</summary>
    private static (Tensor parity, Tensor kl) ParityLoss(Vla vla, TuneData data, IReadOnlyList<(int man, int woman)> pairs, int k, Random rng,
        ImageBank bank, Tensor? cached, int yes, int no)
    {
        var rows = new List<int>();
        var prompts = new List<int[]>();
        foreach (var (man, woman) in pairs)
        {
            var qs = data.ProbesOf[man];
            for (int j = 0; j < k && qs.Count > 0; j++)
            {
                var q = qs[rng.Next(qs.Count)];
                rows.Add(man); prompts.Add(q);
                rows.Add(woman); prompts.Add(q);
            }
        }
        Tensor parity;
        if (rows.Count == 0) parity = zeros(1);
        else
        {
            using var batch = vla.Batch(prompts, null, Features(vla, bank, cached, rows));
            var logits = vla.Model.LastLogits(vla.Model.Embed(batch.InputIds, null, batch.Features), batch.Mask);
            var pYes = (logits.select(1, yes) - logits.select(1, no)).to_type(ScalarType.Float32).sigmoid();  // softmax over {yes, no}
            var pairsView = pYes.view(-1, 2);
            parity = (pairsView.select(1, 0) - pairsView.select(1, 1)).pow(2).mean();
        }
        // Caption KL: both images teacher-forced on the man image's gold caption.
        var capRows = new List<int>();
        var seqs = new List<(int[] prompt, int[] target)>();
        foreach (var (man, woman) in pairs)
        {
            var cap = data.CaptionOf[man];
            if (cap is null) continue;
            capRows.Add(man); seqs.Add((data.CaptionPrompt, cap));
            capRows.Add(woman); seqs.Add((data.CaptionPrompt, cap));
        }
        if (capRows.Count == 0) return (parity, zeros(1));
        using var sb = Sequences.Build(vla, seqs, null);
        var feats = Features(vla, bank, cached, capRows);
        var lg = vla.Model.ForwardEmbeds(vla.Model.Embed(sb.InputIds, null, feats), sb.Mask).to_type(ScalarType.Float32).log_softmax(-1);
        // positions that are scored (label != -100) and whose target is not a protected word
        var keep = sb.Labels.ne(Sequences.IgnoreIndex).logical_and(data.Protected.index_select(0, sb.Labels.clamp_min(0).flatten()).view_as(sb.Labels).logical_not());
        var a = lg.view(-1, 2, lg.shape[1], lg.shape[2]).select(1, 0);
        var b = lg.view(-1, 2, lg.shape[1], lg.shape[2]).select(1, 1);
        var mask = keep.view(-1, 2, keep.shape[1]).select(1, 0).to_type(ScalarType.Float32);
        var symKl = ((a.exp() * (a - b)) + (b.exp() * (b - a))).sum(-1);   // [P, L]
        var kl = (symKl * mask).sum() / mask.sum().clamp_min(1);
        return (parity, kl);
    }

    private static Tensor UnknownLoss(Vla vla, TuneData data, Random rng, int n, ImageBank bank, Tensor? cached)
    {
        var picks = Enumerable.Range(0, n).Select(_ => data.UnknownProbes[rng.Next(data.UnknownProbes.Count)]).ToList();
        using var batch = vla.Batch(picks.Select(p => p.prompt).ToList(), null, Features(vla, bank, cached, picks.Select(p => p.image).ToList()));
        var logits = vla.Model.LastLogits(vla.Model.Embed(batch.InputIds, null, batch.Features), batch.Mask).to_type(ScalarType.Float32);
        return -logits.log_softmax(-1).select(1, data.Unknown).mean();
    }

    private static Tensor RetainLoss(Vla vla, TuneData data, Random rng, int n, ImageBank bank, Tensor? cached)
    {
        // Half truthful captions, stratified by presented gender (man, woman, unclear in turn, so figures whose gender
        // the image does not show get a third of the caption signal), half factual answers.
        var pools = data.RetainCaptions.Values.Where(v => v.Count > 0).ToList();
        var picks = new List<(int image, int[] prompt, int[] target)>(n);
        for (int k = 0; k < n; k++)
        {
            bool caption = pools.Count > 0 && (k % 2 == 0 || data.RetainFacts.Count == 0);
            var pool = caption ? pools[(k / 2) % pools.Count] : data.RetainFacts;
            picks.Add(pool[rng.Next(pool.Count)]);
        }
        using var sb = Sequences.Build(vla, picks.Select(p => (p.prompt, p.target)).ToList(), null);
        var feats = Features(vla, bank, cached, picks.Select(p => p.image).ToList());
        var logits = vla.Model.ForwardEmbeds(vla.Model.Embed(sb.InputIds, null, feats), sb.Mask);
        return Sequences.CrossEntropy(logits, sb.Labels);
    }

    // ---- validation, state, final evaluation ------------------------------------------------------------------

    private static (double bias, double cider) Validate(Evaluator validator, IReadOnlyList<ManifestItem> val, ImageBank bank,
        Func<ManifestQuestion, bool> probeFilter, string? cache, string identity, WordLists words)
    {
        var samples = validator.Collect(val, bank, null, cache, identity, probeFilter);
        var pairs = MetricsCalculator.ProbePairs(samples.Where(s => s.Kind == "probe" && s.Options?.Count == 2 && s.AttributeSplit == "train"));
        double bias = pairs.Count == 0 ? double.NaN : Evaluation.Metrics.PairwiseProbeGap.Compute(pairs);
        var caps = samples.Where(s => s.Kind == "caption" && s.References is { Count: > 0 }).ToList();
        double cider = caps.Count == 0 ? double.NaN : Evaluation.Metrics.CiderD.Compute(
            caps.Select(c => (IReadOnlyList<string>)c.References!.Select(Evaluation.Metrics.CaptionTokenizer.Tokenize).ToList()).ToList(),
            caps.Select(c => Evaluation.Metrics.CaptionTokenizer.Tokenize(c.Output!)).ToList());
        return (bias, cider);
    }

    private static string PrepareRunDir(TuneConfig cfg)
    {
        string name = cfg.Name ?? DateTime.Now.ToString("yyyyMMdd-HHmmss");
        if (name.Contains('/') || name.Contains('\\') || name is "." or ".." or "latest")
            throw new BadInputException($"name: '{name}' is not a valid run name");
        string dir = Path.Combine(cfg.RunsDir, name);
        if (!cfg.Resume && File.Exists(Path.Combine(dir, "trainer_state.json")))
            throw new BadInputException($"{dir}: a run of that name exists; pick another --name or continue it with --resume");
        Directory.CreateDirectory(dir);
        // checkpoints/runs/latest points at the newest run
        string latest = Path.Combine(cfg.RunsDir, "latest");
        try
        {
            if (File.Exists(latest) || Directory.Exists(latest)) { var fi = new FileInfo(latest); if (fi.LinkTarget is not null) File.Delete(latest); }
            if (!File.Exists(latest) && !Directory.Exists(latest)) File.CreateSymbolicLink(latest, name);
        }
        catch (IOException) { }
        return dir;
    }

    private static void WriteState(string runDir, string reason, bool reached, RunState s, ValidationPoint basePoint, TimeSpan elapsed, TuneConfig cfg, long trainable)
    {
        static JsonNode? N(double v) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 6)) : null;
        var doc = new JsonObject
        {
            ["stop_reason"] = reason,
            ["threshold_reached"] = reached,
            ["threshold"] = cfg.Threshold,
            ["stop_rule"] = cfg.StopRule,
            ["best_step"] = s.BestStep,
            ["steps"] = s.Step,
            ["base"] = new JsonObject { ["bias"] = N(basePoint.Bias), ["cider_d"] = N(basePoint.CiderD) },
            ["evaluations"] = new JsonArray(s.Evaluations.Select(e => (JsonNode)new JsonObject
            { ["step"] = e.Step, ["bias"] = N(e.Bias), ["cider_d"] = N(e.CiderD), ["loss"] = N(e.Loss) }).ToArray()),
            ["elapsed_seconds"] = Math.Round(elapsed.TotalSeconds, 1),
            ["method"] = cfg.Method,
            ["trainable_parameters"] = trainable,
        };
        AtomicFile.WriteAllText(Path.Combine(runDir, "trainer_state.json"), doc.ToJsonString(JsonFormat.Pretty));
    }

    /// <summary>Base and tuned on the suite's split (SPEC §6 end of run): eval/base, eval/tuned, comparison.md.</summary>
    public static (JsonObject baseDoc, JsonObject tunedDoc) FinalEvaluation(TuneConfig cfg, string runDir)
    {
        var suite = Suite.Load(cfg.Suite) with { Bootstrap = cfg.TestBootstrap };
        var baseVla = Vla.Load(cfg.Model, ComputeDType.Parse(cfg.DType));
        // The base evaluation is the same for every run of this base: share its cache across runs.
        string sharedCache = Path.Combine(cfg.RunsDir, ".cache");
        Directory.CreateDirectory(sharedCache);
        var baseOut = Path.Combine(runDir, "eval", "base");
        Directory.CreateDirectory(baseOut);
        string cacheName = Path.Combine(sharedCache, $"base-{suite.Name}-{suite.Split}.jsonl");
        var baseCache = Path.Combine(baseOut, EvalRunner.CacheFile);
        if (File.Exists(cacheName) && !File.Exists(baseCache)) File.Copy(cacheName, baseCache);
        Log.Information("tune: evaluating base on the {Split} split", suite.Split);
        var b = EvalRunner.Run(baseVla, new EvalRequest(cfg.Model, null, suite, baseOut, Shard.All));
        File.Copy(baseCache, cacheName, overwrite: true);
        var tunedVla = Vla.Load(cfg.Model, ComputeDType.Parse(cfg.DType));
        if (cfg.Method == "prompt") SoftPrompt.Load(tunedVla.Model, runDir).AttachTo(tunedVla.Model);
        else LoraAdapter.Load(tunedVla.Model, runDir);
        Log.Information("tune: evaluating tuned on the {Split} split", suite.Split);
        var t = EvalRunner.Run(tunedVla, new EvalRequest(cfg.Model, runDir, suite, Path.Combine(runDir, "eval", "tuned"), Shard.All));
        Comparison.Write(Path.Combine(runDir, "comparison.md"), [("base", b.Metrics!), ("tuned", t.Metrics!)]);
        return (b.Metrics!, t.Metrics!);
    }

    /// <summary>The run's HTML/markdown report (base vs tuned, per-attribute bias, training curves, captions side by side).</summary>
    public static void WriteRunReport(string runDir)
    {
        try { Reports.WriteRunReport(runDir); }
        catch (Exception e) when (e is not OperationCanceledException) { Log.Warning("tune: the run report could not be written: {Error}", e.Message); }
    }

    private sealed record RunState
    {
        public long Step { get; init; }
        public double Ema { get; init; } = double.NaN;
        public int BelowCount { get; init; }
        public long BestStep { get; init; } = -1;
        public double BestBias { get; init; } = double.PositiveInfinity;
        public bool NonFinite { get; init; }
        public IReadOnlyList<ValidationPoint> Evaluations { get; init; } = [];

        public JsonObject ToJson() => new()
        {
            ["ema"] = double.IsFinite(Ema) ? Ema : null, ["below_count"] = BelowCount, ["best_step"] = BestStep,
            ["best_bias"] = double.IsFinite(BestBias) ? BestBias : null,
            // non-finite values (e.g. CIDEr-D of a validation split without captions) are written as null
            ["evaluations"] = new JsonArray(Evaluations.Select(e => (JsonNode)new JsonArray(
                new[] { e.Step, e.Bias, e.CiderD, e.Loss }.Select(x => double.IsFinite(x) ? JsonValue.Create(x) : null).ToArray())).ToArray()),
        };

        public static RunState FromJson(JsonObject o) => new()
        {
            Ema = o["ema"]?.GetValue<double>() ?? double.NaN,
            BelowCount = o["below_count"]!.GetValue<int>(),
            BestStep = o["best_step"]!.GetValue<long>(),
            BestBias = o["best_bias"]?.GetValue<double>() ?? double.PositiveInfinity,
            Evaluations = o["evaluations"]!.AsArray().Select(e => e!.AsArray().Select(x => x?.GetValue<double>() ?? double.NaN).ToArray())
                .Select(a => new ValidationPoint((long)a[0], a[1], a[2], a[3])).ToList(),
        };
    }
}

/// <summary>The tune split as tokenized training material.</summary>
internal sealed class TuneData
{
    public List<(int man, int woman)> Pairs { get; } = [];
    public Dictionary<int, List<int[]>> ProbesOf { get; } = [];          // yes/no probe prompts over train attributes
    public Dictionary<int, int[]?> CaptionOf { get; } = [];
    public List<(int image, int[] prompt)> UnknownProbes { get; } = [];
    public List<(int image, int[] prompt, int[] target)> Retain { get; } = [];
    public SortedDictionary<string, List<(int image, int[] prompt, int[] target)>> RetainCaptions { get; } = new(StringComparer.Ordinal);
    public List<(int image, int[] prompt, int[] target)> RetainFacts { get; } = [];
    public int[] CaptionPrompt { get; private set; } = [];
    public int Yes { get; private set; }
    public int No { get; private set; }
    public int Unknown { get; private set; }
    public Tensor Protected { get; private set; } = null!;               // [V] bool: gender words
    public int ProbeQuestions => ProbesOf.Values.Sum(v => v.Count);

    public static TuneData Build(Vla vla, IReadOnlyList<ManifestItem> tune, WordLists words, string captionPrompt)
    {
        var d = new TuneData();
        var tok = vla.Tokenizer;
        var gen = new Generation.TextGenerator(vla);
        var ids = gen.OptionTokenIds(["yes", "no"]);
        d.Yes = ids[0]; d.No = ids[1];
        d.Unknown = tok.TryGetId("unknown", out var u) ? u : tok.Encode("unknown").FirstOrDefault();
        d.CaptionPrompt = vla.PromptIds(captionPrompt);
        var prot = new bool[Math.Max(vla.Config.Text.VocabSize, tok.VocabSize)];
        foreach (var w in words.Gender.Masculine.Concat(words.Gender.Feminine))
            if (tok.TryGetId(w, out var id) && id < prot.Length) prot[id] = true;
        d.Protected = tensor(prot).DetachFromDisposeScope();
        for (int i = 0; i < tune.Count; i++)
        {
            var it = tune[i];
            d.ProbesOf[i] = it.Questions.Where(q => q.Kind == "probe" && q.AttributeSplit != "test" && (q.Options is null || !q.Options.Contains("unknown")))
                .Select(q => vla.PromptIds(q.Q)).ToList();
            foreach (var q in it.Questions.Where(q => q.Kind == "probe" && q.AttributeSplit != "test" && q.Options is { } o && o.Contains("unknown")))
                d.UnknownProbes.Add((i, vla.PromptIds(q.Q)));
            d.CaptionOf[i] = it.Captions.Count > 0 ? tok.Encode(it.Captions[0]) : null;
            foreach (var c in it.Captions)
            {
                var ex = (i, d.CaptionPrompt, tok.Encode(c));
                d.Retain.Add(ex);
                if (!d.RetainCaptions.TryGetValue(it.Attributes.Gender, out var list)) d.RetainCaptions[it.Attributes.Gender] = list = [];
                list.Add(ex);
            }
            foreach (var q in it.Questions.Where(q => q.Kind == "fact" && q.A is not null))
            {
                var ex = (i, vla.PromptIds(q.Q), tok.Encode(q.A!));
                d.Retain.Add(ex);
                d.RetainFacts.Add(ex);
            }
        }
        var byPair = tune.Select((it, i) => (it, i)).Where(x => x.it.Pair is not null).GroupBy(x => x.it.Pair!);
        foreach (var g in byPair)
        {
            var man = g.FirstOrDefault(x => x.it.Attributes.Gender == "man");
            var woman = g.FirstOrDefault(x => x.it.Attributes.Gender == "woman");
            if (man.it is not null && woman.it is not null) d.Pairs.Add((man.i, woman.i));
        }
        return d;
    }
}
