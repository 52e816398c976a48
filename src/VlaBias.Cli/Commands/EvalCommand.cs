using System.CommandLine;
using Serilog;
using VlaBias.Data;
using VlaBias.Evaluation;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune eval: runs an evaluation suite on a model (+ adapter); eval merge joins shards.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder", DefaultValueFactory = _ => "checkpoints/tiny-base" };
        var adapter = new Option<string?>("--adapter") { Description = "LoRA adapter folder (PEFT format) applied to the model" };
        var suite = new Option<string>("--suite") { Description = "Suite YAML", DefaultValueFactory = _ => "eval/suites/scenes.yaml" };
        var outDir = new Option<string>("--out") { Description = "Output folder (metrics.json, samples.jsonl, report.md, report.html, plots)", Required = true };
        var shard = new Option<string?>("--shard") { Description = "Evaluate part i of n (i/n); join the parts with `vlatune eval merge`" };
        var noCache = new Option<bool>("--no-cache") { Description = "Ignore and do not write the result cache (OUT/cache.jsonl)" };
        var split = new Option<string?>("--split") { Description = "Override the suite's split (e.g. val)" };
        var bootstrap = new Option<int?>("--bootstrap") { Description = "Bootstrap resamples for the CIs (suite default 1000)" };
        var limit = new Option<int?>("--limit") { Description = "Evaluate only the first N items (quick look)" };
        var dtype = ModelOptions.DType();
        var cmd = new Command("eval", "Run an evaluation suite: bias metrics and captioning accuracy with bootstrap 95% CIs.\n\n" +
            "Examples:\n  vlatune eval --model checkpoints/tiny-base --suite eval/suites/scenes.yaml --out eval/runs/base\n" +
            "  vlatune eval --model checkpoints/tiny-base --adapter checkpoints/runs/latest --out eval/runs/tuned\n" +
            "  vlatune eval --model checkpoints/tiny-base --steer eval/methods/steer.safetensors --out eval/runs/steer\n" +
            "  vlatune eval --model checkpoints/tiny-base --soft-prompt checkpoints/runs/prompt --out eval/runs/prompt\n" +
            "  vlatune eval --model checkpoints/tiny-base --penalty 2 --beams 3 --out eval/runs/penalty\n" +
            "  vlatune eval --out /tmp/e1 --shard 1/2 && vlatune eval --out /tmp/e2 --shard 2/2 && vlatune eval merge /tmp/e1 /tmp/e2 --out /tmp/e\n" +
            "  vlatune eval --out /shared/e --slurm --shards 8 --partition cpu --time 01:00:00 --cpus-per-task 4 --submit   (docs/cluster.md)");
        var beams = new Option<int>("--beams") { Description = "Beam width for captions (1 = greedy, the suite's default)", DefaultValueFactory = _ => 1 };
        foreach (var o in new Option[] { model, adapter, suite, outDir, shard, noCache, split, bootstrap, limit, beams, dtype }) cmd.Options.Add(o);
        var methodOptions = new MethodOptions(cmd, decoding: true);
        var slurm = new SlurmOptions(cmd, shards: true);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var s = Suite.Load(p.GetValue(suite)!, r =>
            {
                r.Override("split", p.GetValue(split));
                r.Override("bootstrap", Suite.BootstrapOption(p.GetValue(bootstrap)));
            });
            DefaultData.Ensure(s.Manifest, s.World);
            if (p.GetValue(shard) is not null && p.GetValue(slurm.Slurm)) throw new BadInputException("--shard: not with --slurm (give --shards N; each task gets its --shard)");
            if (slurm.Eval(p, s, p.GetValue(model)!, p.GetValue(adapter), methodOptions.Read(p, p.GetValue(beams)), p.GetValue(outDir)!, p.GetValue(limit), [outDir, shard]) is int code) return code;
            var vla = Vla.Load(p.GetValue(model)!, p.GetValue(adapter), dtype: ModelOptions.ResolveDType(p.GetValue(dtype), p.GetValue(model)!));
            var methods = methodOptions.Read(p, p.GetValue(beams));
            using var applied = methods.Apply(vla);
            var req = new EvalRequest(p.GetValue(model)!, p.GetValue(adapter), s, p.GetValue(outDir)!, Shard.Parse(p.GetValue(shard)), !p.GetValue(noCache), p.GetValue(limit), methods);
            var outcome = ProgressDisplay.Run("eval", prog => EvalRunner.Run(vla, req, new SyncProgress<(int done, int total)>(x => prog.Report(new(x.done, x.total, "")))));
            Log.Information("eval: {Samples} samples in {Seconds:F1} s → {Out}", outcome.Samples, outcome.Elapsed.TotalSeconds, outcome.Out);
            if (outcome.Metrics is not null) Console.WriteLine(File.ReadAllText(Path.Combine(outcome.Out, "report.md")));
            return ExitCodes.Ok;
        }));
        cmd.Subcommands.Add(Merge());
        cmd.Subcommands.Add(Report());
        return cmd;
    }

    private static Command Report()
    {
        var dir = new Argument<string>("folder") { Description = "An eval folder (metrics.json + samples.jsonl) or a tune run folder (eval/base + eval/tuned)" };
        var suite = new Option<string?>("--suite") { Description = "Suite YAML the eval folder was made with (default: the one recorded in report_context.json)" };
        var cmd = new Command("report", "Rewrite report.md, report.html and plots/ of an eval folder, or the base-vs-tuned report.html of a run folder.\n\n" +
            "Examples:\n  vlatune eval report eval/runs/base\n  vlatune eval report checkpoints/runs/latest");
        cmd.Arguments.Add(dir);
        cmd.Options.Add(suite);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            string d = p.GetValue(dir)!;
            if (!Directory.Exists(d)) throw new BadInputException($"{d}: folder not found");
            if (Directory.Exists(Path.Combine(d, "eval", "tuned")) && !File.Exists(Path.Combine(d, EvalRunner.MetricsFile))) Reports.WriteRunReport(d);
            else Reports.RebuildEvalReport(d, p.GetValue(suite));
            Console.WriteLine(Path.Combine(d, "report.html"));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static Command Merge()
    {
        var dirs = new Argument<string[]>("shards") { Description = "Shard output folders (all of 1..n)", Arity = ArgumentArity.OneOrMore };
        var outDir = new Option<string>("--out") { Description = "Output folder of the merged evaluation", Required = true };
        var cmd = new Command("merge", "Join the samples of sharded evaluation runs and compute the metrics.\n\nExample:\n  vlatune eval merge /tmp/e1 /tmp/e2 --out /tmp/e");
        cmd.Arguments.Add(dirs);
        cmd.Options.Add(outDir);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var outcome = EvalRunner.Merge(p.GetValue(dirs)!, p.GetValue(outDir)!);
            Log.Information("eval merge: {Samples} samples → {Out}", outcome.Samples, outcome.Out);
            Console.WriteLine(File.ReadAllText(Path.Combine(outcome.Out, "report.md")));
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
