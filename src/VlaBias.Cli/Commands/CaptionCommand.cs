using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using VlaBias.Generation;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune caption: captions images with greedy or beam search; --json adds token log-probabilities.</summary>
public static class CaptionCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder (Hugging Face layout)", DefaultValueFactory = _ => "checkpoints/tiny-base" };
        var adapter = new Option<string?>("--adapter") { Description = "LoRA adapter folder (PEFT format) applied to the model" };
        var images = new Argument<string[]>("images") { Description = "Image files (PNG, JPEG, WebP)", Arity = ArgumentArity.OneOrMore };
        var prompt = new Option<string?>("--prompt") { Description = "Instruction (default: the checkpoint's caption prompt)" };
        var beams = new Option<int>("--beams") { Description = "Beam width (1 = greedy)", DefaultValueFactory = _ => 1 };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Longest caption in tokens", DefaultValueFactory = _ => 24 };
        var batch = new Option<int>("--batch-size") { Description = "Images per forward pass", DefaultValueFactory = _ => 16 };
        var json = new Option<bool>("--json") { Description = "One JSON object per image with tokens and log-probabilities" };
        var dtype = ModelLoading.DTypeOption();
        var engine = new Option<string>("--engine") { Description = "torch (a checkpoint folder) or onnx (a folder written by `vlatune export`)", DefaultValueFactory = _ => "torch" };
        var cmd = new Command("caption", "Caption images.\n\nExamples:\n  vlatune caption --model checkpoints/tiny-base img.png\n  vlatune caption --model DIR a.png b.png --beams 3 --json\n  vlatune caption --model DIR img.png --steer steer.safetensors --steer-scale 1\n  vlatune caption --model DIR img.png --penalty 2 --penalty-words default\n  vlatune caption --model DIR img.png --fairness-instruction");
        foreach (var o in new Option[] { model, adapter, prompt, beams, maxNew, batch, json, engine, dtype }) cmd.Options.Add(o);
        cmd.Arguments.Add(images);
        var methodOptions = new MethodOptions(cmd, decoding: true);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            if (p.GetValue(beams) < 1) throw new BadInputException("--beams: must be at least 1");
            if (p.GetValue(maxNew) < 1) throw new BadInputException("--max-new-tokens: must be at least 1");
            var methods = methodOptions.Read(p, p.GetValue(beams));
            var opts = new GenerationOptions(p.GetValue(maxNew), methods.Beams);
            if (p.GetValue(engine) == "onnx")
            {
                if (methods != VlaBias.Methods.Interventions.None with { Beams = methods.Beams }) throw new BadInputException("--engine onnx: steering, soft prompts, prompt prefixes and penalties need --engine torch");
                if (p.GetValue(adapter) is not null) throw new BadInputException("--adapter: an ONNX export already has its adapter merged; export with --adapter instead");
                using var onnx = VlaBias.Export.OnnxVla.Load(p.GetValue(model)!);
                int bad = 0;
                foreach (var f in p.GetValue(images)!)
                {
                    try { Print(f, onnx.Caption([f], p.GetValue(prompt), opts)[0], onnx.Tokenizer, p.GetValue(json)); }
                    catch (BadInputException e) when (p.GetValue(images)!.Length > 1) { bad++; Console.Error.WriteLine($"vlatune: error: {e.Message}"); }
                }
                return bad > 0 ? ExitCodes.BadInput : ExitCodes.Ok;
            }
            if (p.GetValue(engine) != "torch") throw new BadInputException($"--engine: unknown value '{p.GetValue(engine)}' (expected torch or onnx)");
            var vla = ModelLoading.Load(p.GetValue(model)!, p.GetValue(adapter), p.GetValue(dtype)!);
            string instruction = p.GetValue(prompt) ?? Prompts.Caption(vla);
            var gen = new TextGenerator(vla);
            using var applied = methods.Apply(vla);
            var penalty = methods.PenaltyFor(vla, "data/words/gender_words.json");
            var files = p.GetValue(images)!;
            int bs = Math.Max(1, p.GetValue(batch));
            int failed = 0;
            for (int start = 0; start < files.Length; start += bs)
            {
                var chunk = files.Skip(start).Take(bs).ToArray();
                var ok = new List<(string file, TorchSharp.torch.Tensor px)>();
                foreach (var f in chunk)
                {
                    try { ok.Add((f, vla.Images.Load(f))); }
                    catch (BadInputException e)
                    {
                        failed++;
                        if (files.Length == 1) throw;
                        Console.Error.WriteLine($"vlatune: error: {e.Message}");
                    }
                }
                if (ok.Count == 0) continue;
                var ids = ok.Select(_ => vla.PromptIds(instruction)).ToList();
                using var b = vla.Batch(ids, ok.Select(x => x.px).ToList());
                var outs = gen.Generate(b, opts, penalty);
                for (int i = 0; i < ok.Count; i++) Print(ok[i].file, outs[i], vla.Tokenizer, p.GetValue(json));
            }
            return failed > 0 ? ExitCodes.BadInput : ExitCodes.Ok;
        }));
        return cmd;
    }

    private static void Print(string file, Generated g, VlaBias.Text.VlaTokenizer tokenizer, bool json)
    {
        if (!json) { Console.WriteLine($"{file}\t{g.Text}"); return; }
        var o = new JsonObject
        {
            ["image"] = file,
            ["caption"] = g.Text,
            ["tokens"] = new JsonArray(g.Tokens.Select((t, i) => (JsonNode)new JsonObject
            {
                ["id"] = t, ["token"] = tokenizer.Decode([t]), ["logprob"] = Math.Round(g.LogProbs[i], 6),
            }).ToArray()),
            ["sum_logprob"] = Math.Round(g.SumLogProb, 6),
        };
        Console.WriteLine(o.ToJsonString());
    }
}

/// <summary>Prompts a checkpoint declares (tokenizer_config.json "vlatune_caption_prompt"), with sensible defaults.</summary>
public static class Prompts
{
    public static string Caption(Vla vla)
    {
        var path = vla.Folder is null ? null : Path.Combine(vla.Folder, "tokenizer_config.json");
        if (path is not null && File.Exists(path) && JsonNode.Parse(File.ReadAllText(path))?["vlatune_caption_prompt"]?.GetValue<string>() is { } s) return s;
        return "describe the image.";
    }
}
