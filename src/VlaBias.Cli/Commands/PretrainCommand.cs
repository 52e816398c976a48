using System.CommandLine;
using Serilog;
using VlaBias.Data;
using VlaBias.Recipes;
using VlaBias.Training;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune pretrain: trains a VLA from scratch on a manifest (how checkpoints/tiny-base is made).</summary>
public static class PretrainCommand
{
    public static Command Create()
    {
        var recipe = new Option<string?>("--recipe") { Description = "YAML recipe (e.g. recipes/tiny-base-pretrain.yaml)" };
        var data = new Option<string?>("--data") { Description = "Manifest (default: the generated Counterfactual Scenes, made on first use)" };
        var outDir = new Option<string?>("--out") { Description = "Output checkpoint folder" };
        var epochs = new Option<int?>("--epochs") { Description = "Passes over the pretraining examples" };
        var batch = new Option<int?>("--batch-size") { Description = "Examples per step" };
        var lr = new Option<double?>("--lr") { Description = "Peak learning rate" };
        var resume = new Option<bool>("--resume") { Description = "Continue from OUT/_checkpoint" };
        var cmd = new Command("pretrain", "Train a LLaVA-architecture VLA from scratch on the pretrain split of a manifest.\n\n" +
                                          "Examples:\n  vlatune pretrain --recipe recipes/tiny-base-pretrain.yaml\n  vlatune pretrain --recipe recipes/tiny-base-pretrain.yaml --out /tmp/base --resume");
        foreach (var o in new Option[] { recipe, data, outDir, epochs, batch, lr, resume }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var r = p.GetValue(recipe) is string path ? Recipe.Load(path) : new Recipe();
            r.Override("data", p.GetValue(data));
            r.Override("out", p.GetValue(outDir));
            r.Override("epochs", p.GetValue(epochs));
            r.Override("batch_size", p.GetValue(batch));
            r.Override("lr", p.GetValue(lr));
            if (p.GetValue(resume)) r.Override("resume", "true");
            r.Override("seed", p.GetResult(Cli.Common.Seed) is null ? null : p.GetValue(Cli.Common.Seed));
            var cfg = PretrainConfig.From(r);
            r.CheckAllUsed();
            DefaultData.Ensure(cfg.Data, cfg.World);
            Directory.CreateDirectory(cfg.Out);
            AtomicFile.WriteAllText(Path.Combine(cfg.Out, "pretrain_config.yaml"), r.ToYaml());
            var result = ProgressDisplay.Run("pretrain", prog => Pretrainer.Run(cfg, new SyncProgress<PretrainProgress>(x =>
                prog.Report(new(x.Step, x.TotalSteps, $"loss {x.Loss:F3} lr {x.Lr:E1}")))));
            Log.Information("pretrain: {Steps} steps in {Minutes:F1} min, final loss {Loss:F4}, check {Check}; model in {Out}",
                result.Steps, result.Elapsed.TotalMinutes, result.FinalLoss, result.LastCheck.ToJsonString(), result.Out);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
