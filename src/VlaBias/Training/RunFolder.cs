// A debiasing run's folder, checkpoints/runs/<name>/ (checkpoints/runs/latest links the newest): the resolved recipe
// (config.yaml), the resumable checkpoint (_checkpoint/), the cached base validation (val_base_cache.jsonl), the
// tuner's files (PEFT adapter or soft prompt), trainer_state.json (stop reason, best step, every evaluation),
// eval/base and eval/tuned, comparison.md and report.html.
using System.Text.Json.Nodes;
using Serilog;
using VlaBias.Adapters;
using VlaBias.Evaluation;
using VlaBias.Recipes;

namespace VlaBias.Training;

public sealed class RunFolder
{
    public const string CheckpointName = "_checkpoint", StateFile = "trainer_state.json", LatestLink = "latest";

    private RunFolder(string dir) { Dir = dir; }

    public string Dir { get; }
    public string Checkpoint => Path.Combine(Dir, CheckpointName);
    public string BaseValidationCache => Path.Combine(Dir, "val_base_cache.jsonl");
    public string BaseEval => Path.Combine(Dir, "eval", "base");
    public string TunedEval => Path.Combine(Dir, "eval", "tuned");
    public string ComparisonFile => Path.Combine(Dir, "comparison.md");

    /// <summary>
    /// Creates (or, with resume, reopens) runs_dir/name (default name: a timestamp) and points runs_dir/latest at it.
    /// A run of that name that has finished is not overwritten.
    /// </summary>
    public static RunFolder Prepare(TuneConfig cfg)
    {
        string name = cfg.Name ?? DateTime.Now.ToString("yyyyMMdd-HHmmss");
        if (name.Contains('/') || name.Contains('\\') || name is "." or ".." or LatestLink)
            throw new BadInputException($"name: '{name}' is not a valid run name");
        string dir = Path.Combine(cfg.RunsDir, name);
        if (!cfg.Resume && File.Exists(Path.Combine(dir, StateFile)))
            throw new BadInputException($"{dir}: a run of that name exists; pick another --name or continue it with --resume");
        Directory.CreateDirectory(dir);
        string latest = Path.Combine(cfg.RunsDir, LatestLink);
        try
        {
            if (File.Exists(latest) || Directory.Exists(latest)) { var fi = new FileInfo(latest); if (fi.LinkTarget is not null) File.Delete(latest); }
            if (!File.Exists(latest) && !Directory.Exists(latest)) File.CreateSymbolicLink(latest, name);
        }
        catch (IOException) { }
        return new RunFolder(dir);
    }

    /// <summary>The run runs_dir/latest points at (for --resume without --name).</summary>
    public static string LatestName(string runsDir)
    {
        var latest = new FileInfo(Path.Combine(runsDir, LatestLink));
        if (latest.LinkTarget is null) throw new BadInputException($"--resume: give --name (no {runsDir}/{LatestLink} link)");
        return Path.GetFileName(latest.LinkTarget);
    }

    public void WriteConfig(Recipe resolved) => AtomicFile.WriteAllText(Path.Combine(Dir, "config.yaml"), resolved.ToYaml());

    internal void WriteState(StopReason reason, RunState s, ValidationPoint basePoint, TimeSpan elapsed, TuneConfig cfg, long trainable, JsonObject? timing = null)
    {
        static JsonNode? N(double v) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 6)) : null;
        var doc = new JsonObject
        {
            ["stop_reason"] = reason.Text,
            ["threshold_reached"] = reason.GoalReached,
            ["threshold"] = cfg.Threshold,
            ["stop_rule"] = cfg.StopRule,
            ["best_step"] = s.BestStep,
            ["steps"] = s.Step,
            ["base"] = new JsonObject { ["bias"] = N(basePoint.Bias), ["cider_d"] = N(basePoint.CiderD) },
            ["evaluations"] = new JsonArray(s.Evaluations.Select(e => (JsonNode)new JsonObject
            { ["step"] = e.Step, ["bias"] = N(e.Bias), ["cider_d"] = N(e.CiderD), ["loss"] = N(e.Loss) }).ToArray()),
            ["elapsed_seconds"] = Math.Round(elapsed.TotalSeconds, 1),
            ["method"] = cfg.Method.Name(),
            ["trainable_parameters"] = trainable,
        };
        if (timing is not null) doc["timing"] = timing;   // wall and CPU seconds per phase (PhaseClock)
        AtomicFile.WriteAllText(Path.Combine(Dir, StateFile), doc.ToJsonString(JsonFormat.Pretty));
    }

    /// <summary>The run's HTML/markdown report (base vs tuned, per-attribute bias, training curves, captions side by side); a failure is logged, not thrown.</summary>
    public void WriteReport()
    {
        try { Reports.WriteRunReport(Dir); }
        catch (Exception e) when (e is not OperationCanceledException) { Log.Warning("tune: the run report could not be written: {Error}", e.Message); }
    }
}
