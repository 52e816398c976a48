using System.CommandLine;
using Serilog;
using TorchSharp;
using VlaBias.Data;
using VlaBias.Evaluation;
using VlaBias.Steering;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune steer build: steering vectors from activations (mean-diff over counterfactual pairs, or one gradient step).</summary>
public static class SteerCommand
{
    public static Command Create()
    {
        var steer = new Command("steer", "Steering vectors: build them here; apply them with --steer on caption, ask and eval");
        steer.Subcommands.Add(Build());
        return steer;
    }

    private static Command Build()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder", DefaultValueFactory = _ => "checkpoints/tiny-base" };
        var method = new Option<string>("--method") { Description = "mean-diff (man − woman activations over counterfactual pairs of --data's tune split) | gradient (one gradient step on blank/random image features lowering p(gendered words); no data)", DefaultValueFactory = _ => "mean-diff" };
        var layers = new Option<string>("--layers") { Description = "Decoder layers, e.g. 2,3 (default: all)", DefaultValueFactory = _ => "all" };
        var outFile = new Option<string>("--out") { Description = "Output file (safetensors: layers.<i> [hidden] + metadata)", Required = true };
        var data = new Option<string>("--data") { Description = "Manifest (mean-diff)", DefaultValueFactory = _ => DefaultData.Manifest };
        var split = new Option<string>("--split") { Description = "Split whose counterfactual pairs are used (mean-diff)", DefaultValueFactory = _ => "tune" };
        var words = new Option<string>("--words") { Description = "Gender word list (gradient)", DefaultValueFactory = _ => "data/words/gender_words.json" };
        var world = new Option<string>("--world") { Description = "World definition (for the word lists)", DefaultValueFactory = _ => "data/scenes/world.json" };
        var images = new Option<int>("--images") { Description = "Images for the gradient method: 1 blank + N−1 random", DefaultValueFactory = _ => 16 };
        var step = new Option<double>("--step") { Description = "Gradient method: step size as a fraction of the feature norm", DefaultValueFactory = _ => 0.5 };
        var prompt = new Option<string?>("--prompt") { Description = "Caption prompt (default: the checkpoint's)" };
        var cmd = new Command("build", "Build a steering vector per decoder layer from residual-stream activations at the last prompt token.\n\n" +
            "Examples:\n  vlatune steer build --model checkpoints/tiny-base --method mean-diff --layers 2,3 --data data/generated/scenes/manifest.jsonl --out steer.safetensors\n" +
            "  vlatune steer build --model checkpoints/tiny-base --method gradient --layers 2,3 --out steer-grad.safetensors");
        foreach (var o in new Option[] { model, method, layers, outFile, data, split, words, world, images, step, prompt }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var vla = Vla.Load(p.GetValue(model)!);
            var layerList = SteeringBuilder.ParseLayers(p.GetValue(layers), vla.Config.Text.NumHiddenLayers);
            string captionPrompt = p.GetValue(prompt) ?? vla.Prompts.CaptionPrompt;
            SteeringVectors vectors;
            switch (p.GetValue(method))
            {
                case "mean-diff":
                    var manifest = p.GetValue(data)!;
                    DefaultData.Ensure(manifest, p.GetValue(world)!);
                    var items = Manifest.Load(manifest).Where(i => i.Split?.Name() == p.GetValue(split)).ToList();
                    if (items.Count == 0) throw new BadInputException($"{manifest}: no items with split '{p.GetValue(split)}'");
                    vectors = SteeringBuilder.MeanDiff(vla, items, Path.GetDirectoryName(Path.GetFullPath(manifest))!, layerList, captionPrompt);
                    break;
                case "gradient":
                    vectors = SteeringBuilder.Gradient(vla, WordLists.Load(p.GetValue(words)!, p.GetValue(world)!), layerList, captionPrompt,
                        p.GetValue(images), p.GetValue(step), p.GetValue(Cli.Common.Seed));
                    break;
                default: throw new BadInputException($"--method: unknown value '{p.GetValue(method)}' (expected mean-diff or gradient)");
            }
            using (vectors)
            {
                var meta = new Dictionary<string, string>(vectors.Metadata) { ["model"] = Path.GetFullPath(p.GetValue(model)!), ["seconds"] = clock.Elapsed.TotalSeconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture) };
                new SteeringVectors(vectors.ByLayer, meta).Save(p.GetValue(outFile)!);
                foreach (var (l, v) in vectors.ByLayer.OrderBy(kv => kv.Key))
                    Log.Information("steer build: layer {Layer}: |v| = {Norm:F4}", l, v.norm().ToDouble());
            }
            Log.Information("steer build: {Method} vectors for layers {Layers} → {Out} in {Seconds:F1} s", p.GetValue(method), string.Join(",", layerList), p.GetValue(outFile), clock.Elapsed.TotalSeconds);
            Console.WriteLine(p.GetValue(outFile));
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
