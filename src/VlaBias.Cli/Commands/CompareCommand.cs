using System.CommandLine;
using Serilog;
using VlaBias.Evaluation;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune compare A B [C…]: metric table of eval runs with deltas against the first and significance marks;
/// --out writes comparison.md, comparison.html (self-contained) and the plots.</summary>
public static class CompareCommand
{
    public static Command Create()
    {
        var runs = new Argument<string[]>("runs")
        {
            Description = "Eval folders (with metrics.json) or tune run folders (their eval/tuned is used); the first is the reference",
            Arity = ArgumentArity.OneOrMore,
        };
        var names = new Option<string?>("--names") { Description = "Comma-separated display names, one per folder (default: the folder names)" };
        var outDir = new Option<string?>("--out") { Description = "Write comparison.md, comparison.html and plots/ to this folder" };
        var cmd = new Command("compare", "Compare two or more evaluation runs: each metric with its 95% CI, the delta against the first run, " +
            "`*` where the two intervals do not overlap.\n\n" +
            "A run folder as the only argument compares its eval/base with its eval/tuned.\n\n" +
            "Examples:\n  vlatune compare eval/runs/base eval/runs/tuned\n" +
            "  vlatune compare checkpoints/runs/a checkpoints/runs/b --names lr1e-4,lr1e-3 --out /tmp/cmp\n" +
            "  vlatune compare checkpoints/runs/latest --out /tmp/cmp");
        cmd.Arguments.Add(runs);
        cmd.Options.Add(names);
        cmd.Options.Add(outDir);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var folders = Resolve(p.GetValue(runs)!, p.GetValue(names));
            Console.WriteLine(Comparison.Table(folders.Select(f => (f.Name, f.Metrics)).ToList()));
            if (p.GetValue(outDir) is string o)
            {
                Reports.WriteComparison(o, folders, $"Comparison: {string.Join(" vs ", folders.Select(f => f.Name))}");
                Log.Information("compare: wrote {Md}, {Html} and {Plots}", Path.Combine(o, "comparison.md"), Path.Combine(o, "comparison.html"), Path.Combine(o, Reports.PlotsDir));
            }
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    /// <summary>Folder arguments → eval folders: an eval folder as is, a run folder → its eval/tuned (or, when it is
    /// the only argument, its eval/base and eval/tuned).</summary>
    public static List<EvalFolder> Resolve(IReadOnlyList<string> args, string? names)
    {
        var dirs = new List<(string dir, string name)>();
        foreach (var a in args)
        {
            if (!Directory.Exists(a)) throw new BadInputException($"{a}: folder not found (expected an eval folder or a run folder)");
            string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(a)));
            if (File.Exists(Path.Combine(a, EvalRunner.MetricsFile))) dirs.Add((a, name));
            else if (File.Exists(Path.Combine(a, "eval", "tuned", EvalRunner.MetricsFile)))
            {
                if (args.Count == 1 && File.Exists(Path.Combine(a, "eval", "base", EvalRunner.MetricsFile)))
                {
                    dirs.Add((Path.Combine(a, "eval", "base"), "base"));
                    dirs.Add((Path.Combine(a, "eval", "tuned"), "tuned"));
                }
                else dirs.Add((Path.Combine(a, "eval", "tuned"), name));
            }
            else throw new BadInputException($"{a}: no {EvalRunner.MetricsFile} (expected an eval folder from `vlatune eval`, or a run folder with eval/tuned/{EvalRunner.MetricsFile})");
        }
        if (names is not null)
        {
            var list = names.Split(',', StringSplitOptions.TrimEntries);
            if (list.Length != dirs.Count) throw new BadInputException($"--names: {list.Length} names for {dirs.Count} runs (give one per run, comma-separated)");
            dirs = dirs.Select((d, i) => (d.dir, list[i])).ToList();
        }
        if (dirs.Count < 2) throw new BadInputException("compare: need at least two eval runs (or one run folder with eval/base and eval/tuned)");
        // Same folder name twice (e.g. two runs' eval/tuned): suffix with the position so the table columns differ.
        var dup = dirs.GroupBy(d => d.name).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet();
        return dirs.Select((d, i) => EvalFolder.Load(d.dir, dup.Contains(d.name) ? $"{d.name}#{i + 1}" : d.name)).ToList();
    }
}
