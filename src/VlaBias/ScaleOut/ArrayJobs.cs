// The shape both scale-out commands share: a SLURM job array (one task per shard or per seed) and one follow-up job
// (merge or summary) submitted with --dependency=afterok on the array, so it starts only when every task succeeded.
// FOLDER/slurm/ holds both scripts, logs/ (one file per task: <name>-<job>_<task>.out) and jobs.json (every submission).
// Planning is the caller's (which tasks are left); submitting, the double-submission guard and waiting are here.
using System.Text.Json.Nodes;
using Serilog;

namespace VlaBias.ScaleOut;

/// <param name="Folder">the output folder; scripts, logs and jobs.json are under Folder/slurm</param>
/// <param name="TaskNames">what array task k is ("shard 3/4", "seed 2"), for messages</param>
/// <param name="Missing">array tasks left to run; the array script was written for exactly these</param>
/// <param name="FollowNeeded">false when the merge/summary is already newer than every task's result</param>
public sealed record ArrayPlan(string Folder, string Name, IReadOnlyList<string> TaskNames, IReadOnlyList<int> Missing, bool FollowNeeded,
    string ArrayScript, string FollowScript, string ArrayText, string FollowText, IReadOnlyList<string> Notes)
{
    public string LogDir => Path.Combine(Folder, ArrayJobs.SlurmDir, "logs");

    /// <summary>The log of array task <paramref name="task"/> of job <paramref name="job"/> (the --output pattern of the array script).</summary>
    public string TaskLog(string job, int task) => Path.Combine(LogDir, $"{Name}-{job}_{task}.out");

    public string FollowLog(string job) => Path.Combine(LogDir, $"{Name}-after-{job}.out");

    public IEnumerable<int> Done => Enumerable.Range(0, TaskNames.Count).Except(Missing);

    /// <summary>The commands a person would type to submit what this plan wrote.</summary>
    public IEnumerable<string> SubmitCommands()
    {
        if (Missing.Count > 0)
        {
            yield return $"jid=$(sbatch --parsable {SlurmScript.Quote(ArrayScript)})";
            if (FollowNeeded) yield return $"sbatch --dependency=afterok:$jid --kill-on-invalid-dep=yes {SlurmScript.Quote(FollowScript)}";
        }
        else if (FollowNeeded) yield return $"sbatch {SlurmScript.Quote(FollowScript)}";
    }
}

/// <summary>One submission: the array job (its task indices) and the follow-up job.</summary>
public sealed record Submission(string? ArrayJob, IReadOnlyList<int> Tasks, string? FollowJob, DateTime SubmittedUtc);

/// <param name="Failed">array tasks whose result is still missing after the jobs left the queue, with their logs</param>
/// <param name="FollowDone">the merge/summary output exists and was written after the submission</param>
public sealed record WaitOutcome(bool FollowDone, IReadOnlyList<(string Task, string Log)> Failed, string? FollowLog);

public static class ArrayJobs
{
    public const string SlurmDir = "slurm", JobsFile = "jobs.json";

    /// <summary>Script paths under FOLDER/slurm; paths with blanks or shell characters cannot be written into #SBATCH lines.</summary>
    public static (string arrayScript, string followScript) Paths(string folder, string name)
    {
        CheckPath(folder);
        string dir = Path.Combine(folder, SlurmDir);
        Directory.CreateDirectory(Path.Combine(dir, "logs"));
        return (Path.Combine(dir, $"{name}.sbatch"), Path.Combine(dir, $"{name}-after.sbatch"));
    }

    public static void CheckPath(string path)
    {
        if (path.Any(c => char.IsWhiteSpace(c) || c is '"' or '\'' or '$' or '`' or '\\' or '%'))
            throw new BadInputException($"{path}: SLURM scripts cannot name a folder with blanks, quotes or $, `, \\, % in it; choose another folder");
    }

    /// <summary>
    /// Submits what the plan left to do. Refuses while tasks of the last submission are still queued or running (they
    /// would run twice); a follow-up job left waiting on a failed or cancelled array is cancelled (it can never start).
    /// </summary>
    public static Submission Submit(ArrayPlan plan)
    {
        string jobsFile = Path.Combine(plan.Folder, SlurmDir, JobsFile);
        var history = ReadHistory(jobsFile);
        if (history.LastOrDefault() is { } last)
        {
            var live = Slurm.Queued(new[] { last.ArrayJob, last.FollowJob }.OfType<string>());
            var liveTasks = live.Where(j => j.JobId == last.ArrayJob).ToList();
            if (liveTasks.Count > 0)
                throw new BadInputException($"{plan.Folder}: SLURM job {last.ArrayJob} still has {liveTasks.Count} task(s) queued or running " +
                    $"({string.Join(", ", liveTasks.Select(t => $"{t.Id} {t.State}"))}); wait for them or cancel them (scancel {last.ArrayJob}), then run this again");
            if (last.FollowJob is not null && live.Any(j => j.JobId == last.FollowJob))
            {
                if (plan.Missing.Count == 0)
                    throw new BadInputException($"{plan.Folder}: job {last.FollowJob} of the last submission is still queued or running; wait for it");
                Log.Information("slurm: cancelling job {Job}: tasks of the array it waits on failed or were cancelled, so it can never start", last.FollowJob);
                Slurm.Cancel(last.FollowJob);
            }
        }
        string? arrayJob = null, followJob = null;
        if (plan.Missing.Count > 0) arrayJob = Slurm.Submit(plan.ArrayScript);
        if (plan.FollowNeeded) followJob = Slurm.Submit(plan.FollowScript, afterOk: arrayJob);
        var s = new Submission(arrayJob, plan.Missing, followJob, DateTime.UtcNow);
        if (arrayJob is not null || followJob is not null) WriteHistory(jobsFile, [.. history, s]);
        return s;
    }

