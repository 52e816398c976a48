using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Serilog;
using VlaBias.Bench;
using static TorchSharp.torch;

namespace VlaBias.Cli.Commands;

/// <summary>
/// vlatune bench: the performance figures of SPEC §9 as JSON. The training steps run in child processes
/// (`bench --worker lora|full`, hidden) so each reports its own peak resident memory; the PyTorch peer runs beside them.
/// </summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Model sizes: bench (LM hidden 512 × 8 layers, batch 8 × 128) or tiny (tiny-base's shape)", DefaultValueFactory = _ => "bench" };
        var repeats = new Option<int>("--repeats") { Description = "Timed runs per figure (the median is reported)", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed runs before each figure", DefaultValueFactory = _ => 1 };
        var outFile = new Option<string?>("--out") { Description = "Also write the JSON to this file" };
        var peer = new Option<bool>("--peer") { Description = "Also time the PyTorch peer step (tools/bench/peer_step.py with /usr/bin/python3) and report peer_step_ratio" };
        var quick = new Option<bool>("--quick") { Description = "Tiny sizes, no peer, no ONNX (a smoke run of the whole tool)" };
        var python = new Option<string>("--peer-python") { Description = "Python with torch for the peer", DefaultValueFactory = _ => PeerStep.DefaultPython };
        var script = new Option<string?>("--peer-script") { Description = $"Peer script (default: {PeerStep.ScriptPath} found from the current folder)" };
        var worker = new Option<string?>("--worker") { Description = "Internal: time one training mode (lora|full) in this process and print its JSON", Hidden = true };
        var cmd = new Command("bench", "Performance figures (SPEC §9) as JSON: matmul roof, LoRA vs full fine-tuning step time, MFU and peak memory, " +
            "generation with/without KV cache, captioning at batch 1 and 32, ONNX Runtime vs TorchSharp, and the PyTorch peer.\n\n" +
            "Examples:\n  vlatune bench --peer --out bench.json\n  vlatune bench --quick\n  vlatune bench --config tiny --repeats 3 --threads 2");
        foreach (var o in new Option[] { config, repeats, warmup, outFile, peer, quick, python, script, worker }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            bool isQuick = p.GetValue(quick);
            var bc = BenchConfig.Named(isQuick ? "tiny" : p.GetValue(config)!);
            int reps = p.GetValue(repeats), warm = p.GetValue(warmup);
            if (reps < 1) throw new BadInputException("--repeats: must be at least 1");
            if (warm < 0) throw new BadInputException("--warmup: must be 0 or more");
            int threads = get_num_threads();
            if (p.GetValue(worker) is string mode)
            {
                Console.WriteLine(TrainStepBench.Run(bc, mode, warm, reps, p.GetValue(Cli.Common.Seed)).ToJsonString());
                return ExitCodes.Ok;
            }
            var json = Measure(bc, reps, warm, threads, isQuick, p.GetValue(peer) && !isQuick, p.GetValue(python)!, p.GetValue(script), p.GetValue(Cli.Common.Seed));
            string text = json.ToJsonString(JsonFormat.Pretty);
            Console.WriteLine(text);
            if (p.GetValue(outFile) is string f) AtomicFile.WriteAllText(f, text + "\n");
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static JsonObject Measure(BenchConfig bc, int reps, int warm, int threads, bool quick, bool peer, string python, string? script, long seed)
    {
        var notes = new JsonArray();
        string load0 = LoadAverage();
        int roofN = quick ? 1024 : 2048;
        Log.Information("bench: {Config} sizes, {Threads} threads, {Repeats} timed runs after {Warmup} warm-up; load average {Load}", bc.Name, threads, reps, warm, load0);
        var roof = MatmulRoof.Measure(roofN, ScalarType.Float32, 1, Math.Max(5, reps));
        var roofBf16 = MatmulRoof.Measure(roofN, ScalarType.BFloat16, 1, Math.Max(5, reps));
        Log.Information("bench: roof {Gflops:F1} GFLOP/s fp32, {Bf16:F1} bf16 ({N}³ matmuls)", roof.Median, roofBf16.Median, roofN);

        var lora = Worker(TrainStepBench.Lora, bc, reps, warm, threads, seed);
        Log.Information("bench: LoRA step {Ms:F1} ms", lora["step_ms"]!["median"]!.GetValue<double>());
        var full = Worker(TrainStepBench.Full, bc, reps, warm, threads, seed);
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
        try
        {
            inference = InferenceBench.Run(bc, scratch, warm, reps, onnx: !quick, threads, seed);
        }
        finally { try { Directory.Delete(scratch, true); } catch (IOException) { } }
        Log.Information("bench: generation {Cache:F1} tokens/s cached, {NoCache:F1} recomputed; captioning {B1:F2} images/s (b1), {B32:F2} (b32)",
            inference.TokensPerSCache, inference.TokensPerSNoCache, inference.ImagesPerSB1, inference.ImagesPerSB32);

        double loraMs = lora["step_ms"]!["median"]!.GetValue<double>(), fullMs = full["step_ms"]!["median"]!.GetValue<double>();
        double roofFlops = roof.Median * 1e9;
        double? Mfu(JsonObject w, string key) => w[key]!.GetValue<double>() / (w["step_ms"]!["median"]!.GetValue<double>() * 1e-3) / roofFlops;
        double? peerMs = peerJson?["step_ms"]?["median"]?.GetValue<double>();
        double? loraRss = lora["peak_rss_mb"]?.GetValue<double>(), fullRss = full["peak_rss_mb"]?.GetValue<double>();
        var noises = new List<double> { roof.Noise, lora["step_ms"]!["noise"]!.GetValue<double>(), full["step_ms"]!["noise"]!.GetValue<double>() };
        var cfg = bc.Llava(bc.Vocab);
        notes.Add("training steps are language-model only on both sides: random inputs_embeds [B, T, C] stand in for the spliced image features and token embeddings");
        notes.Add("lora_mfu counts the FLOPs a LoRA step needs: base forward and activation gradients (4·N·tokens), attention, and the adapters' forward and backward, but no weight gradients for the frozen base; " +
                  "lora_mfu_6nt counts 6·N·tokens + attention (the PaLM convention for full training), which a LoRA step can exceed the roof on because it skips a third of that work; full_mfu uses 6·N·tokens: see src/VlaBias/Bench/TrainingFlops.cs");
        return new JsonObject
        {
            ["roof_gflops"] = Samples.Round(roof.Median, 2),
            ["lora_step_ms"] = Samples.Round(loraMs, 2),
            ["full_step_ms"] = Samples.Round(fullMs, 2),
            ["lora_mfu"] = Samples.Round(Mfu(lora, "honest_flops")!.Value),
            ["lora_peak_rss_mb"] = loraRss,
            ["full_peak_rss_mb"] = fullRss,
            ["gen_tokens_per_s_cache"] = Round(inference.TokensPerSCache),
            ["gen_tokens_per_s_nocache"] = Round(inference.TokensPerSNoCache),
            ["caption_images_per_s_b1"] = Round(inference.ImagesPerSB1),
            ["caption_images_per_s_b32"] = Round(inference.ImagesPerSB32),
            ["onnx_over_torch_b1"] = Round(inference.OnnxOverTorchB1),
            ["onnx_over_torch_b32"] = Round(inference.OnnxOverTorchB32),
            ["peer_step_ratio"] = peerMs is double pm && peerRefused is null ? Samples.Round(loraMs / pm) : null,
            ["peer_step_ratio_refused"] = peerRefused,

            ["lora_mfu_6nt"] = Samples.Round(Mfu(lora, "model_flops")!.Value),
            ["full_mfu"] = Samples.Round(Mfu(full, "model_flops")!.Value),
            ["lora_steps_per_s"] = lora["steps_per_s"]!.DeepClone(),
            ["lora_samples_per_s"] = lora["samples_per_s"]!.DeepClone(),
            ["full_steps_per_s"] = full["steps_per_s"]!.DeepClone(),
            ["full_samples_per_s"] = full["samples_per_s"]!.DeepClone(),
            ["lora_over_full_time"] = Samples.Round(loraMs / fullMs),
            ["lora_over_full_rss"] = loraRss is double lr && fullRss is double fr ? Samples.Round(lr / fr) : null,
            ["cache_speedup"] = Round(inference.TokensPerSCache / inference.TokensPerSNoCache),
            ["b32_over_b1"] = Round(inference.ImagesPerSB32 / inference.ImagesPerSB1),
            ["caption_b1_roof_fraction"] = Round(inference.CaptionGflopsB1 / roof.Median),
            ["caption_b32_roof_fraction"] = Round(inference.CaptionGflopsB32 / roof.Median),
            ["bf16_roof_gflops"] = Samples.Round(roofBf16.Median, 2),
            ["peer_step_ms"] = peerMs,
            ["machine_noise"] = Samples.Round(noises.Max()),
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
            ["roof"] = new JsonObject { ["matmul"] = $"{roofN}x{roofN} @ {roofN}x{roofN}", ["fp32_gflops"] = roof.ToJson(), ["bf16_gflops"] = roofBf16.ToJson() },
            ["lora"] = lora,
            ["full"] = full,
            ["peer"] = peerJson,
            ["peer_setup"] = peerSetup?.DeepClone(),
            ["inference"] = inference.Details,
            ["notes"] = notes,
        };
    }

    private static double? Round(double? v) => v is double d ? Samples.Round(d) : null;

    private static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
    }

    /// <summary>Runs `bench --worker MODE` in a child process of this same binary and returns its JSON.</summary>
    private static JsonObject Worker(string mode, BenchConfig bc, int reps, int warm, int threads, long seed)
    {
        var self = Environment.ProcessPath ?? "dotnet";
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(System.Reflection.Assembly.GetEntryAssembly()!.Location);
        foreach (var a in new[] { "bench", "--worker", mode, "--config", bc.Name, "--repeats", reps.ToString(CultureInfo.InvariantCulture),
                     "--warmup", warm.ToString(CultureInfo.InvariantCulture), "--threads", threads.ToString(CultureInfo.InvariantCulture),
                     "--seed", seed.ToString(CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"bench worker '{mode}' exited {p.ExitCode}: {stderr.Result.Trim()}");
        return JsonNode.Parse(stdout.Result.Trim())!.AsObject();
    }
}
