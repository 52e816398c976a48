// `vlatune eval … --slurm --shards N`: one evaluation split into N shards, run as a SLURM job array, joined by a merge
// job that starts only when every task succeeded (ArrayJobs). Folders, all under the --out folder:
//   OUT/shards/<i>-of-<N>/   array task i−1 runs `vlatune eval … --shard i/N` into it (shard.json, samples.jsonl, cache.jsonl)
//   OUT/slurm/               eval.sbatch, eval-after.sbatch (the merge), logs/, jobs.json
//   OUT/metrics.json …       written by the merge (`vlatune eval merge`), the same as an unsharded run's
// A shard is done when its shard.json says it was made by the same model, adapter, methods, suite, split, bootstrap and
// limit. Planning again writes an array of only the shards not done; a cancelled or failed task leaves its cache, so
// its rerun answers only what is missing.
using System.Text.Json.Nodes;
using VlaBias.Evaluation;

namespace VlaBias.ScaleOut;

/// <summary>What a finished shard's shard.json must say for it to count as done (see EvalRunner.Run).</summary>
public sealed record ShardExpectation(string Identity, string Suite, string Split, int Bootstrap, int? Limit);

/// <param name="EvalArgs">the user's eval options without --out, --shard and the SLURM options (forwarded to every task)</param>
/// <param name="ThreadsGiven">false: each task runs with --threads $SLURM_CPUS_PER_TASK</param>
public sealed record ShardedEvalRequest(string Out, int Shards, IReadOnlyList<string> EvalArgs, ShardExpectation Expected,
    SlurmResources Resources, VlatuneLauncher Vlatune, bool ThreadsGiven = false);

public static class ShardedEval
{
    public const string ShardsDir = "shards", Name = "eval";

    public static string ShardDir(string outDir, int index, int count) => Path.Combine(Path.GetFullPath(outDir), ShardsDir, $"{index}-of-{count}");

    /// <summary>Whether the folder holds a finished shard of exactly this evaluation.</summary>
    public static bool IsDone(string shardDir, int index, int count, ShardExpectation e)
    {
        var f = Path.Combine(shardDir, EvalRunner.ShardFile);
        if (!File.Exists(f) || !File.Exists(Path.Combine(shardDir, EvalRunner.SamplesFile))) return false;
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(f)) as JsonObject;
            return o is not null && o["index"]?.GetValue<int>() == index && o["count"]?.GetValue<int>() == count
                && o["identity"]?.GetValue<string>() == e.Identity && o["suite"]?.GetValue<string>() == e.Suite
                && o["split"]?.GetValue<string>() == e.Split && o["bootstrap"]?.GetValue<int>() == e.Bootstrap
                && o["limit"]?.GetValue<int?>() == e.Limit;
        }
        catch (Exception x) when (x is System.Text.Json.JsonException or InvalidOperationException or FormatException) { return false; }
    }

    /// <summary>Finds the shards left to do and writes the array script (only those) and the merge script.</summary>
    public static ArrayPlan Plan(ShardedEvalRequest req)
    {
        if (req.Shards < 2) throw new BadInputException($"--shards: must be at least 2, got {req.Shards} (one shard is a plain `vlatune eval`)");
        string outDir = Path.GetFullPath(req.Out);
        ArrayJobs.CheckPath(req.Vlatune.WorkingDirectory);
        var (arrayScript, followScript) = ArrayJobs.Paths(outDir, Name);
        string logs = Path.Combine(outDir, ArrayJobs.SlurmDir, "logs");
        var names = Enumerable.Range(1, req.Shards).Select(i => $"shard {i}/{req.Shards}").ToList();
        var missing = new List<int>();
        var notes = new List<string>();
        for (int i = 1; i <= req.Shards; i++)
        {
            string d = ShardDir(outDir, i, req.Shards);
            if (IsDone(d, i, req.Shards, req.Expected)) continue;
            missing.Add(i - 1);
            if (File.Exists(Path.Combine(d, EvalRunner.ShardFile))) notes.Add($"shard {i}/{req.Shards} was made with other settings and is redone");
        }
        var metrics = new FileInfo(Path.Combine(outDir, EvalRunner.MetricsFile));
        bool mergeNeeded = missing.Count > 0 || !metrics.Exists || Enumerable.Range(1, req.Shards).Any(i =>
            File.GetLastWriteTimeUtc(Path.Combine(ShardDir(outDir, i, req.Shards), EvalRunner.SamplesFile)) > metrics.LastWriteTimeUtc);

        var r = req.Resources.Validated();
        var taskArgs = new List<string>(req.EvalArgs)
        {
            "--out", SlurmScript.Expand(Path.Combine(outDir, ShardsDir) + "/${SHARD}-of-" + req.Shards), "--shard", SlurmScript.Expand("${SHARD}/" + req.Shards),
        };
        if (!req.ThreadsGiven) taskArgs.AddRange(["--threads", SlurmScript.Expand("${SLURM_CPUS_PER_TASK:-0}")]);
        string arrayText = SlurmScript.Build(
            $"Written by `vlatune eval --slurm --shards {req.Shards}`: array task k evaluates shard k+1 of {req.Shards} into {outDir}/{ShardsDir}/<k+1>-of-{req.Shards}/.\n" +
            $"Log of task k: {logs}/{Name}-<job>_<k>.out. Rewritten (for the shards still missing) each time that command runs.",
            ArrayJobs.ArrayDirectives(Name, missing, logs, req.Vlatune, r),
            ["SHARD=$((SLURM_ARRAY_TASK_ID + 1))", SlurmScript.CommandLine(req.Vlatune, ["eval", .. taskArgs])]);
        var mergeArgs = new List<string> { "eval", "merge" };
        for (int i = 1; i <= req.Shards; i++) mergeArgs.Add(ShardDir(outDir, i, req.Shards));
        mergeArgs.AddRange(["--out", outDir]);
        string mergeText = SlurmScript.Build(
            $"Written by `vlatune eval --slurm --shards {req.Shards}`: joins the {req.Shards} shards into {outDir}/ (metrics.json, report.md, report.html).\n" +
            "Submitted with --dependency=afterok:<array job>, so it starts only when every shard succeeded.",
            ArrayJobs.FollowDirectives(Name, logs, req.Vlatune, r),
            [SlurmScript.CommandLine(req.Vlatune, mergeArgs)]);
        AtomicFile.WriteAllText(arrayScript, arrayText);
        AtomicFile.WriteAllText(followScript, mergeText);
        return new ArrayPlan(outDir, Name, names, missing, mergeNeeded, arrayScript, followScript, arrayText, mergeText, notes);
    }

    /// <summary>Waits for a submission; failed entries name the shards without a result and their task logs.</summary>
    public static WaitOutcome Wait(ArrayPlan plan, Submission s, ShardExpectation e, TimeSpan poll, TimeSpan? timeout = null)
    {
        int n = plan.TaskNames.Count;
        return ArrayJobs.Wait(plan, s, k => IsDone(ShardDir(plan.Folder, k + 1, n), k + 1, n, e), Path.Combine(plan.Folder, EvalRunner.MetricsFile), poll, timeout);
    }
}
