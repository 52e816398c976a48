using System.CommandLine;
using Serilog;
using VlaBias.Data;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune data …: synth (render the synthetic world).</summary>
public static class DataCommand
{
    public static Command Create()
    {
        var data = new Command("data", "Data: render the synthetic world (synth), import datasets, audit manifests");
        data.Subcommands.Add(Synth());
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
