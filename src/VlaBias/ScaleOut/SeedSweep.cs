// `vlatune tune … --seeds 0,1,2,3,4 [--slurm …]`: the same recipe once per seed, then one summary (SweepSummary).
// Folders: SWEEP = <runs_dir>/<name> (name defaults to sweep-<time>; give --name to continue a sweep)
//   SWEEP/seed-<s>/          an ordinary run folder (adapter, trainer_state.json, eval/base, eval/tuned, report)
//   SWEEP/summary.md, .json  the summary;  SWEEP/sweep.json: the command and recipe (provenance of the summary)
//   SWEEP/slurm/             with --slurm: tune.sbatch (array task k trains seed k of the list), tune-after.sbatch
//                            (`vlatune runs summarize`, afterok on the array), logs/, jobs.json
// A seed is done when its run has trainer_state.json and eval/tuned/metrics.json; running the command again skips done
// seeds and continues a seed with a checkpoint (--resume). Without --slurm the seeds run one after another here.
using System.Globalization;
using System.Text.Json.Nodes;
using VlaBias.Recipes;
using VlaBias.Training;

namespace VlaBias.ScaleOut;

/// <param name="TuneArgs">the user's tune options without --seeds, --seed, --name, --runs-dir, --resume and the SLURM options</param>
public sealed record SweepSlurmRequest(string SweepDir, IReadOnlyList<long> Seeds, IReadOnlyList<string> TuneArgs, SlurmResources Resources,
    VlatuneLauncher Vlatune, bool ThreadsGiven = false);

public static class SeedSweep
{
    public const string Name = "tune", SweepFile = "sweep.json";

