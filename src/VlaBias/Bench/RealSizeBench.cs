// `vlatune bench --config llava-interleave-0.5b | llava-1.5-7b`: figures on random weights of a real checkpoint's
// shapes (RealSizeConfig.cs), loaded through Vla.Load like a real checkpoint. Each part runs in its own child process
// (`bench --worker <part>`) so its peak RSS (VmHWM) is its own, and the parent never holds a model:
//   write     the checkpoint folder, when missing or when its config differs (bf16 safetensors)
//   probe     probing through ProbeBench: every yes/no question a full prompt (image tokens included, batches of
//             ProbeBatch) and the same prompts with the shared image prefix in the evaluator's batches, bf16
//   probe-f32 the same in f32 (where f32 weights fit), so the shared path's difference to the naive one is f32 rounding
//   caption   Captioner at batch 1 and 8, a forced number of new tokens, bf16
//   lora-bf16 one LoRA step of the trainer's parity term (Objectives, MicroBatch, TuneData) on 1 pair × 4 probes, the
//   lora-f32  LoRA config of recipes/default.yaml, clip + AdamW as DebiasTrainer; decoder layers checkpointed when
//             the config says so
using System.Diagnostics;
using System.Text.Json.Nodes;
using Serilog;
using TorchSharp;
using VlaBias.Adapters;
using VlaBias.Evaluation;
using VlaBias.Generation;
using VlaBias.Model;
using VlaBias.Recipes;
using VlaBias.Training;
using static TorchSharp.torch;

namespace VlaBias.Bench;

public static class RealSizeBench
{
    public const string WritePart = "write", ProbePart = "probe", ProbeF32Part = "probe-f32", CaptionPart = "caption", LoraBf16Part = "lora-bf16", LoraF32Part = "lora-f32";
    public static readonly string[] Parts = [WritePart, ProbePart, ProbeF32Part, CaptionPart, LoraBf16Part, LoraF32Part];

    /// <summary>Rows per forward in the naive probing figure (the probing suite's batch size is 16; 8 keeps 7B activations small).</summary>
    public const int ProbeBatch = 8;

    /// <summary>Rows per call of the shared-prefix figure: the suite's default batch size (the questions are short).</summary>
    public const int SharedBatch = 64;

