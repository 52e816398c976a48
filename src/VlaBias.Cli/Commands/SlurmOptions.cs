using VlaBias.Data;
using System.CommandLine;
using System.CommandLine.Parsing;
using VlaBias.Evaluation;
using VlaBias.Recipes;
using VlaBias.Reproducibility;
using VlaBias.ScaleOut;
using VlaBias.Training;

namespace VlaBias.Cli.Commands;

/// <summary>
/// The SLURM options of eval and tune (library: ScaleOut/), and the two scale-out paths: `eval --slurm --shards N`
/// and `tune --seeds …` (with or without --slurm). Tasks get the user's own options, forwarded as typed.
/// </summary>
public sealed class SlurmOptions
{
    public readonly Option<bool> Slurm = new("--slurm") { Description = "Run as a SLURM job array: write the sbatch scripts (and submit them with --submit)" };
    public readonly Option<string?> Partition = new("--partition") { Description = "SLURM partition (sbatch --partition)" };
    public readonly Option<string?> Time = new("--time") { Description = "SLURM time limit per task, e.g. 02:00:00 (sbatch --time)" };
    public readonly Option<string?> Gres = new("--gres") { Description = "Generic resources per task, e.g. gpu:1 (sbatch --gres; not asked for the merge/summary job)" };
    public readonly Option<int?> CpusPerTask = new("--cpus-per-task") { Description = "Cores per task; the task's --threads follows it unless --threads is given" };
    public readonly Option<string?> Mem = new("--mem") { Description = "Memory per task, e.g. 16G (sbatch --mem)" };
    public readonly Option<string?> Account = new("--account") { Description = "SLURM account to charge (sbatch --account)" };
    public readonly Option<bool> Submit = new("--submit") { Description = "Submit the scripts with sbatch and print the job ids (without it they are only written and printed)" };
    public readonly Option<bool> Wait = new("--wait") { Description = "With --submit: wait until the jobs have left the queue; exit 1 naming each failed task and its log" };
    public readonly Option<int?>? Shards;

    private Option[] Own => new Option[] { Slurm, Partition, Time, Gres, CpusPerTask, Mem, Account, Submit, Wait }.Concat(Shards is null ? [] : [Shards]).ToArray();

    public SlurmOptions(Command cmd, bool shards)
    {
        if (shards) Shards = new Option<int?>("--shards") { Description = "With --slurm: split the evaluation into N shards, one array task each, and merge them" };
        foreach (var o in Own) cmd.Options.Add(o);
    }

    private SlurmResources Resources(ParseResult p) =>
        new(p.GetValue(Partition), p.GetValue(Time), p.GetValue(Gres), p.GetValue(CpusPerTask), p.GetValue(Mem), p.GetValue(Account));

    private static bool Given(ParseResult p, Option o) => p.GetResult(o) is { Implicit: false };

    /// <summary>The options the user typed (as typed), except <paramref name="leaveOut"/> and the SLURM options.</summary>
    private List<string> Forwarded(ParseResult p, IEnumerable<Option> leaveOut)
    {
        var skip = leaveOut.Concat(Own).ToHashSet();
        var args = new List<string>();
        foreach (var r in p.CommandResult.Children.OfType<OptionResult>())
        {
            if (r.Implicit || skip.Contains(r.Option)) continue;
            args.Add(r.IdentifierToken?.Value ?? r.Option.Name);
            args.AddRange(r.Tokens.Select(t => t.Value));
        }
        return args;
    }

    /// <summary>`vlatune eval … --slurm --shards N`; returns the exit code. Refuses --shards without --slurm.</summary>
    public int? Eval(ParseResult p, Suite suite, string model, string? adapter, VlaBias.Methods.Interventions methods, string outDir, int? limit, IEnumerable<Option> leaveOut)
    {
        if (!p.GetValue(Slurm))
        {
            if (Shards is not null && Given(p, Shards)) throw new BadInputException("--shards: only with --slurm (one shard here: --shard i/n)");
            return null;
        }
        var shards = p.GetValue(Shards!) ?? throw new BadInputException("--slurm: give --shards N (the number of array tasks)");
        var expected = new ShardExpectation(EvalRunner.Identity(model, adapter, methods), suite.SourcePath, suite.Split, suite.Bootstrap, limit);
        var plan = ShardedEval.Plan(new ShardedEvalRequest(outDir, shards, Forwarded(p, leaveOut), expected, Resources(p), VlatuneLauncher.Current(), Given(p, Cli.Common.Threads)));
        Console.Error.WriteLine($"eval: {plan.Done.Count()} of {shards} shards done, {plan.Missing.Count} to run{(plan.FollowNeeded ? ", then the merge" : "")}");
        return Execute(p, plan, s => ShardedEval.Wait(plan, s, expected, TimeSpan.FromSeconds(2)), "merge");
    }