    /// <summary>"0,1,2,3,4" or "0-4" (or both, "0-2,7"); duplicates are an error.</summary>
    public static IReadOnlyList<long> ParseSeeds(string text)
    {
        var seeds = new List<long>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var range = part.Split('-', 2);
            if (range.Length == 2 && long.TryParse(range[0], NumberStyles.None, CultureInfo.InvariantCulture, out var a)
                && long.TryParse(range[1], NumberStyles.None, CultureInfo.InvariantCulture, out var b) && a <= b && b - a < 10_000)
                for (long s = a; s <= b; s++) seeds.Add(s);
            else if (long.TryParse(part, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var s)) seeds.Add(s);
            else throw new BadInputException($"--seeds: '{part}' is not a seed or a range a-b (e.g. --seeds 0,1,2,3,4 or --seeds 0-4)");
        }
        if (seeds.Count == 0) throw new BadInputException("--seeds: no seeds given");
        var dupes = seeds.GroupBy(s => s).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        if (dupes.Count > 0) throw new BadInputException($"--seeds: seed {string.Join(", ", dupes)} given twice");
        return seeds;
    }

    public static string RunName(long seed) => $"seed-{seed}";
    public static string RunDir(string sweepDir, long seed) => Path.Combine(sweepDir, RunName(seed));

    public static bool IsDone(string runDir) =>
        File.Exists(Path.Combine(runDir, "trainer_state.json")) && File.Exists(Path.Combine(runDir, "eval", "tuned", Evaluation.EvalRunner.MetricsFile));

    /// <summary>A checkpoint to continue from (the trainer swaps checkpoints through CHECKPOINT.old, so either counts).</summary>
    public static bool CanResume(string runDir)
    {
        string c = Path.Combine(runDir, TrainerEntry.CheckpointDir);
        return File.Exists(Path.Combine(c, "state.json")) || File.Exists(Path.Combine(c + ".old", "state.json"));
    }

    /// <summary>Sets what makes a recipe one seed's run of the sweep (the command line's --seed, --name, --runs-dir give way).</summary>
    public static Recipe ForSeed(Recipe r, string sweepDir, long seed)
    {
        r.Override("runs_dir", sweepDir);
        r.Override("name", RunName(seed));
        r.Override("seed", seed);
        r.Override("resume", CanResume(RunDir(sweepDir, seed)) ? "true" : "false");
        return r;
    }

    /// <summary>Records the command and recipe of the sweep (read by `runs summarize` for the summary's provenance).</summary>
    public static void WriteSweepFile(string sweepDir, IReadOnlyList<long> seeds, string command, string? recipe)
    {
        Directory.CreateDirectory(sweepDir);
        AtomicFile.WriteAllText(Path.Combine(sweepDir, SweepFile), new JsonObject
        {
            ["command"] = command, ["recipe"] = recipe is null ? null : Path.GetFullPath(recipe), ["working_directory"] = Environment.CurrentDirectory,
            ["seeds"] = new JsonArray(seeds.Select(s => (JsonNode)s).ToArray()),
        }.ToJsonString(JsonFormat.Pretty));
    }

    /// <summary>
    /// Runs every seed not yet done, one after another, then writes the summary. <paramref name="recipe"/> makes a
    /// fresh recipe (file + command line) for each seed; <paramref name="train"/> runs one (default TrainerEntry.Train).
    /// </summary>
    public static SweepSummary RunSequential(string sweepDir, IReadOnlyList<long> seeds, Func<Recipe> recipe,
        Func<Recipe, TuneResult>? train = null, IProgress<string>? progress = null)
    {
        train ??= r => TrainerEntry.Train(r);
        foreach (var seed in seeds)
        {
            string dir = RunDir(sweepDir, seed);
            if (IsDone(dir)) { progress?.Report($"seed {seed}: done already ({dir})"); continue; }
            progress?.Report($"seed {seed}: {(CanResume(dir) ? "continuing" : "training")} ({dir})");
            train(ForSeed(recipe(), sweepDir, seed));
        }
        var summary = SweepSummary.Load(seeds.Select(s => RunDir(sweepDir, s)).ToList());
        summary.Write(sweepDir);
        return summary;
    }

    /// <summary>Writes the array script (the seeds not yet done) and the summary script.</summary>
    public static ArrayPlan PlanSlurm(SweepSlurmRequest req)
    {
        string sweep = Path.GetFullPath(req.SweepDir);
        ArrayJobs.CheckPath(req.Vlatune.WorkingDirectory);
        var (arrayScript, followScript) = ArrayJobs.Paths(sweep, Name);
        string logs = Path.Combine(sweep, ArrayJobs.SlurmDir, "logs");
        var missing = Enumerable.Range(0, req.Seeds.Count).Where(k => !IsDone(RunDir(sweep, req.Seeds[k]))).ToList();
        var summary = new FileInfo(Path.Combine(sweep, SweepSummary.MarkdownFile));
        bool summaryNeeded = missing.Count > 0 || !summary.Exists || req.Seeds.Any(s =>
            File.GetLastWriteTimeUtc(Path.Combine(RunDir(sweep, s), "eval", "tuned", Evaluation.EvalRunner.MetricsFile)) > summary.LastWriteTimeUtc);
        var notes = missing.Where(k => CanResume(RunDir(sweep, req.Seeds[k]))).Select(k => $"seed {req.Seeds[k]} continues from its checkpoint").ToList();

        var r = req.Resources.Validated();
        var args = new List<string> { "tune" };
        args.AddRange(req.TuneArgs);
        args.AddRange(["--runs-dir", sweep, "--name", SlurmScript.Expand("seed-${SEED}"), "--seed", SlurmScript.Expand("${SEED}"), SlurmScript.Expand("${RESUME[@]}")]);
        if (!req.ThreadsGiven) args.AddRange(["--threads", SlurmScript.Expand("${SLURM_CPUS_PER_TASK:-0}")]);
        string run = sweep + "/seed-${SEED}";
        string arrayText = SlurmScript.Build(
            $"Written by `vlatune tune --seeds {string.Join(",", req.Seeds)} --slurm`: array task k trains seed SEEDS[k] into {sweep}/seed-<seed>/.\n" +
            $"Log of task k: {logs}/{Name}-<job>_<k>.out. Rewritten (for the seeds still missing) each time that command runs.",
            ArrayJobs.ArrayDirectives(Name, missing, logs, req.Vlatune, r),
            [
                $"SEEDS=({string.Join(' ', req.Seeds)})",
                "SEED=${SEEDS[$SLURM_ARRAY_TASK_ID]}",
                "RESUME=()",
                $"if [ -e \"{run}/{TrainerEntry.CheckpointDir}/state.json\" ] || [ -e \"{run}/{TrainerEntry.CheckpointDir}.old/state.json\" ]; then RESUME=(--resume); fi",
                SlurmScript.CommandLine(req.Vlatune, args),
            ]);
        var sumArgs = new List<string> { "runs", "summarize" };
        sumArgs.AddRange(req.Seeds.Select(s => RunDir(sweep, s)));
        sumArgs.AddRange(["--out", sweep]);
        string followText = SlurmScript.Build(
            $"Written by `vlatune tune --seeds … --slurm`: the summary over the {req.Seeds.Count} seeds ({sweep}/summary.md),\n" +
            "submitted with --dependency=afterok:<array job>, so it starts only when every seed's run succeeded.",
            ArrayJobs.FollowDirectives(Name, logs, req.Vlatune, r),
            [SlurmScript.CommandLine(req.Vlatune, sumArgs)]);
        AtomicFile.WriteAllText(arrayScript, arrayText);
        AtomicFile.WriteAllText(followScript, followText);
        return new ArrayPlan(sweep, Name, req.Seeds.Select(s => $"seed {s}").ToList(), missing, summaryNeeded, arrayScript, followScript, arrayText, followText, notes);
    }

    public static WaitOutcome Wait(ArrayPlan plan, Submission s, IReadOnlyList<long> seeds, TimeSpan poll, TimeSpan? timeout = null) =>
        ArrayJobs.Wait(plan, s, k => IsDone(RunDir(plan.Folder, seeds[k])), Path.Combine(plan.Folder, SweepSummary.MarkdownFile), poll, timeout);
}