    /// <summary>The report of one real-size config; <paramref name="worker"/> runs one part in a child process and returns its JSON.</summary>
    public static JsonObject Measure(RealSizeConfig rc, int reps, int warm, int threads, long seed, Func<string, JsonObject> worker)
    {
        string load0 = BenchReport.LoadAverage();
        var notes = new JsonArray();
        var sw = Stopwatch.StartNew();
        // Every part runs in bf16; without a native bf16 matmul they would take hours, so a 512³ product in each dtype,
        // measured here, says so before they start.
        double f32Gflops = MatmulRoof.Measure(512, ScalarType.Float32, 1, 3).Median, bf16Gflops = MatmulRoof.Measure(512, ScalarType.BFloat16, 0, 3).Median;
        if (MatmulRoof.Bf16Emulated(bf16Gflops, f32Gflops))
        {
            string slow = $"bf16 matmul ran at {bf16Gflops:F1} GFLOP/s against fp32's {f32Gflops:F1} (512³): this CPU has no native bf16 matmul, " +
                          $"so the bf16 parts of {rc.Name} run their matmuls about {f32Gflops / bf16Gflops:F0}× slower than fp32 would here (a CPU with avx512_bf16 or AMX runs bf16 faster than fp32)";
            notes.Add(slow);
            Log.Warning("bench: {Note}", slow);
        }
        // each part's figures are logged as they arrive, so a long run that dies later still leaves them
        worker = Logged(worker);
        var write = worker(WritePart);
        Log.Information("bench: {Name} checkpoint {What} ({Seconds:F0} s)", rc.Name, write["written"]!.GetValue<bool>() ? "written" : "reused", write["seconds"]!.GetValue<double>());
        var probe = worker(ProbePart);
        Log.Information("bench: probing {Rate:F3} prompts/s naive, {Shared:F3} with the shared image prefix", probe["prompts_per_s"]!.GetValue<double>(), probe["prompts_per_s_shared"]!.GetValue<double>());
        JsonObject? probeF32 = null;
        if (rc.LoraF32)
        {
            probeF32 = worker(ProbeF32Part);
            Log.Information("bench: probing in f32 {Rate:F3} prompts/s naive, {Shared:F3} shared, max |Δp_yes| {Diff:E1}",
                probeF32["prompts_per_s"]!.GetValue<double>(), probeF32["prompts_per_s_shared"]!.GetValue<double>(), probeF32["max_p_yes_diff"]!.GetValue<double>());
        }
        else notes.Add($"probing in f32 not measured: f32 weights of {rc.Name} ({rc.ParameterCount() * 4 / 1e9:F1} GB) do not fit beside the run in 24 GB");
        var caption = worker(CaptionPart);
        Log.Information("bench: captioning {B1:F3} images/s (b1), {B8:F3} (b8)", caption["images_per_s_b1"]!.GetValue<double>(), caption["images_per_s_b8"]!.GetValue<double>());
        var loraBf16 = worker(LoraBf16Part);
        Log.Information("bench: LoRA step bf16 {Ms:F0} ms", loraBf16["step_ms"]!["median"]!.GetValue<double>());
        JsonObject? loraF32 = null;
        if (rc.LoraF32)
        {
            loraF32 = worker(LoraF32Part);
            Log.Information("bench: LoRA step f32 {Ms:F0} ms", loraF32["step_ms"]!["median"]!.GetValue<double>());
        }
        else notes.Add($"lora_step_ms_f32_realsize not measured: f32 weights of {rc.Name} ({rc.ParameterCount() * 4 / 1e9:F1} GB) and its step do not fit in 24 GB");
        notes.Add($"probing (naive and shared): {rc.ProbeImages} image(s) × {rc.ProbeQuestions} questions, each a full prompt of {probe["prompt_tokens"]} positions ({rc.Llava.ImageSeqLength} image tokens), naive batches of {ProbeBatch}, shared in the evaluator's batches of {SharedBatch} cut at image boundaries ({probe["shared_batches"]} batches), bf16");
        notes.Add($"captioning: {rc.CaptionTokens} forced new tokens per image, bf16, random pixels");
        notes.Add($"LoRA step: the parity term only (the caption_kl and retain terms need captions), {rc.PairsPerStep} pair × {rc.ProbesPerPair} probes = {2 * rc.PairsPerStep * rc.ProbesPerPair} prompts; image features precomputed without gradients as the trainer does with a frozen vision side");
        var parts = new JsonObject?[] { write, probe, probeF32, caption, loraBf16, loraF32 }.OfType<JsonObject>();
        double? peak = parts.Select(p => p["peak_rss_mb"]?.GetValue<double>()).Max();
        return new JsonObject
        {
            ["config"] = rc.Name,
            ["probe_prompts_per_s_naive"] = probe["prompts_per_s"]!.DeepClone(),
            ["probe_prompts_per_s_shared"] = probe["prompts_per_s_shared"]!.DeepClone(),
            ["probe_prompts_per_s_naive_f32"] = probeF32?["prompts_per_s"]!.DeepClone(),
            ["probe_prompts_per_s_shared_f32"] = probeF32?["prompts_per_s_shared"]!.DeepClone(),
            ["probe_max_p_yes_diff_f32"] = probeF32?["max_p_yes_diff"]!.DeepClone(),
            ["caption_images_per_s_b1"] = caption["images_per_s_b1"]!.DeepClone(),
            ["caption_images_per_s_b8"] = caption["images_per_s_b8"]!.DeepClone(),
            ["lora_step_ms_bf16_realsize"] = loraBf16["step_ms"]!["median"]!.DeepClone(),
            ["lora_step_ms_f32_realsize"] = loraF32?["step_ms"]!["median"]!.DeepClone(),
            ["peak_rss_mb"] = peak,
            ["model"] = rc.ToJson(),
            ["machine"] = new JsonObject
            {
                ["cores"] = Environment.ProcessorCount, ["threads"] = threads, ["load_average_start"] = load0, ["load_average_end"] = BenchReport.LoadAverage(),
                ["seconds"] = Timings.Round(sw.Elapsed.TotalSeconds, 1), ["repeats"] = reps, ["warmup"] = warm, ["seed"] = seed,
                ["matmul_512_gflops_f32"] = Timings.Round(f32Gflops, 2), ["matmul_512_gflops_bf16"] = Timings.Round(bf16Gflops, 2),
            },
            ["write"] = write, ["probe"] = probe, ["probe_f32"] = probeF32, ["caption"] = caption, ["lora_bf16"] = loraBf16, ["lora_f32"] = loraF32,
            ["notes"] = notes,
        };
    }

    private static Func<string, JsonObject> Logged(Func<string, JsonObject> worker) => part =>
    {
        var json = worker(part);
        Log.Information("bench: part {Part}: {Json}", part, json.ToJsonString());
        return json;
    };

