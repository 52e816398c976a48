// One `vlatune bench` report: the machine's matmul roof (fp32 and bf16), the LoRA and full fine-tuning steps (each timed
// in its own process so it reports its own peak memory), the PyTorch peer step, generation with and without the KV
// cache, captioning at batch 1 and 32 through TorchSharp and ONNX Runtime, and the ratios and MFU figures computed
// from them (TrainingFlops.cs), as one JSON object with the keys the README lists. peer_step_ratio is null, with
// peer_step_ratio_refused saying why, when the peer's BLAS or thread setup would make it meaningless (PeerStep.Refusal).
using System.Text.Json.Nodes;
using Serilog;
using static TorchSharp.torch;

namespace VlaBias.Bench;

public static class BenchReport
{
    private static JsonObject BySize(IReadOnlyDictionary<int, double> medians) =>
        new(medians.Select(kv => KeyValuePair.Create(kv.Key.ToString(), (JsonNode?)Timings.Round(kv.Value, 2))));

    /// <summary>
    /// Every figure of one bench run. <paramref name="worker"/> times one training mode (TrainStepBench.Lora, LoraBf16 or
    /// Full) with the given timed runs and warm-ups in a fresh process and returns its JSON, so each mode reports its own
    /// peak memory.
    /// </summary>
    public static JsonObject Measure(BenchConfig bc, int reps, int warm, int threads, bool quick, bool peer, string python, string? script, long seed,
        Func<string, int, int, JsonObject> worker)
    {
        var notes = new JsonArray();
        string load0 = LoadAverage();
        int[] roofSizes = quick ? [512, 1024] : [512, 1024, 1536, 2048];
        Log.Information("bench: {Config} sizes, {Threads} threads, {Repeats} timed runs after {Warmup} warm-up; load average {Load}", bc.Name, threads, reps, warm, load0);
        var (roofN, roof, roofBySize) = MatmulRoof.Best(roofSizes, ScalarType.Float32, 1, Math.Max(5, reps));
        // Without a native bf16 matmul a 2048³ bf16 product takes over 10 s, so once a size is that slow the larger sizes
        // are skipped and the bf16 LoRA step is timed once; the note says so.
        bool bf16Slow = false;
        var (roofNBf16, roofBf16, roofBf16BySize) = MatmulRoof.Best(roofSizes, ScalarType.BFloat16, 1, Math.Max(5, reps),
            (n, gflops) => bf16Slow = MatmulRoof.Bf16Emulated(gflops, roofBySize[n]));
        Log.Information("bench: roof {Gflops:F1} GFLOP/s fp32 ({N}³, the fastest of {Sizes}³ matmuls), {Bf16:F1} bf16 ({NBf16}³, of {Bf16Sizes}³)",
            roof.Median, roofN, string.Join(", ", roofSizes), roofBf16.Median, roofNBf16, string.Join(", ", roofBf16BySize.Keys));

        var membw = MemoryBandwidth.Measure(quick ? 256L << 20 : 1L << 30, reps);
        Log.Information("bench: streaming read {Gbs:F1} GB/s", membw.Median);
        var lora = worker(TrainStepBench.Lora, reps, warm);
        Log.Information("bench: LoRA step {Ms:F1} ms", lora["step_ms"]!["median"]!.GetValue<double>());
        var loraBf16 = worker(TrainStepBench.LoraBf16, bf16Slow ? 1 : reps, bf16Slow ? 0 : warm);
        if (bf16Slow)
        {
            int n = roofBf16BySize.Keys.Max();
            string note = $"bf16 matmul ran under a quarter of fp32's speed ({roofBf16BySize[n]:F1} against {roofBySize[n]:F1} GFLOP/s at {n}³; " +
                          "this CPU has no native bf16 matmul), so larger bf16 roof sizes were skipped and lora_step_ms_bf16 is one step after no warm-up";
            notes.Add(note);
            Log.Warning("bench: {Note}", note);
        }
        Log.Information("bench: LoRA step on a bf16 base {Ms:F1} ms", loraBf16["step_ms"]!["median"]!.GetValue<double>());
        var full = worker(TrainStepBench.Full, reps, warm);
        Log.Information("bench: full fine-tuning step {Ms:F1} ms", full["step_ms"]!["median"]!.GetValue<double>());
        JsonObject? peerJson = null, peerSetup = null;
        string? peerRefused = null;
        if (peer)
        {
            var run = PeerStep.Run(python, PeerStep.FindScript(script), bc, TrainStepBench.Lora, warm, reps, threads);
            (peerJson, peerSetup, peerRefused) = (run.Result, run.Setup, run.Refused);
            if (peerSetup is not null) Log.Information("bench: {Setup}", PeerStep.Describe(peerSetup));
            if (run.NotMeasured is string note) { notes.Add($"peer not measured: {note}"); Log.Warning("bench: peer not measured: {Note}", note); }
            if (peerRefused is not null) { notes.Add($"peer_step_ratio refused: {peerRefused}"); Log.Warning("bench: no peer_step_ratio: {Reason}", peerRefused); }
            if (peerJson is not null) Log.Information("bench: PyTorch peer LoRA step {Ms:F1} ms", peerJson["step_ms"]!["median"]!.GetValue<double>());
        }
        else notes.Add(quick ? "peer skipped (--quick)" : "peer not requested (--peer)");

        string scratch = Path.Combine(Path.GetTempPath(), $"vlatune-bench-{Guid.NewGuid():N}");
        InferenceBench.Result inference;
        ProbeBench.Result probing;
        try
        {
            inference = InferenceBench.Run(bc, scratch, warm, reps, onnx: !quick, threads, seed);
            probing = ProbeBench.Run(Vla.Load(Path.Combine(scratch, "model")), warm, reps, seed: seed);
        }
        finally { try { Directory.Delete(scratch, true); } catch (IOException) { } }
        Log.Information("bench: generation {Cache:F1} tokens/s cached, {NoCache:F1} recomputed; captioning {B1:F2} images/s (b1), {B32:F2} (b32)",
            inference.TokensPerSCache, inference.TokensPerSNoCache, inference.ImagesPerSB1, inference.ImagesPerSB32);
        Log.Information("bench: probing {Naive:F1} prompts/s naive, {Shared:F1} with the shared image prefix (max |Δp| {Diff:E1})",
            probing.NaivePromptsPerS, probing.SharedPromptsPerS, probing.MaxProbDiff);
        inference.Details["probing"] = probing.Details;

        double loraMs = lora["step_ms"]!["median"]!.GetValue<double>(), fullMs = full["step_ms"]!["median"]!.GetValue<double>();
        double roofFlops = roof.Median * 1e9;
        double? Mfu(JsonObject w, string key) => w[key]!.GetValue<double>() / (w["step_ms"]!["median"]!.GetValue<double>() * 1e-3) / roofFlops;
        double? peerMs = peerJson?["step_ms"]?["median"]?.GetValue<double>();
        double? loraRss = lora["peak_rss_mb"]?.GetValue<double>(), fullRss = full["peak_rss_mb"]?.GetValue<double>();
        var noises = new List<double> { roof.Noise, lora["step_ms"]!["noise"]!.GetValue<double>(), full["step_ms"]!["noise"]!.GetValue<double>() };
        var cfg = bc.Llava(bc.Vocab);
        if (inference.Details["kernel_auto"] is JsonObject auto && auto["small_row_shapes"]!.AsArray().Count == 0)
            notes.Add((auto["available"]!.GetValue<bool>()
                          ? $"the kernel choice (auto) gave no linear shape the small-row kernel in this run ({auto["shapes_asked"]} shapes measured): "
                          : "this CPU has no AVX-512, so the small-row kernel cannot run: ") +
                      "each inference figure and its _plain twin ran the same libtorch code, so their ratio is the machine's noise");
        notes.Add("training steps are language-model only on both sides: random inputs_embeds [B, T, C] stand in for the spliced image features and token embeddings");
        notes.Add("lora_mfu counts the FLOPs a LoRA step needs: base forward and activation gradients (4·N·tokens), attention, and the adapters' forward and backward, but no weight gradients for the frozen base; " +
                  "lora_mfu_6nt counts 6·N·tokens + attention (the PaLM convention for full training), which a LoRA step can exceed the roof on because it skips a third of that work; full_mfu uses 6·N·tokens: see src/VlaBias/Bench/TrainingFlops.cs");
        return new JsonObject
        {
            ["roof_gflops"] = Timings.Round(roof.Median, 2),
            ["lora_step_ms"] = Timings.Round(loraMs, 2),
            ["full_step_ms"] = Timings.Round(fullMs, 2),
            ["lora_mfu"] = Timings.Round(Mfu(lora, "honest_flops")!.Value),
            ["lora_peak_rss_mb"] = loraRss,
            ["full_peak_rss_mb"] = fullRss,
            ["gen_tokens_per_s_cache"] = Round(inference.TokensPerSCache),
            ["gen_tokens_per_s_nocache"] = Round(inference.TokensPerSNoCache),
            ["caption_images_per_s_b1"] = Round(inference.ImagesPerSB1),
            ["caption_images_per_s_b32"] = Round(inference.ImagesPerSB32),
            ["onnx_over_torch_b1"] = Round(inference.OnnxOverTorchB1),
            ["onnx_over_torch_b32"] = Round(inference.OnnxOverTorchB32),
            ["probe_prompts_per_s_naive"] = Timings.Round(probing.NaivePromptsPerS),
            ["probe_prompts_per_s_shared"] = Timings.Round(probing.SharedPromptsPerS),
            ["peer_step_ratio"] = peerMs is double pm && peerRefused is null ? Timings.Round(loraMs / pm) : null,
            ["peer_step_ratio_refused"] = peerRefused,

            ["lora_mfu_6nt"] = Timings.Round(Mfu(lora, "model_flops")!.Value),
            ["full_mfu"] = Timings.Round(Mfu(full, "model_flops")!.Value),
            ["lora_steps_per_s"] = lora["steps_per_s"]!.DeepClone(),
            ["lora_samples_per_s"] = lora["samples_per_s"]!.DeepClone(),
            ["full_steps_per_s"] = full["steps_per_s"]!.DeepClone(),
            ["full_samples_per_s"] = full["samples_per_s"]!.DeepClone(),
            ["lora_over_full_time"] = Timings.Round(loraMs / fullMs),
            ["lora_over_full_rss"] = loraRss is double lr && fullRss is double fr ? Timings.Round(lr / fr) : null,
            ["cache_speedup"] = Round(inference.TokensPerSCache / inference.TokensPerSNoCache),
            ["b32_over_b1"] = Round(inference.ImagesPerSB32 / inference.ImagesPerSB1),
            ["caption_b1_roof_fraction"] = Round(inference.CaptionGflopsB1 / roof.Median),
            ["caption_b32_roof_fraction"] = Round(inference.CaptionGflopsB32 / roof.Median),
            ["bf16_roof_gflops"] = Timings.Round(roofBf16.Median, 2),
            ["membw_gbs"] = Timings.Round(membw.Median, 2),
            ["lora_step_ms_bf16"] = Timings.Round(loraBf16["step_ms"]!["median"]!.GetValue<double>(), 2),
            // above 1: the bf16 base trains faster than fp32 (the same step, medians of this run)
            ["lora_f32_over_bf16"] = Timings.Round(loraMs / loraBf16["step_ms"]!["median"]!.GetValue<double>()),
            ["caption_images_per_s_b1_plain"] = Round(inference.ImagesPerSB1Plain),
            ["caption_images_per_s_b32_plain"] = Round(inference.ImagesPerSB32Plain),
            ["gen_tokens_per_s_cache_plain"] = Round(inference.TokensPerSCachePlain),
            // weight bytes a cached decode step reads (fp32) × tokens/s, as a share of the measured streaming read
            ["decode_bandwidth_fraction"] = Round(MemoryBandwidth.DecodeStepWeightBytes(cfg.Text) * inference.TokensPerSCache / (membw.Median * 1e9)),
            ["peer_step_ms"] = peerMs,
            ["machine_noise"] = Timings.Round(noises.Max()),
            ["config"] = new JsonObject
            {
                ["name"] = bc.Name, ["vocab"] = cfg.Text.VocabSize, ["image_size"] = bc.ImageSize, ["patch_size"] = bc.PatchSize,
                ["vision_hidden"] = bc.VisionHidden, ["vision_layers"] = bc.VisionLayers, ["hidden"] = bc.Hidden, ["layers"] = bc.Layers,
                ["heads"] = bc.Heads, ["kv_heads"] = bc.KvHeads, ["intermediate"] = bc.Intermediate, ["batch"] = bc.Batch,
                ["sequence"] = bc.Sequence, ["lora_rank"] = bc.LoraRank, ["lora_alpha"] = bc.LoraAlpha,
                ["repeats"] = reps, ["warmup"] = warm, ["threads"] = threads, ["seed"] = seed,
            },
            ["machine"] = new JsonObject
            {
                ["cores"] = Environment.ProcessorCount, ["load_average_start"] = load0, ["load_average_end"] = LoadAverage(),
                ["noise_definition"] = "(max - min) / median of the timed runs; machine_noise is the largest over roof, LoRA and full steps",
            },
            ["roof"] = new JsonObject
            {
                ["matmul"] = $"{roofN}x{roofN} @ {roofN}x{roofN}", ["fp32_gflops"] = roof.ToJson(),
                ["bf16_matmul"] = $"{roofNBf16}x{roofNBf16} @ {roofNBf16}x{roofNBf16}", ["bf16_gflops"] = roofBf16.ToJson(),
                ["fp32_median_by_size"] = BySize(roofBySize), ["bf16_median_by_size"] = BySize(roofBf16BySize),
            },
            ["lora"] = lora,
            ["lora_bf16"] = loraBf16,
            ["membw"] = new JsonObject { ["buffer_bytes"] = quick ? 256L << 20 : 1L << 30, ["gbs"] = membw.ToJson() },
            ["full"] = full,
            ["peer"] = peerJson,
            ["peer_setup"] = peerSetup?.DeepClone(),
            ["inference"] = inference.Details,
            ["notes"] = notes,
        };
    }

    private static double? Round(double? v) => v is double d ? Timings.Round(d) : null;

    public static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
    }
}
