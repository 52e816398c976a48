using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using VlaBias.Generation;
using VlaBias.Images;

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
        var dtype = ModelOptions.DType();
        var engineName = new Option<string>("--engine") { Description = "torch (a checkpoint folder) or onnx (a folder written by `vlatune export`)", DefaultValueFactory = _ => "torch" };
        var cmd = new Command("caption", "Caption images.\n\nExamples:\n  vlatune caption --model checkpoints/tiny-base img.png\n  vlatune caption --model DIR a.png b.png --beams 3 --json\n  vlatune caption --model DIR img.png --steer steer.safetensors --steer-scale 1\n  vlatune caption --model DIR img.png --penalty 2 --penalty-words default\n  vlatune caption --model DIR img.png --fairness-instruction");
        foreach (var o in new Option[] { model, adapter, prompt, beams, maxNew, batch, json, engineName, dtype }) cmd.Options.Add(o);
        cmd.Arguments.Add(images);
        var methodOptions = new MethodOptions(cmd, decoding: true);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            if (p.GetValue(beams) < 1) throw new BadInputException("--beams: must be at least 1");
            if (p.GetValue(maxNew) < 1) throw new BadInputException("--max-new-tokens: must be at least 1");
            var methods = methodOptions.Read(p, p.GetValue(beams));
            var opts = new GenerationOptions(p.GetValue(maxNew), methods.Beams);
            var files = p.GetValue(images)!;
            IEngine engine;
            ImagePreprocessor preprocessor;
            TokenPenalty? penalty = null;
            using var disposables = new Disposables();
            switch (p.GetValue(engineName))
            {
                case "onnx":
                    if (methods != VlaBias.Methods.Interventions.None with { Beams = methods.Beams }) throw new BadInputException("--engine onnx: steering, soft prompts, prompt prefixes and penalties need --engine torch");
                    if (p.GetValue(adapter) is not null) throw new BadInputException("--adapter: an ONNX export already has its adapter merged; export with --adapter instead");
                    var onnx = disposables.Add(VlaBias.Export.OnnxVla.Load(p.GetValue(model)!));
                    (engine, preprocessor) = (onnx, onnx.Images);
                    break;
                case "torch":
                    var vla = Vla.Load(p.GetValue(model)!, p.GetValue(adapter), dtype: ModelOptions.ResolveDType(p.GetValue(dtype), p.GetValue(model)!));
                    disposables.Add(methods.Apply(vla));
                    penalty = methods.PenaltyFor(vla, "data/words/gender_words.json");
                    (engine, preprocessor) = (new TorchEngine(vla), vla.Images);
                    break;
                default: throw new BadInputException($"--engine: unknown value '{p.GetValue(engineName)}' (expected torch or onnx)");
            }
            int failed = 0;
            foreach (var r in new Captioner(engine, preprocessor, penalty).CaptionFiles(files, p.GetValue(prompt), opts, p.GetValue(batch)))
            {
                if (r.Caption is not null) { Print(r.File, r.Caption, engine.Prompts, p.GetValue(json)); continue; }
                if (files.Length == 1) throw new BadInputException(r.Error!);
                failed++;
                Console.Error.WriteLine($"vlatune: error: {r.Error}");
            }
            return failed > 0 ? ExitCodes.BadInput : ExitCodes.Ok;
        }));
        return cmd;
    }

    private static void Print(string file, Generated g, PromptFormat prompts, bool json)
    {
        if (!json) { Console.WriteLine($"{file}\t{g.Text}"); return; }
        var o = new JsonObject
        {
            ["image"] = file,
            ["caption"] = g.Text,
            ["tokens"] = new JsonArray(g.Tokens.Select((t, i) => (JsonNode)new JsonObject
            {
                ["id"] = t, ["token"] = prompts.Decode([t]), ["logprob"] = Math.Round(g.LogProbs[i], 6),
            }).ToArray()),
            ["sum_logprob"] = Math.Round(g.SumLogProb, 6),
        };
        Console.WriteLine(o.ToJsonString());
    }
}

/// <summary>Disposes what a command opened, in reverse order.</summary>
internal sealed class Disposables : IDisposable
{
    private readonly Stack<IDisposable> items = new();
    public T Add<T>(T item) where T : IDisposable { items.Push(item); return item; }
    public void Dispose() { while (items.Count > 0) items.Pop().Dispose(); }
}
