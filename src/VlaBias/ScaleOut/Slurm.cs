// SLURM, the scheduler the clusters of this field run, driven through its own commands: sbatch submits a script
// (job arrays, dependencies), squeue says what is still queued or running, scancel cancels. vlatune writes plain
// sbatch scripts a person can read and submit by hand; nothing here schedules anything itself.
//   SlurmResources  the #SBATCH lines a user asks for (partition, time, gres, cpus, mem, account), validated once
//   SlurmScript     script text: header, then one command line of this same vlatune (Shell quotes every argument)
//   Slurm           sbatch --parsable / squeue / scancel, with errors that say which command failed and why
using System.Diagnostics;
using System.Text;

namespace VlaBias.ScaleOut;

/// <summary>What a job asks the scheduler for; null fields are left to the cluster's defaults.</summary>
public sealed record SlurmResources(string? Partition = null, string? Time = null, string? Gres = null, int? CpusPerTask = null,
    string? Mem = null, string? Account = null)
{
    /// <summary>Rejects values that would break a #SBATCH line (blanks, quotes, newlines) before anything is written.</summary>
    public SlurmResources Validated()
    {
        foreach (var (name, value) in new[] { ("--partition", Partition), ("--time", Time), ("--gres", Gres), ("--mem", Mem), ("--account", Account) })
            if (value is not null && (value.Length == 0 || value.Any(c => char.IsWhiteSpace(c) || c is '\'' or '"' or '\\' or '$' or '`' or '#')))
                throw new BadInputException($"{name}: '{value}' is not a value sbatch accepts (no blanks, quotes or shell characters)");
        if (CpusPerTask is < 1) throw new BadInputException($"--cpus-per-task: must be at least 1, got {CpusPerTask}");
        return this;
    }

    /// <summary>The #SBATCH lines; <paramref name="withGres"/> is false for bookkeeping jobs (merge, summary) that need no accelerator.</summary>
    public IEnumerable<string> Directives(bool withGres = true)
    {
        if (Partition is not null) yield return $"#SBATCH --partition={Partition}";
        if (Account is not null) yield return $"#SBATCH --account={Account}";
        if (Time is not null) yield return $"#SBATCH --time={Time}";
        if (CpusPerTask is int c) yield return $"#SBATCH --cpus-per-task={c}";
        if (Mem is not null) yield return $"#SBATCH --mem={Mem}";
        if (withGres && Gres is not null) yield return $"#SBATCH --gres={Gres}";
    }
}

/// <summary>How to start this same vlatune on a compute node: the executable (dotnet + vlatune.dll, or the apphost) and the folder it ran in.</summary>
public sealed record VlatuneLauncher(IReadOnlyList<string> Executable, string WorkingDirectory)
{
    /// <summary>The running process: absolute paths, so nodes that mount the same file systems run the same build.</summary>
    public static VlatuneLauncher Current()
    {
        string process = Environment.ProcessPath ?? "dotnet";
        string? entry = System.Reflection.Assembly.GetEntryAssembly()?.Location;
        bool viaDotnet = Path.GetFileNameWithoutExtension(process) == "dotnet";
        IReadOnlyList<string> exe = viaDotnet && !string.IsNullOrEmpty(entry) ? [Path.GetFullPath(process), Path.GetFullPath(entry)] : [Path.GetFullPath(process)];
        return new VlatuneLauncher(exe, Environment.CurrentDirectory);
    }
}

public static class SlurmScript
{
    /// <summary>Marks an argument the shell expands on the node ($SHARD, ${SLURM_CPUS_PER_TASK:-0}); every other argument is quoted literally.</summary>
    public static string Expand(string shellText) => "\0" + shellText;

    /// <summary>One shell word: single-quoted unless plain, or double-quoted (expanded) when made by <see cref="Expand"/>.</summary>
    public static string Quote(string arg) =>
        arg.StartsWith('\0') ? $"\"{arg[1..]}\""
        : arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/' or '=' or ':' or ',' or '+' or '@') ? arg
        : "'" + arg.Replace("'", "'\\''") + "'";

