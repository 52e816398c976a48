using System.CommandLine;
using Serilog;
using VlaBias.Data;
using VlaBias.Recipes;
using VlaBias.Training;

namespace VlaBias.Cli.Commands;

/// <summary>
/// vlatune [tune]: the debiasing run (Training/DebiasTrainer.cs). Every recipe key is also a command-line option (snake_case key →
/// --kebab-case option); the command line wins over the recipe (default recipes/default.yaml).
/// </summary>
public static class TuneCommand
{
    public const string DefaultRecipe = "recipes/default.yaml";

    public static T Create<T>(T cmd) where T : Command
    {
        var recipe = new Option<string?>("--recipe") { Description = $"YAML recipe (default {DefaultRecipe})" };
        var requireThreshold = new Option<bool>("--require-threshold") { Description = "Exit 1 when the run ends without reaching the threshold" };
        cmd.Options.Add(recipe);
        cmd.Options.Add(requireThreshold);
        var keyed = new List<(string key, Option<string?> option)>();
        foreach (var (key, help) in TuneConfig.Keys)
        {
            if (key == "resume") continue;
            var o = new Option<string?>("--" + key.Replace('_', '-')) { Description = help };
            cmd.Options.Add(o);
            keyed.Add((key, o));
        }
        var resume = new Option<bool>("--resume") { Description = "Continue the run --name (or the latest run) from its last checkpoint" };
        cmd.Options.Add(resume);
        var seeds = new Option<string?>("--seeds") { Description = "One run per seed (0,1,2,3,4 or 0-4) into RUNS_DIR/NAME/seed-<s>, then summary.md: mean ± sd over seeds (docs/cluster.md)" };
        cmd.Options.Add(seeds);
        var slurm = new SlurmOptions(cmd, shards: false);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            string path = p.GetValue(recipe) ?? DefaultRecipe;
            if (p.GetValue(seeds) is string seedList)
            {
                if (p.GetValue(resume)) throw new BadInputException("--resume: a sweep continues its unfinished seeds by itself; run the same command (same --name) again");
                return slurm.Sweep(p, seedList, () => Build(p, path, keyed, false), path, p.GetValue(requireThreshold),
                    [.. keyed.Where(k => k.key is "name" or "runs_dir" or "seed").Select(k => (Option)k.option), resume, requireThreshold, seeds, Cli.Common.Seed],
                    r => ProgressDisplay.Run("tune", prog => ScaleOut.TrainerEntry.Train(r, Progress(prog),
                        dir => Cli.ConfigureLogging(p.GetValue(Cli.Common.Verbose), Path.Combine(dir, "log.jsonl")))));
            }
            if (p.GetValue(slurm.Slurm)) throw new BadInputException("--slurm: give --seeds (one array task per seed)");
            var r = Build(p, path, keyed, p.GetValue(resume));
            var cfg = TuneConfig.From(r);
            r.CheckAllUsed();
            DefaultData.Ensure(cfg.Data, cfg.World);
            var result = ProgressDisplay.Run("tune", prog => DebiasTrainer.Run(cfg, r, Progress(prog),
                onRunDir: dir => Cli.ConfigureLogging(p.GetValue(Cli.Common.Verbose), Path.Combine(dir, "log.jsonl"))));
            Console.WriteLine();
            Console.WriteLine($"stopped: {result.Stop.Text}");
            Console.WriteLine($"steps: {result.Steps}, best adapter from step {result.BestStep}, {result.Elapsed.TotalMinutes:F1} min");
            Console.WriteLine($"run folder: {result.RunDir}");
            var cmp = Path.Combine(result.RunDir, "comparison.md");
            if (File.Exists(cmp)) Console.WriteLine(File.ReadAllText(cmp));
            if (VlaBias.Evaluation.ResidualBias.ForRun(result.RunDir) is { } residual) Console.WriteLine(residual.Verdict);
            if (p.GetValue(requireThreshold) && !result.ThresholdReached) return ExitCodes.MissedGoal;
            return result.Stop.Kind == StopKind.NonFiniteLoss ? ExitCodes.MissedGoal : ExitCodes.Ok;
        }));
        return cmd;
    }

    private static SyncProgress<TuneProgress> Progress(IProgress<ProgressDisplay.Update> prog) => new(x =>
        prog.Report(new(x.Step, x.MaxSteps, string.Join(" ", x.Terms.Select(t => $"{t.Key} {t.Value:F4}")) +
            (x.Last is null ? "" : $" | val bias {x.Last.Bias:F4} cider {x.Last.CiderD:F3}"))));

    /// <summary>The recipe file with the command line's values over it (a fresh one per call: a sweep builds one per seed).</summary>
    private static Recipe Build(ParseResult p, string path, List<(string key, Option<string?> option)> keyed, bool resume)
    {
        var r = Recipe.Load(path);
        foreach (var (key, o) in keyed) r.Override(key, p.GetValue(o));
        if (resume)
        {
            r.Override("resume", "true");
            if (p.GetValue(keyed.First(k => k.key == "name").option) is null)
                r.Override("name", RunFolder.LatestName(r.Str("runs_dir", "checkpoints/runs")));
        }
        if (p.GetResult(Cli.Common.Seed) is { Implicit: false }) r.Override("seed", p.GetValue(Cli.Common.Seed));
        return r;
    }
}
