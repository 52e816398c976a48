using System.CommandLine;
using Serilog;
using VlaBias.Data;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune data rebalance and data augment: data-side debiasing of a manifest (Data/Rebalance.cs, Data/CounterfactualAugmentation.cs).</summary>
public static class DataTransformCommands
{
    public static Command Rebalance()
    {
        var input = new Argument<string>("manifest") { Description = "Input manifest" };
        var outFile = new Option<string>("--out") { Description = "Output manifest (image paths are rewritten relative to it)", Required = true };
        var split = new Option<string>("--split") { Description = "Split to resample (others pass through)", DefaultValueFactory = _ => "pretrain" };
        var under = new Option<bool>("--undersample") { Description = "Drop items down to the smallest gender of each cell instead of duplicating up to the largest" };
        var cmd = new Command("rebalance", "Resample a split so each gender × context × role cell has equal counts (feeds pretrain or tune).\n\n" +
            "Examples:\n  vlatune data rebalance data/generated/scenes/manifest.jsonl --out /tmp/rebalanced/manifest.jsonl\n" +
            "  vlatune pretrain --data /tmp/rebalanced/manifest.jsonl --out /tmp/base-rebalanced");
        cmd.Arguments.Add(input);
        foreach (var o in new Option[] { outFile, split, under }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var src = p.GetValue(input)!;
            var items = Manifest.Load(src);
            var (result, report) = Data.Rebalance.Run(items, p.GetValue(split)!, p.GetValue(under), (int)p.GetValue(Cli.Common.Seed));
            Manifest.WriteRelocated(src, p.GetValue(outFile)!, result);
            Log.Information("data rebalance: split {Split}: {Cells} context/role cells, {Before} → {After} items → {Out}", p.GetValue(split), report.Cells, report.Before, report.After, p.GetValue(outFile));
            foreach (var m in report.MissingGenders.Take(20)) Log.Warning("data rebalance: cannot balance {Cell}", m);
            Console.WriteLine(p.GetValue(outFile));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    public static Command Augment()
    {
        var input = new Argument<string>("manifest") { Description = "Input manifest" };
        var outFile = new Option<string>("--out") { Description = "Output manifest (image paths are rewritten relative to it)", Required = true };
        var split = new Option<string?>("--split") { Description = "Only augment this split (default: all)" };
        var world = new Option<string>("--world") { Description = "World definition (its man / woman / neutral words)", DefaultValueFactory = _ => "data/scenes/world.json" };
        var cmd = new Command("augment", "Counterfactual caption augmentation: for figures of unclear gender, add the neutral ('person') and the gender-swapped version of every gendered caption.\n\n" +
            "Example:\n  vlatune data augment data/generated/scenes/manifest.jsonl --split pretrain --out /tmp/augmented/manifest.jsonl");
        cmd.Arguments.Add(input);
        foreach (var o in new Option[] { outFile, split, world }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var src = p.GetValue(input)!;
            var w = World.Load(p.GetValue(world)!);
            var (result, report) = CounterfactualAugmentation.Run(Manifest.Load(src), p.GetValue(split), w.Words.Unclear, w.Words.Man, w.Words.Woman);
            Manifest.WriteRelocated(src, p.GetValue(outFile)!, result);
            Log.Information("data augment: {Unclear} unclear items, {Added} captions added → {Out}", report.UnclearItems, report.CaptionsAdded, p.GetValue(outFile));
            Console.WriteLine(p.GetValue(outFile));
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