    /// <summary>Runs one part in this process and returns its figures with this process's peak RSS.</summary>
    public static JsonObject RunPart(RealSizeConfig rc, string root, string part, int warmup, int repeats, long seed)
    {
        var sw = Stopwatch.StartNew();
        JsonObject result;
        switch (part)
        {
            case WritePart:
                var (dir, written) = rc.Ensure(root, seed);
                result = new JsonObject { ["dir"] = dir, ["written"] = written };
                break;
            case ProbePart: result = Probe(rc, Folder(rc, root), warmup, repeats, seed); break;
            case ProbeF32Part: result = Probe(rc, Folder(rc, root), warmup, repeats, seed, ScalarType.Float32); break;
            case CaptionPart: result = Caption(rc, Folder(rc, root), warmup, repeats, seed); break;
            case LoraBf16Part: result = LoraStep(rc, Folder(rc, root), ScalarType.BFloat16, warmup, repeats, seed); break;
            case LoraF32Part: result = LoraStep(rc, Folder(rc, root), ScalarType.Float32, warmup, repeats, seed); break;
            default: throw new BadInputException($"--worker: unknown part '{part}' (expected {string.Join(", ", Parts)})");
        }
        result["part"] = part;
        result["seconds"] = Timings.Round(sw.Elapsed.TotalSeconds, 1);
        result["threads"] = get_num_threads();
        result["peak_rss_mb"] = TrainStepBench.PeakRssMb();
        return result;
    }

    private static string Folder(RealSizeConfig rc, string root)
    {
        string dir = Path.Combine(root, rc.Name);
        if (!File.Exists(Path.Combine(dir, "config.json"))) throw new BadInputException($"{dir}: no checkpoint (the bench writes it first)");
        return dir;
    }

    private static List<Tensor> Pixels(RealSizeConfig rc, int n, long seed)
    {
        var gen = new Generator((ulong)seed + 7);
        int s = rc.Llava.Vision.ImageSize;
        return Enumerable.Range(0, n).Select(_ => rand([3, s, s], generator: gen).mul(2).sub(1).DetachFromDisposeScope()).ToList();
    }