    /// <summary>
    /// Polls squeue until the submitted jobs have left the queue, then reports which tasks still lack their result
    /// (<paramref name="isDone"/>) and whether the follow-up output (<paramref name="followOutput"/>) was written.
    /// </summary>
    public static WaitOutcome Wait(ArrayPlan plan, Submission s, Func<int, bool> isDone, string followOutput, TimeSpan poll, TimeSpan? timeout = null)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var ids = new[] { s.ArrayJob, s.FollowJob }.OfType<string>().ToList();
        while (Slurm.Queued(ids).Count > 0)
        {
            if (timeout is TimeSpan t && clock.Elapsed > t) throw new TimeoutException($"SLURM jobs {string.Join(", ", ids)} still queued after {t.TotalMinutes:F0} min");
            Thread.Sleep(poll);
        }
        var failed = s.Tasks.Where(k => !isDone(k)).Select(k => (plan.TaskNames[k], plan.TaskLog(s.ArrayJob!, k))).ToList();
        var f = new FileInfo(followOutput);
        bool followDone = f.Exists && (!plan.FollowNeeded || f.LastWriteTimeUtc >= s.SubmittedUtc.AddSeconds(-2));
        return new WaitOutcome(followDone, failed, s.FollowJob is null ? null : plan.FollowLog(s.FollowJob));
    }

    public static List<Submission> ReadHistory(string jobsFile)
    {
        if (!File.Exists(jobsFile)) return [];
        try
        {
            var arr = JsonNode.Parse(File.ReadAllText(jobsFile))?["submissions"] as JsonArray ?? [];
            return arr.OfType<JsonObject>().Select(o => new Submission(o["array_job"]?.GetValue<string>(),
                (o["tasks"] as JsonArray ?? []).Select(t => t!.GetValue<int>()).ToList(), o["follow_job"]?.GetValue<string>(),
                DateTime.Parse(o["submitted_utc"]!.GetValue<string>(), null, System.Globalization.DateTimeStyles.RoundtripKind))).ToList();
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new BadInputException($"{jobsFile}: not a record of submitted jobs ({e.Message}); delete it if no jobs of this folder are queued");
        }
    }

    private static void WriteHistory(string jobsFile, IEnumerable<Submission> subs) => AtomicFile.WriteAllText(jobsFile, new JsonObject
    {
        ["submissions"] = new JsonArray(subs.Select(s => (JsonNode)new JsonObject
        {
            ["array_job"] = s.ArrayJob, ["tasks"] = new JsonArray(s.Tasks.Select(t => (JsonNode)t).ToArray()),
            ["follow_job"] = s.FollowJob, ["submitted_utc"] = s.SubmittedUtc.ToString("O"),
        }).ToArray()),
    }.ToJsonString(JsonFormat.Pretty));

    /// <summary>The #SBATCH lines of the array script: name, tasks, per-task log, working folder, resources.</summary>
    public static List<string> ArrayDirectives(string name, IReadOnlyList<int> tasks, string logDir, VlatuneLauncher v, SlurmResources r) =>
    [
        $"#SBATCH --job-name=vlatune-{name}", $"#SBATCH --array={(tasks.Count > 0 ? SlurmScript.ArraySpec(tasks) : "0")}",
        $"#SBATCH --output={logDir}/{name}-%A_%a.out", $"#SBATCH --chdir={v.WorkingDirectory}", .. r.Directives(),
    ];

    /// <summary>The #SBATCH lines of the follow-up job: one core, no accelerator.</summary>
    public static List<string> FollowDirectives(string name, string logDir, VlatuneLauncher v, SlurmResources r) =>
    [
        $"#SBATCH --job-name=vlatune-{name}-after", $"#SBATCH --output={logDir}/{name}-after-%j.out", $"#SBATCH --chdir={v.WorkingDirectory}",
        .. (r with { CpusPerTask = null }).Directives(withGres: false),
    ];
}