    /// <summary>A batch script: shebang, a comment, #SBATCH lines, then the body (already shell text).</summary>
    public static string Build(string comment, IEnumerable<string> directives, IEnumerable<string> body)
    {
        var sb = new StringBuilder("#!/bin/bash\n");
        foreach (var line in comment.Split('\n')) sb.Append("# ").Append(line).Append('\n');
        foreach (var d in directives) sb.Append(d).Append('\n');
        sb.Append("set -euo pipefail\n");
        foreach (var line in body) sb.Append(line).Append('\n');
        return sb.ToString();
    }

    /// <summary>Array ranges in sbatch's syntax: 0-3 or 1,3,5-6.</summary>
    public static string ArraySpec(IReadOnlyList<int> tasks)
    {
        var parts = new List<string>();
        var sorted = tasks.Distinct().Order().ToList();
        for (int i = 0; i < sorted.Count;)
        {
            int j = i;
            while (j + 1 < sorted.Count && sorted[j + 1] == sorted[j] + 1) j++;
            parts.Add(j == i ? $"{sorted[i]}" : $"{sorted[i]}-{sorted[j]}");
            i = j + 1;
        }
        return string.Join(",", parts);
    }

    public static string CommandLine(VlatuneLauncher v, IEnumerable<string> args) =>
        "exec " + string.Join(' ', v.Executable.Concat(args).Select(Quote));
}

/// <summary>A job as squeue lists it: "123" or an array task "123_4", and its state (PENDING, RUNNING, ...).</summary>
public sealed record QueuedJob(string Id, string State)
{
    public string JobId => Id.Split('_')[0];
}

public static class Slurm
{
    /// <summary>Submits a script; returns the job id. <paramref name="afterOk"/>: start only when that job (all its array tasks) succeeded.</summary>
    public static string Submit(string script, string? afterOk = null)
    {
        var args = new List<string> { "--parsable" };
        if (afterOk is not null) { args.Add($"--dependency=afterok:{afterOk}"); args.Add("--kill-on-invalid-dep=yes"); }
        args.Add(script);
        var (code, stdout, stderr) = RunTool("sbatch", args);
        if (code != 0) throw new BadInputException($"sbatch {script}: {OneLine(stderr.Length > 0 ? stderr : stdout)}");
        var id = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault()?.Split(';')[0];
        if (string.IsNullOrEmpty(id) || !id.All(char.IsAsciiDigit)) throw new InvalidOperationException($"sbatch {script}: unexpected answer '{OneLine(stdout)}'");
        return id;
    }

    /// <summary>The caller's jobs still queued or running (array tasks one by one) whose job id is one of <paramref name="jobIds"/>.</summary>
    public static List<QueuedJob> Queued(IEnumerable<string> jobIds)
    {
        var ids = jobIds.ToHashSet();
        if (ids.Count == 0) return [];
        var (code, stdout, stderr) = RunTool("squeue", ["--me", "--noheader", "--array", "--format=%i|%T"]);
        if (code != 0) throw new BadInputException($"squeue: {OneLine(stderr)}");
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => l.Split('|')).Where(p => p.Length == 2).Select(p => new QueuedJob(p[0], p[1]))
            .Where(j => ids.Contains(j.JobId)).ToList();
    }

    public static void Cancel(string jobId)
    {
        var (code, _, stderr) = RunTool("scancel", [jobId]);
        if (code != 0) throw new BadInputException($"scancel {jobId}: {OneLine(stderr)}");
    }

    private static (int code, string stdout, string stderr) RunTool(string tool, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try { p = Process.Start(psi) ?? throw new InvalidOperationException($"{tool} did not start"); }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new BadInputException($"{tool}: not found on PATH; run on a SLURM login node (or leave out --submit to only write the scripts)");
        }
        using (p)
        {
            var err = p.StandardError.ReadToEndAsync();
            string stdout = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, stdout, err.Result.Trim());
        }
    }

    private static string OneLine(string s) => s.Replace('\n', ' ').Trim();
}