    private static (Vla vla, double seconds) Load(string dir, ScalarType dtype)
    {
        var sw = Stopwatch.StartNew();
        var vla = Vla.Load(dir, dtype: dtype);
        return (vla, sw.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Probing: ProbeImages × ProbeQuestions prompts scored naive (full prompts, batches of ProbeBatch) and with the
    /// shared image prefix (the evaluator's batches of SharedBatch), through ProbeBench as the bench config does, in
    /// <paramref name="dtype"/> (bf16 by default), with the largest p_yes difference between the two paths.
    /// </summary>
    public static JsonObject Probe(RealSizeConfig rc, string dir, int warmup, int repeats, long seed, ScalarType dtype = ScalarType.BFloat16)
    {
        var (vla, loadS) = Load(dir, dtype);
        var r = ProbeBench.Run(vla, warmup, repeats, rc.ProbeImages, rc.ProbeQuestions, SharedBatch, seed, naiveBatchSize: ProbeBatch);
        var d = r.Details;
        string name = dtype == ScalarType.BFloat16 ? "bf16" : "f32";
        return new JsonObject
        {
            ["load_s"] = Timings.Round(loadS, 1), ["images"] = rc.ProbeImages, ["questions"] = rc.ProbeQuestions, ["prompts"] = rc.ProbeImages * rc.ProbeQuestions,
            ["prompt_tokens"] = d["prompt_tokens_mean"]!.DeepClone(), ["prefix_tokens"] = d["prefix_tokens"]!.DeepClone(),
            ["batch"] = ProbeBatch, ["shared_batch"] = SharedBatch, ["shared_batches"] = d["shared_batches"]!.DeepClone(), ["dtype"] = name,
            ["total_ms"] = d["naive_ms"]!.DeepClone(), ["prompts_per_s"] = Timings.Round(r.NaivePromptsPerS),
            ["shared_total_ms"] = d["shared_ms"]!.DeepClone(), ["prompts_per_s_shared"] = Timings.Round(r.SharedPromptsPerS),
            ["shared_over_naive"] = d["shared_over_naive"]!.DeepClone(), ["max_p_yes_diff"] = r.MaxProbDiff, [$"max_p_yes_diff_{name}"] = r.MaxProbDiff,
            ["p_yes_first"] = d["p_first"]!.DeepClone(),
        };
    }

    /// <summary>Captioning at batch 1 and 8 through the Captioner, CaptionTokens forced new tokens each.</summary>
    public static JsonObject Caption(RealSizeConfig rc, string dir, int warmup, int repeats, long seed)
    {
        var (vla, loadS) = Load(dir, ScalarType.BFloat16);
        var captioner = new Captioner(new TorchEngine(vla), vla.Images);
        var pixels = Pixels(rc, 8, seed);
        var options = new GenerationOptions(rc.CaptionTokens, MinNewTokens: rc.CaptionTokens);
        Timings Time(int n) => Timings.TimeMs(warmup, repeats, () =>
        {
            using var scope = NewDisposeScope();
            var outs = captioner.Caption(pixels.Take(n).ToList(), null, options);
            if (outs.Any(o => o.Tokens.Length != rc.CaptionTokens)) throw new InvalidOperationException($"a caption has {outs.Min(o => o.Tokens.Length)} tokens, expected {rc.CaptionTokens}");
        });
        var b1 = Time(1);
        var b8 = Time(8);
        return new JsonObject
        {
            ["load_s"] = Timings.Round(loadS, 1), ["new_tokens"] = rc.CaptionTokens, ["dtype"] = "bf16",
            ["b1_ms"] = b1.ToJson(), ["b8_ms"] = b8.ToJson(),
            ["images_per_s_b1"] = Timings.Round(1000.0 / b1.Median), ["images_per_s_b8"] = Timings.Round(8000.0 / b8.Median),
        };
    }

    /// <summary>One LoRA step of the trainer's parity term in <paramref name="dtype"/>: forward, backward, clip, AdamW, zero_grad.</summary>
    public static JsonObject LoraStep(RealSizeConfig rc, string dir, ScalarType dtype, int warmup, int repeats, long seed, string recipe = "recipes/default.yaml")
    {
        var (vla, loadS) = Load(dir, dtype);
        var cfg = TuneConfig.From(Recipe.Load(Assets.Resolve(recipe))) with
        {
            Objective = "parity", PairsPerStep = rc.PairsPerStep, ProbesPerPair = rc.ProbesPerPair, GradAccum = 1, Seed = seed,
        };
        var tuner = LoraAdapter.Apply(vla.Model, cfg.Lora, cfg.Seed);
        vla.Attach(tuner);
        vla.Model.LanguageModel.Model.GradientCheckpointing = rc.GradientCheckpointing;
        vla.Model.train();
        var parameters = tuner.Parameters().ToList();
        var opt = optim.AdamW(parameters, lr: cfg.Lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: cfg.WeightDecay);

        // one counterfactual pair (images 0 and 1), each with the same probe prompts
        var prompts = Enumerable.Range(0, Math.Max(rc.ProbesPerPair, 4)).Select(q => vla.PromptIds(RealSizeConfig.Question(q))).ToList();
        var data = TuneData.ForProbes(vla, [(0, 1)], new Dictionary<int, List<int[]>> { [0] = prompts, [1] = prompts });
        var terms = Objectives.For(cfg, data).Where(t => t.Name == "parity").ToList();
        Tensor features;
        using (no_grad()) features = vla.Model.ImageFeatures(stack(Pixels(rc, 2, seed))).DetachFromDisposeScope();

        var forward = new List<double>();
        var backward = new List<double>();
        var optimizer = new List<double>();
        double lastLoss = double.NaN;
        long step = 0;
        void Step()
        {
            using var scope = NewDisposeScope();
            var values = new Dictionary<string, double>();
            var sw = Stopwatch.StartNew();
            using var mb = new MicroBatch(vla, tuner, data, cfg, new Random((int)(seed + step++)), null!, features);
            var loss = Objectives.Loss(terms, mb, values, 1);
            double f = sw.Elapsed.TotalMilliseconds;
            loss.backward();
            double b = sw.Elapsed.TotalMilliseconds;
            nn.utils.clip_grad_norm_(parameters, cfg.GradClip);
            opt.step();
            opt.zero_grad();
            double o = sw.Elapsed.TotalMilliseconds;
            forward.Add(f); backward.Add(b - f); optimizer.Add(o - b);
            lastLoss = loss.ToDouble();
        }
        var t = Timings.TimeMs(warmup, repeats, Step);
        int n = t.Values.Length;
        static Timings Last(List<double> xs, int n) => new(xs.Skip(xs.Count - n).ToArray());
        return new JsonObject
        {
            ["load_s"] = Timings.Round(loadS, 1), ["dtype"] = dtype == ScalarType.BFloat16 ? "bf16" : "f32",
            ["lora_dtype"] = parameters[0].dtype.ToString(),
            ["lora_r"] = cfg.LoraR, ["lora_alpha"] = cfg.LoraAlpha, ["trainable_params"] = tuner.ParameterCount,
            ["prompts"] = 2 * rc.PairsPerStep * rc.ProbesPerPair, ["prompt_tokens"] = prompts[0].Length,
            ["gradient_checkpointing"] = rc.GradientCheckpointing,
            ["step_ms"] = t.ToJson(),
            ["profile_ms"] = new JsonObject
            {
                ["forward_and_loss"] = Last(forward, n).ToJson(), ["backward"] = Last(backward, n).ToJson(), ["clip_adamw_zero_grad"] = Last(optimizer, n).ToJson(),
            },
            ["final_loss"] = Timings.Round(lastLoss, 8),
        };
    }
}
