using System.CommandLine;
using Serilog;
using VlaBias.Data;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune data …: synth (render the synthetic world), rebalance and augment (data-side debiasing).</summary>
public static class DataCommand
{
    public static Command Create()
    {
        var data = new Command("data", "Data: render the synthetic world (synth), import datasets, audit manifests");
        data.Subcommands.Add(Synth());
        data.Subcommands.Add(RebalanceCommand());
        data.Subcommands.Add(Augment());
        return data;
    }

    public const string DefaultSynthDir = "data/generated/scenes";

    private static Command Synth()
    {
        var world = new Option<string>("--world") { Description = "World definition", DefaultValueFactory = _ => "data/scenes/world.json" };
        var outDir = new Option<string>("--out") { Description = "Output folder (manifest.jsonl + img/)", DefaultValueFactory = _ => DefaultSynthDir };
        var pretrain = new Option<int?>("--pretrain") { Description = "Number of pretraining images (default 8000)" };
        var tunePairs = new Option<int?>("--tune-pairs") { Description = "Counterfactual pairs for tuning (default 600)" };
        var valPairs = new Option<int?>("--val-pairs") { Description = "Pairs in val (default 192; unclear singles are half that)" };
        var testPairs = new Option<int?>("--test-pairs") { Description = "Pairs in test (default 192; unclear singles are half that)" };
        var cmd = new Command("synth", "Render Counterfactual Scenes: splits pretrain (biased annotations), tune, val, test (truthful, paired).\n\n" +
                                       "Examples:\n  vlatune data synth\n  vlatune data synth --out /tmp/scenes --pretrain 2000 --seed 1");
        foreach (var o in new Option[] { world, outDir, pretrain, tunePairs, valPairs, testPairs }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var w = World.Load(p.GetValue(world)!);
            var opts = new SynthOptions { Seed = (ulong)p.GetValue(Cli.Common.Seed) };
            if (p.GetValue(pretrain) is int n) opts = opts with { Pretrain = n };
            if (p.GetValue(tunePairs) is int t) opts = opts with { TunePairs = t, TuneUnclear = t / 2 };
            if (p.GetValue(valPairs) is int v) opts = opts with { ValPairs = v, ValUnclear = v / 2 };
            if (p.GetValue(testPairs) is int te) opts = opts with { TestPairs = te, TestUnclear = te / 2 };
            var result = ProgressDisplay.Run("rendering scenes", prog =>
                SceneSynth.Generate(w, opts, p.GetValue(outDir)!, new SyncProgress<(int done, int total)>(x => prog.Report(new(x.done, x.total, "")))));
            Log.Information("wrote {Count} items to {Manifest} in {Seconds:F1} s", result.Items.Count, result.ManifestPath, result.Elapsed.TotalSeconds);
            Console.WriteLine(result.ManifestPath);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static Command RebalanceCommand()
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
            var (result, report) = Rebalance.Run(items, p.GetValue(split)!, p.GetValue(under), (int)p.GetValue(Cli.Common.Seed));
            WriteRelocated(src, p.GetValue(outFile)!, result);
            Log.Information("data rebalance: split {Split}: {Cells} context/role cells, {Before} → {After} items → {Out}", p.GetValue(split), report.Cells, report.Before, report.After, p.GetValue(outFile));
            foreach (var m in report.MissingGenders.Take(20)) Log.Warning("data rebalance: cannot balance {Cell}", m);
            Console.WriteLine(p.GetValue(outFile));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static Command Augment()
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
            WriteRelocated(src, p.GetValue(outFile)!, result);
            Log.Information("data augment: {Unclear} unclear items, {Added} captions added → {Out}", report.UnclearItems, report.CaptionsAdded, p.GetValue(outFile));
            Console.WriteLine(p.GetValue(outFile));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    /// <summary>Writes items read from <paramref name="from"/> to <paramref name="to"/>, image paths made relative to the new folder.</summary>
    public static void WriteRelocated(string from, string to, IEnumerable<ManifestItem> items)
    {
        string srcDir = Path.GetDirectoryName(Path.GetFullPath(from))!, dstDir = Path.GetDirectoryName(Path.GetFullPath(to))!;
        Directory.CreateDirectory(dstDir);
        Manifest.Write(to, srcDir == dstDir ? items : items.Select(i => i with { Image = Path.GetRelativePath(dstDir, Path.Combine(srcDir, i.Image)) }));
    }

    /// <summary>The default synthetic data set, generated on first use (deterministic, a few seconds).</summary>
    public static string EnsureDefaultScenes(string worldPath = "data/scenes/world.json", string dir = DefaultSynthDir)
    {
        var manifest = Path.Combine(dir, SceneSynth.ManifestName);
        if (File.Exists(manifest)) return manifest;
        Log.Information("generating the default Counterfactual Scenes data set in {Dir} (first use)", dir);
        var w = World.Load(worldPath);
        return SceneSynth.Generate(w, new SynthOptions(), dir).ManifestPath;
    }
}
