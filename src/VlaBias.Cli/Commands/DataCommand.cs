using System.CommandLine;
using Serilog;
using VlaBias.Data;
using VlaBias.Data.Importers;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune data …: synth (render the synthetic world), import (real data sets → manifest), face-sample; audit (DataAuditCommand.cs); rebalance and augment (DataTransformCommands.cs).</summary>
public static class DataCommand
{
    public static Command Create()
    {
        var data = new Command("data", "Data: render the synthetic world (synth), import datasets, audit manifests");
        data.Subcommands.Add(Synth());
        data.Subcommands.Add(Import());
        data.Subcommands.Add(FaceSample());
        data.Subcommands.Add(DataAuditCommand.Create());
        data.Subcommands.Add(DataTransformCommands.Rebalance());
        data.Subcommands.Add(DataTransformCommands.Augment());
        return data;
    }

    private static Command Synth()
    {
        var world = new Option<string>("--world") { Description = "World definition", DefaultValueFactory = _ => DefaultData.WorldFile };
        var outDir = new Option<string>("--out") { Description = "Output folder (manifest.jsonl + img/)", DefaultValueFactory = _ => DefaultData.Dir };
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

    private static Command Import()
    {
        var format = new Option<string>("--format") { Description = $"Source format: {string.Join(" | ", DatasetImport.Formats)}", Required = true };
        var src = new Argument<string>("source") { Description = "FairFace label CSV, UTKFace folder, COCO captions JSON, CSV (image,caption,gender,...), or counterfactual folder root" };
        var outPath = new Option<string>("--out") { Description = "Manifest to write (.jsonl); image paths are written relative to it", Required = true };
        var imagesRoot = new Option<string?>("--images-root") { Description = "Folder the source's image paths are relative to (default: the source's folder)" };
        var splitVal = new Option<double>("--split-val") { Description = "Fraction of items (pairs stay together) for split val", DefaultValueFactory = _ => 0.1 };
        var splitTest = new Option<double>("--split-test") { Description = "Fraction for split test", DefaultValueFactory = _ => 0.1 };
        var rest = new Option<string>("--rest-split") { Description = "Split of the remaining items: tune or train", DefaultValueFactory = _ => "tune" };
        var probes = new Option<string?>("--probes") { Description = $"Probing suite whose questions are added to every item (default {ProbingSuite.DefaultPath}; 'none' adds none)" };
        var cmd = new Command("import", "Convert a data set into a manifest (images referenced, not copied). Only counterfactual folders give\n" +
            "pairs; `vlatune tune` needs pairs, the other formats serve evaluation (group gaps).\n\nExamples:\n" +
            "  vlatune data import --format fairface fairface_label_val.csv --images-root FairFace --out data/imported/fairface/manifest.jsonl\n" +
            "  vlatune data import --format utkface UTKFace/ --out data/imported/utk/manifest.jsonl\n" +
            "  vlatune data import --format coco annotations/captions_val2017.json --images-root val2017 --out data/imported/coco/manifest.jsonl\n" +
            "  vlatune data import --format counterfactual-folders cf/ --out data/imported/cf/manifest.jsonl --split-val 0.2 --split-test 0.2");
        foreach (var o in new Option[] { format, outPath, imagesRoot, splitVal, splitTest, rest, probes }) cmd.Options.Add(o);
        cmd.Arguments.Add(src);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var probePath = p.GetValue(probes) ?? ProbingSuite.DefaultPath;
            var result = DatasetImport.Run(new ImportOptions
            {
                Format = p.GetValue(format)!, Source = p.GetValue(src)!, Out = p.GetValue(outPath)!, ImagesRoot = p.GetValue(imagesRoot),
                SplitVal = p.GetValue(splitVal), SplitTest = p.GetValue(splitTest), RestSplit = p.GetValue(rest)!, Seed = p.GetValue(Cli.Common.Seed),
                Probes = probePath == "none" ? null : ProbingSuite.Load(probePath),
            });
            var bySplit = string.Join(", ", result.Items.GroupBy(i => i.Split?.Name()).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} {g.Count()}"));
            Log.Information("imported {Count} items ({Splits}), {Pairs} counterfactual pairs", result.Items.Count, bySplit, result.Pairs);
            Console.WriteLine(result.ManifestPath);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static Command FaceSample()
    {
        var outDir = new Option<string>("--out") { Description = "Output folder (fairface/ and counterfactual/)", Required = true };
        var faces = new Option<int>("--faces") { Description = "FairFace-format images", DefaultValueFactory = _ => 8 };
        var scenes = new Option<int>("--scenes") { Description = "Counterfactual scenes (a man and a woman image each)", DefaultValueFactory = _ => 8 };
        var cmd = new Command("face-sample", "Write tiny generated face-like images in FairFace and counterfactual-folder layouts (for trying the importers).\n\n" +
            "Example:\n  vlatune data face-sample --out /tmp/faces && vlatune data import --format counterfactual-folders /tmp/faces/counterfactual --out /tmp/faces/cf.jsonl");
        foreach (var o in new Option[] { outDir, faces, scenes }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var paths = FaceSamples.Write(p.GetValue(outDir)!, p.GetValue(faces), p.GetValue(scenes), seed: p.GetValue(Cli.Common.Seed));
            Console.WriteLine(paths.FairFaceCsv);
            Console.WriteLine(paths.CounterfactualRoot);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