    /// <summary>`vlatune tune … --seeds …`: one run per seed (array tasks with --slurm), then the summary.</summary>
    public int Sweep(ParseResult p, string seedText, Func<Recipe> recipe, string? recipePath, bool requireThreshold, IEnumerable<Option> leaveOut,
        Func<Recipe, TuneResult> train)
    {
        var seeds = SeedSweep.ParseSeeds(seedText);
        var r0 = recipe();
        var cfg = TuneConfig.From(r0);
        r0.CheckAllUsed();
        if (!cfg.FinalEval) throw new BadInputException("final_eval: a seed sweep summarizes the test-split evaluation of every seed; leave final_eval true");
        string sweep = Path.Combine(cfg.RunsDir, cfg.Name ?? "sweep-" + DateTime.Now.ToString("yyyyMMdd-HHmmss"));
        string command = Reproducibility.Provenance.CommandLine(Environment.GetCommandLineArgs().Skip(1));
        SeedSweep.WriteSweepFile(sweep, seeds, command, recipePath);
        DefaultData.Ensure(cfg.Data, cfg.World);
        Console.Error.WriteLine($"tune: sweep of {seeds.Count} seeds in {sweep}");
        if (p.GetValue(Slurm))
        {
            var plan = SeedSweep.PlanSlurm(new SweepSlurmRequest(sweep, seeds, Forwarded(p, leaveOut), Resources(p), VlatuneLauncher.Current(), Given(p, Cli.Common.Threads)));
            Console.Error.WriteLine($"tune: {plan.Done.Count()} of {seeds.Count} seeds done, {plan.Missing.Count} to run{(plan.FollowNeeded ? ", then the summary" : "")}");
            int code = Execute(p, plan, s => SeedSweep.Wait(plan, s, seeds, TimeSpan.FromSeconds(5)), "summary");
            return code == ExitCodes.Ok && p.GetValue(Wait) && requireThreshold && SweepSummary.Load(seeds.Select(s => SeedSweep.RunDir(sweep, s)).ToList()).Reached < seeds.Count
                ? ExitCodes.MissedGoal : code;
        }
        var summary = SeedSweep.RunSequential(sweep, seeds, recipe, train, new SyncProgress<string>(m => Serilog.Log.Information("tune: {Message}", m)));
        SweepProvenance.Record(sweep, Provenance.CommandLine(Environment.GetCommandLineArgs().Skip(1)));
        Console.WriteLine(summary.Markdown());
        Console.WriteLine($"written: {Path.Combine(sweep, SweepSummary.MarkdownFile)}");
        return requireThreshold && summary.Reached < seeds.Count ? ExitCodes.MissedGoal : ExitCodes.Ok;
    }

    /// <summary>The last lines of a failed job's log, where the error usually is.</summary>
    private static void Tail(string log)
    {
        if (!File.Exists(log)) return;
        foreach (var line in File.ReadLines(log).Where(l => l.Trim().Length > 0).TakeLast(4)) Console.Error.WriteLine($"  | {line}");
    }

    /// <summary>Prints the scripts (no --submit), or submits them and prints the job ids, and with --wait reports the outcome.</summary>
    private int Execute(ParseResult p, ArrayPlan plan, Func<Submission, WaitOutcome> wait, string follow)
    {
        foreach (var n in plan.Notes) Console.Error.WriteLine($"note: {n}");
        if (plan.Missing.Count == 0 && !plan.FollowNeeded)
        {
            Console.WriteLine($"nothing to run: every task and the {follow} of {plan.Folder} are done");
            return ExitCodes.Ok;
        }
        if (!p.GetValue(Submit))
        {
            if (p.GetValue(Wait)) throw new BadInputException("--wait: only with --submit");
            if (plan.Missing.Count > 0) Console.WriteLine($"# {plan.ArrayScript}\n{plan.ArrayText}");
            if (plan.FollowNeeded) Console.WriteLine($"# {plan.FollowScript}\n{plan.FollowText}");
            Console.WriteLine("# submit with:");
            foreach (var c in plan.SubmitCommands()) Console.WriteLine(c);
            return ExitCodes.Ok;
        }
        var s = ArrayJobs.Submit(plan);
        if (s.ArrayJob is not null)
            Console.WriteLine($"submitted array job {s.ArrayJob}: {string.Join(", ", s.Tasks.Select(k => plan.TaskNames[k]))} (task logs {plan.LogDir}/{plan.Name}-{s.ArrayJob}_<task>.out)");
        if (s.FollowJob is not null)
            Console.WriteLine($"submitted {follow} job {s.FollowJob}{(s.ArrayJob is null ? "" : $" (after array job {s.ArrayJob} succeeds)")} (log {plan.FollowLog(s.FollowJob)})");
        if (!p.GetValue(Wait)) return ExitCodes.Ok;
        var outcome = wait(s);
        foreach (var (task, log) in outcome.Failed)
        {
            Console.Error.WriteLine($"failed: {task}: {(File.Exists(log) ? $"see {log}" : "no log (the task never started: cancelled or not scheduled)")}");
            Tail(log);
        }
        if (!outcome.FollowDone)
        {
            Console.Error.WriteLine($"failed: the {follow} did not finish{(outcome.FollowLog is string l && File.Exists(l) ? $": see {l}" : " (it never started: a task it depends on failed or was cancelled)")}; run the same command again to resubmit what is missing");
            if (outcome.FollowLog is not null) Tail(outcome.FollowLog);
        }
        if (outcome.Failed.Count > 0 || !outcome.FollowDone) return ExitCodes.MissedGoal;
        Console.WriteLine($"done: {plan.Folder}");
        return ExitCodes.Ok;
    }
}
