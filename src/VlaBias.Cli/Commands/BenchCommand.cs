using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Serilog;
using VlaBias.Bench;
using static TorchSharp.torch;

namespace VlaBias.Cli.Commands;

/// <summary>
/// vlatune bench: the performance figures as JSON (Bench/BenchReport.cs). The training steps run in child processes of
/// this binary (`bench --worker lora|full`, hidden) so each reports its own peak resident memory.
/// </summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Model sizes: bench (LM hidden 512 × 8 layers, batch 8 × 128), tiny (tiny-base's shape), " +
            "or a real checkpoint's shapes with random weights: llava-interleave-0.5b, llava-1.5-7b (docs/realsize-bench.md)", DefaultValueFactory = _ => "bench" };
        var randomRoot = new Option<string>("--random-checkpoints") { Description = "Real-size configs: folder of the random checkpoints (written on first use, reused when their config matches)", DefaultValueFactory = _ => RealSizeConfig.RootDefault };
        var probeImages = new Option<int?>("--probe-images") { Description = "Real-size configs: images of the naive probing figure (default: 4 for 0.5b, 1 for 7b)" };
        var probeQuestions = new Option<int?>("--probe-questions") { Description = "Real-size configs: questions per image of the naive probing figure (default: 48 for 0.5b, 4 for 7b)" };
        var repeats = new Option<int>("--repeats") { Description = "Timed runs per figure (the median is reported)", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed runs before each figure", DefaultValueFactory = _ => 1 };
        var outFile = new Option<string?>("--out") { Description = "Also write the JSON to this file" };
        var peer = new Option<bool>("--peer") { Description = "Also time the PyTorch peer step (tools/bench/peer_step.py with /usr/bin/python3) and report peer_step_ratio" };
        var quick = new Option<bool>("--quick") { Description = "Tiny sizes, no peer, no ONNX (a smoke run of the whole tool)" };
        var python = new Option<string>("--peer-python") { Description = "Python with torch for the peer", DefaultValueFactory = _ => PeerStep.DefaultPython };
        var script = new Option<string?>("--peer-script") { Description = $"Peer script (default: {PeerStep.ScriptPath} found from the current folder)" };
        var worker = new Option<string?>("--worker") { Description = "Internal: time one training mode (lora|full) in this process and print its JSON", Hidden = true };
        var cmd = new Command("bench", "Performance figures as JSON: matmul roof, LoRA vs full fine-tuning step time, MFU and peak memory, " +
            "generation with/without KV cache, captioning at batch 1 and 32, ONNX Runtime vs TorchSharp, and the PyTorch peer.\n\n" +
            "Examples:\n  vlatune bench --peer --out bench.json\n  vlatune bench --quick\n  vlatune bench --config tiny --repeats 3 --threads 2");
        foreach (var o in new Option[] { config, repeats, warmup, outFile, peer, quick, python, script, worker, randomRoot, probeImages, probeQuestions }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            bool isQuick = p.GetValue(quick);
            int reps = p.GetValue(repeats), warm = p.GetValue(warmup);
            if (reps < 1) throw new BadInputException("--repeats: must be at least 1");
            if (warm < 0) throw new BadInputException("--warmup: must be 0 or more");
            int threads = get_num_threads();
            if (!isQuick && RealSizeConfig.IsName(p.GetValue(config)!))
                return RealSize(p, RealSizeConfig.Named(p.GetValue(config)!), p.GetValue(randomRoot)!, p.GetValue(probeImages), p.GetValue(probeQuestions),
                    p.GetValue(worker), reps, warm, threads, p.GetValue(Cli.Common.Seed), p.GetValue(outFile));
            var bc = BenchConfig.Named(isQuick ? "tiny" : p.GetValue(config)!);
            if (p.GetValue(worker) is string mode)
            {
                Console.WriteLine(TrainStepBench.Run(bc, mode, warm, reps, p.GetValue(Cli.Common.Seed)).ToJsonString());
                return ExitCodes.Ok;
            }
            long seed = p.GetValue(Cli.Common.Seed);
            var json = BenchReport.Measure(bc, reps, warm, threads, isQuick, p.GetValue(peer) && !isQuick, p.GetValue(python)!, p.GetValue(script), seed,
                (mode, r, w) => Worker(mode, bc, r, w, threads, seed));
            string text = json.ToJsonString(JsonFormat.Pretty);
            Console.WriteLine(text);
            if (p.GetValue(outFile) is string f) AtomicFile.WriteAllText(f, text + "\n");
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    /// <summary>A real-size config: its parts each in a child process (`--worker PART`), or one part when this is that child.</summary>
    private static int RealSize(ParseResult p, RealSizeConfig rc, string root, int? images, int? questions, string? part, int reps, int warm, int threads, long seed, string? outFile)
    {
        if (images is < 1 || questions is < 1) throw new BadInputException("--probe-images, --probe-questions: must be at least 1");
        rc = rc with { ProbeImages = images ?? rc.ProbeImages, ProbeQuestions = questions ?? rc.ProbeQuestions };
        if (part is not null)
        {
            Console.WriteLine(RealSizeBench.RunPart(rc, root, part, warm, reps, seed).ToJsonString());
            return ExitCodes.Ok;
        }
        var extra = new List<string> { "--random-checkpoints", root, "--probe-images", rc.ProbeImages.ToString(CultureInfo.InvariantCulture),
            "--probe-questions", rc.ProbeQuestions.ToString(CultureInfo.InvariantCulture) };
        var json = RealSizeBench.Measure(rc, reps, warm, threads, seed, name => Worker(name, rc.Name, reps, warm, threads, seed, extra));
        string text = json.ToJsonString(JsonFormat.Pretty);
        Console.WriteLine(text);
        if (outFile is not null) AtomicFile.WriteAllText(outFile, text + "\n");
        return ExitCodes.Ok;
    }

    private static JsonObject Worker(string mode, BenchConfig bc, int reps, int warm, int threads, long seed) => Worker(mode, bc.Name, reps, warm, threads, seed, []);

    /// <summary>Runs `bench --worker MODE` in a child process of this same binary and returns its JSON.</summary>
    private static JsonObject Worker(string mode, string configName, int reps, int warm, int threads, long seed, IReadOnlyList<string> extra)
    {
        var self = Environment.ProcessPath ?? "dotnet";
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(System.Reflection.Assembly.GetEntryAssembly()!.Location);
        foreach (var a in new[] { "bench", "--worker", mode, "--config", configName, "--repeats", reps.ToString(CultureInfo.InvariantCulture),
                     "--warmup", warm.ToString(CultureInfo.InvariantCulture), "--threads", threads.ToString(CultureInfo.InvariantCulture),
                     "--seed", seed.ToString(CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        foreach (var a in extra) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"bench worker '{mode}' exited {p.ExitCode}: {stderr.Result.Trim()}");
        return JsonNode.Parse(stdout.Result.Trim())!.AsObject();
    }
}
