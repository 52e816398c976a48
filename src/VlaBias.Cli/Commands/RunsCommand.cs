using System.CommandLine;
using VlaBias.ScaleOut;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune runs summarize: finished tune runs (one per seed) → mean ± sd table and residual bias (ScaleOut/SweepSummary.cs).</summary>
public static class RunsCommand
{
    public static Command Create()
    {
        var cmd = new Command("runs", "Work with finished tune run folders.");
        var dirs = new Argument<string[]>("runs") { Description = "Run folders of `vlatune tune` (eval/tuned and trainer_state.json), one per seed", Arity = ArgumentArity.OneOrMore };
        var outDir = new Option<string?>("--out") { Description = "Write summary.md, summary.json and summary.md.provenance.json here" };
        var summarize = new Command("summarize", "Every test-split figure as mean ± sd over the runs with each seed's value, the seeds that reached the " +
            "threshold, and the probe attributes that keep a significant gap in the stereotyped direction.\n\n" +
            "Examples:\n  vlatune runs summarize checkpoints/runs/sweep/seed-0 checkpoints/runs/sweep/seed-1 checkpoints/runs/sweep/seed-2\n" +
            "  vlatune runs summarize checkpoints/runs/sweep/seed-* --out checkpoints/runs/sweep");
        summarize.Arguments.Add(dirs);
        summarize.Options.Add(outDir);
        Cli.Common.AddTo(summarize);
        summarize.SetAction(p => Cli.Run(p, () =>
        {
            var runs = p.GetValue(dirs)!;
            var summary = SweepSummary.Load(runs);
            if (p.GetValue(outDir) is string o)
            {
                var md = summary.Write(o);
                SweepProvenance.Record(o, VlaBias.Reproducibility.Provenance.CommandLine(Environment.GetCommandLineArgs().Skip(1)), runs);
                Console.Error.WriteLine($"written: {md}");
            }
            Console.WriteLine(summary.Markdown());
            return ExitCodes.Ok;
        }));
        cmd.Subcommands.Add(summarize);
        return cmd;
    }
}
