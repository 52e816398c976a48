using System.CommandLine;
using VlaBias.Data;
using VlaBias.Evaluation;
using VlaBias.Methods;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune methods: trains/builds and evaluates every debiasing method on one base, one table (Methods/MethodComparison.cs).</summary>
public static class MethodsCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Base checkpoint folder", DefaultValueFactory = _ => "checkpoints/tiny-base" };
        var data = new Option<string>("--data") { Description = "Manifest: tune split trains LoRA / prompt tuning and builds the mean-diff vector; val split early-stops", DefaultValueFactory = _ => DefaultData.Manifest };
        var suite = new Option<string>("--suite") { Description = "Evaluation suite (every method is evaluated on it)", DefaultValueFactory = _ => "eval/suites/scenes.yaml" };
        var recipe = new Option<string>("--recipe") { Description = "Tuning recipe for LoRA and prompt tuning", DefaultValueFactory = _ => TuneCommand.DefaultRecipe };
        var outDir = new Option<string>("--out") { Description = "Output folder: comparison.md, one eval folder per method, runs/, steering vectors", DefaultValueFactory = _ => "eval/methods" };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Override the recipe's max_steps (both tuning methods)" };
        var evalEvery = new Option<int?>("--eval-every") { Description = "Override the recipe's eval_every" };
        var promptLr = new Option<double>("--prompt-lr") { Description = "Learning rate of prompt tuning (a prefix needs a larger one than LoRA)", DefaultValueFactory = _ => 3e-3 };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Soft prefix length", DefaultValueFactory = _ => 8 };
        var layers = new Option<string>("--steer-layers") { Description = "Decoder layers of the steering vectors", DefaultValueFactory = _ => "all" };
        var penalty = new Option<double>("--penalty") { Description = "λ of penalty decoding", DefaultValueFactory = _ => 2.0 };
        var beams = new Option<int>("--beams") { Description = "Beams of penalty decoding and its control", DefaultValueFactory = _ => 3 };
        var bootstrap = new Option<int?>("--bootstrap") { Description = "Bootstrap resamples (suite default)" };
        var dataModel = new Option<string?>("--data-model") { Description = "A base pretrained on `data rebalance` + `data augment` output, evaluated as the data-side method" };
        var dataSeconds = new Option<double?>("--data-model-seconds") { Description = "Its pretraining time, for the cost column" };
        var skip = new Option<string[]>("--skip") { Description = "Methods to leave out: lora, prompt, steer, prompt-engineering, penalty", AllowMultipleArgumentsPerToken = true };
        var cmd = new Command("methods", "Compare the debiasing methods (LoRA, prompt tuning, steering, prompt engineering, penalty decoding, data side) on one evaluator: bias, accuracy with 95% CIs, and cost.\n\n" +
            "Examples:\n  vlatune methods --model checkpoints/tiny-base --out eval/methods\n" +
            "  vlatune methods --model /tmp/m-base --data /tmp/m-scenes/manifest.jsonl --suite /tmp/m-suite.yaml --max-steps 60 --out /tmp/methods");
        foreach (var o in new Option[] { model, data, suite, recipe, outDir, maxSteps, evalEvery, promptLr, promptTokens, layers, penalty, beams, bootstrap, dataModel, dataSeconds, skip }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var req = new MethodsRequest(p.GetValue(model)!, p.GetValue(data)!, p.GetValue(suite)!, p.GetValue(recipe)!, p.GetValue(outDir)!,
                p.GetValue(maxSteps), p.GetValue(evalEvery), p.GetValue(promptLr), p.GetValue(promptTokens), p.GetValue(layers) ?? "all",
                p.GetValue(penalty), p.GetValue(beams), Suite.BootstrapOption(p.GetValue(bootstrap)), p.GetValue(dataModel), p.GetValue(dataSeconds), p.GetValue(skip) ?? []);
            DefaultData.Ensure(req.Data);
            var rows = MethodComparison.Run(req, new SyncProgress<string>(s => Serilog.Log.Information("methods: {Step}", s)));
            Console.WriteLine(MethodComparison.Table(rows));
            var table = Path.Combine(req.Out, "comparison.md");
            VlaBias.Reproducibility.Provenance.Write(table, VlaBias.Reproducibility.Provenance.CommandLine(Environment.GetCommandLineArgs().Skip(1)),
                VlaBias.Reproducibility.Provenance.InputsOf(req.Recipe, req.Model, req.Data, req.Suite, dataGenerated: req.Data == DefaultData.Manifest));
            Console.WriteLine($"written: {table} (+ .provenance.json)");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
