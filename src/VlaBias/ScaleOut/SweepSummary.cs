// `vlatune runs summarize RUN_DIR…` (and the end of `vlatune tune --seeds`): finished tune runs that differ only in
// their seed → one table. In: each run's trainer_state.json (threshold reached, steps), config.yaml (seed),
// eval/base and eval/tuned (metrics.json, samples.jsonl). Out: every test-split figure as mean ± sd over the runs with
// the per-seed values, how many seeds reached the threshold, and the residual bias (ResidualBias) per seed, with the
// verdict in words. summary.md for people, summary.json for programs.
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using VlaBias.Evaluation;

namespace VlaBias.ScaleOut;

/// <summary>One finished run as the summary reads it.</summary>
public sealed record SweepRun(string Dir, long Seed, bool ThresholdReached, long Steps, long BestStep, string StopReason,
    JsonObject Tuned, JsonObject? Base, ResidualBias Residual);

/// <summary>Mean and sample standard deviation (n − 1; NaN for one value) of one figure over the runs.</summary>
public sealed record SweepFigure(string Name, IReadOnlyList<double?> PerRun, double? Base)
{
    private IEnumerable<double> Values => PerRun.OfType<double>().Where(double.IsFinite);
    public double Mean => Values.Any() ? Values.Average() : double.NaN;
    public double Sd
    {
        get
        {
            var v = Values.ToList();
            if (v.Count < 2) return double.NaN;
            double m = v.Average();
            return Math.Sqrt(v.Sum(x => (x - m) * (x - m)) / (v.Count - 1));
        }
    }
}

public sealed record SweepSummary(IReadOnlyList<SweepRun> Runs, IReadOnlyList<SweepFigure> Figures)
{
    public const string MarkdownFile = "summary.md", JsonFile = "summary.json";

    public int Reached => Runs.Count(r => r.ThresholdReached);

    /// <summary>Reads finished runs; every problem of every folder is reported together.</summary>
    public static SweepSummary Load(IReadOnlyList<string> runDirs)
    {
        if (runDirs.Count == 0) throw new BadInputException("runs summarize: no run folders given");
        var problems = new List<string>();
        var runs = new List<SweepRun>();
        foreach (var dir in runDirs)
        {
            try { runs.Add(LoadRun(dir)); }
            catch (BadInputException e) { problems.Add(e.Message); }
        }
        if (problems.Count > 0) throw new BadInputException(string.Join("; ", problems));
        var dupes = runs.GroupBy(r => r.Seed).Where(g => g.Count() > 1).Select(g => $"seed {g.Key} ({string.Join(", ", g.Select(r => r.Dir))})").ToList();
        if (dupes.Count > 0) throw new BadInputException($"runs summarize: the same seed twice: {string.Join("; ", dupes)}");
        runs = runs.OrderBy(r => r.Seed).ToList();

        var names = runs.SelectMany(r => r.Tuned["metrics"]!.AsObject().Select(kv => kv.Key)).Distinct().Order(StringComparer.Ordinal).ToList();
        var figures = new List<SweepFigure>();
        foreach (var n in names)
            figures.Add(new SweepFigure(n, runs.Select(r => Comparison.V(r.Tuned["metrics"]![n])).ToList(), BaseValue(runs, n)));
        figures.Add(new SweepFigure("residual.attributes_stereotyped", runs.Select(r => (double?)r.Residual.InStereotypedDirection).ToList(), null));
        figures.Add(new SweepFigure("residual.significant_stereotyped", runs.Select(r => (double?)r.Residual.SignificantStereotyped).ToList(), null));
        figures.Add(new SweepFigure("steps", runs.Select(r => (double?)r.Steps).ToList(), null));
        return new SweepSummary(runs, figures);
    }

    private static double? BaseValue(List<SweepRun> runs, string name)
    {
        var v = runs.Select(r => Comparison.V(r.Base?["metrics"]?[name])).OfType<double>().Distinct().ToList();
        return v.Count == 1 ? v[0] : v.Count == 0 ? null : v.Average();   // one base for every seed: one value
    }

    private static SweepRun LoadRun(string dir)
    {
        string state = Path.Combine(dir, "trainer_state.json"), tuned = Path.Combine(dir, "eval", "tuned", EvalRunner.MetricsFile);
        if (!Directory.Exists(dir)) throw new BadInputException($"{dir}: run folder not found");
        if (!File.Exists(state)) throw new BadInputException($"{dir}: not a finished run (no trainer_state.json)");
        if (!File.Exists(tuned)) throw new BadInputException($"{dir}: no test-split evaluation (eval/tuned/metrics.json; the run had final_eval false or did not finish)");
        JsonObject Read(string f)
        {
            try { return JsonNode.Parse(File.ReadAllText(f)) as JsonObject ?? throw new System.Text.Json.JsonException("not an object"); }
            catch (System.Text.Json.JsonException e) { throw new BadInputException($"{f}: not JSON ({e.Message})"); }
        }
        var s = Read(state);
        var t = Read(tuned);
        if (t["metrics"] is not JsonObject) throw new BadInputException($"{tuned}: field 'metrics' missing");
        string baseFile = Path.Combine(dir, "eval", "base", EvalRunner.MetricsFile);
        var b = File.Exists(baseFile) ? Read(baseFile) : null;
        long seed = 0;
        string config = Path.Combine(dir, "config.yaml");
        if (File.Exists(config)) seed = Recipes.Recipe.Load(config).Long("seed", 0);
        var residual = ResidualBias.ForRun(dir) ?? throw new BadInputException($"{dir}: eval/tuned/samples.jsonl missing");
        try
        {
            return new SweepRun(dir, seed, s["threshold_reached"]?.GetValue<bool>() ?? false, s["steps"]?.GetValue<long>() ?? 0,
                s["best_step"]?.GetValue<long>() ?? -1, s["stop_reason"]?.GetValue<string>() ?? "", t, b, residual);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException) { throw new BadInputException($"{state}: unexpected field type ({e.Message})"); }
    }

    private static string F(double? v, string format = "0.000") => v is double d && double.IsFinite(d) ? d.ToString(format, CultureInfo.InvariantCulture) : "–";

    /// <summary>Counts (attributes, steps) read better with one decimal than with three.</summary>
    private static string FormatOf(string name) => name is "group_gap.significant_count" or "steps" || name.StartsWith("residual.", StringComparison.Ordinal) ? "0.0" : "0.000";

    private static string MeanSd(SweepFigure f)
    {
        string fmt = FormatOf(f.Name);
        return double.IsNaN(f.Mean) ? "–" : double.IsNaN(f.Sd) ? F(f.Mean, fmt) : $"{F(f.Mean, fmt)} ± {F(f.Sd, fmt)}";
    }

    /// <summary>The verdict over all seeds, in words.</summary>
    public string Verdict
    {
        get
        {
            int n = Runs.Count, attrs = Runs.Max(r => r.Residual.Count);
            int keep = Runs.Count(r => r.Residual.SignificantStereotyped > 0);
            var sig = new SweepFigure("residual.significant_stereotyped", Runs.Select(r => (double?)r.Residual.SignificantStereotyped).ToList(), null);
            var gap = new SweepFigure("", Runs.Select(r => (double?)r.Residual.MeanAbsGap).ToList(), null);
            string counts = $"{MeanSd(sig)} of {attrs} probe attributes keep a significant gap in the stereotyped direction (permutation test, Holm, α = 0.05), " +
                            $"mean |gap| {MeanSd(gap)}";
            var baseGap = Runs.Select(r => r.Residual.BaseMeanAbsGap).OfType<double>().ToList();
            if (baseGap.Count > 0 && gap.Mean >= baseGap.Average())
                return $"Not less biased: mean |gap| {MeanSd(gap)} against the base's {F(baseGap.Average())}; {counts}.";
            if (keep == n) return $"Less biased, not unbiased: in every seed {counts}.";
            if (keep > 0) return $"Less biased, not unbiased in {keep} of {n} seeds: {counts}.";
            return $"No seed keeps a significant stereotyped gap; mean |gap| {MeanSd(gap)} (gaps smaller than the test detects may remain).";
        }
    }

    public string Markdown(string title = "Seed sweep")
    {
        var sb = new StringBuilder($"# {title}: {Runs.Count} runs, seeds {string.Join(", ", Runs.Select(r => r.Seed))}\n\n");
        var first = Runs[0].Tuned;
        sb.AppendLine($"Test split: suite `{first["suite"]}` split `{first["split"]}` ({first["n_items"]} items); model `{first["model"]}`. " +
                      $"Mean ± sd over seeds (sample sd), then each seed's value.\n");
        sb.AppendLine($"- Threshold reached: **{Reached} of {Runs.Count}** seeds.");
        sb.AppendLine($"- {Verdict}\n");
        sb.Append("| figure | base | mean ± sd |");
        foreach (var r in Runs) sb.Append($" seed {r.Seed} |");
        sb.AppendLine().Append("|---|---|---|").Append(string.Concat(Enumerable.Repeat("---|", Runs.Count))).AppendLine();
        foreach (var f in Figures)
        {
            string label = f.Name switch
            {
                "residual.attributes_stereotyped" => "attributes whose gap points the stereotyped way",
                "residual.significant_stereotyped" => "… of them significant (residual bias)",
                "steps" => "training steps",
                _ => $"`{f.Name}`",
            };
            string fmt = FormatOf(f.Name);
            sb.Append($"| {label} | {F(f.Base, fmt)} | {MeanSd(f)} |");
            foreach (var v in f.PerRun) sb.Append($" {F(v, fmt == "0.0" ? "0" : fmt)} |");
            sb.AppendLine();
        }
        sb.Append("| threshold reached | | ").Append($"{Reached}/{Runs.Count} |");
        foreach (var r in Runs) sb.Append(r.ThresholdReached ? " yes |" : " no |");
        sb.AppendLine().AppendLine();
        sb.AppendLine("Runs:\n");
        foreach (var r in Runs) sb.AppendLine($"- seed {r.Seed}: `{r.Dir}`: {r.StopReason}; best adapter from step {r.BestStep}. {r.Residual.Verdict}");
        return sb.ToString();
    }

    public JsonObject ToJson() => new()
    {
        ["runs"] = new JsonArray(Runs.Select(r => (JsonNode)new JsonObject
        {
            ["dir"] = r.Dir, ["seed"] = r.Seed, ["threshold_reached"] = r.ThresholdReached, ["steps"] = r.Steps, ["best_step"] = r.BestStep,
            ["stop_reason"] = r.StopReason,
            ["residual"] = new JsonObject
            {
                ["attributes"] = r.Residual.Count, ["stereotyped"] = r.Residual.InStereotypedDirection, ["significant"] = r.Residual.Significant,
                ["significant_stereotyped"] = r.Residual.SignificantStereotyped, ["significant_against"] = r.Residual.SignificantAgainst,
                ["mean_abs_gap"] = Num(r.Residual.MeanAbsGap), ["verdict"] = r.Residual.Verdict,
                ["per_attribute"] = new JsonArray(r.Residual.Attributes.Select(a => (JsonNode)new JsonObject
                {
                    ["attribute"] = a.Attribute, ["split"] = a.Split, ["gap"] = Num(a.Gap), ["adjusted_p"] = Num(a.AdjustedPValue),
                    ["significant"] = a.Significant, ["lean"] = a.Lean, ["stereotyped"] = a.Stereotyped,
                }).ToArray()),
            },
        }).ToArray()),
        ["threshold_reached"] = Reached,
        ["verdict"] = Verdict,
        ["figures"] = new JsonObject(Figures.Select(f => KeyValuePair.Create(f.Name, (JsonNode?)new JsonObject
        {
            ["mean"] = Num(f.Mean), ["sd"] = Num(f.Sd), ["base"] = f.Base is double b ? Num(b) : null,
            ["per_seed"] = new JsonArray(f.PerRun.Select(v => v is double d ? Num(d) : null).ToArray()),
        }))),
    };

    private static JsonNode? Num(double v) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 6)) : null;

    /// <summary>Writes summary.md and summary.json into <paramref name="outDir"/>; returns the markdown path.</summary>
    public string Write(string outDir, string title = "Seed sweep")
    {
        Directory.CreateDirectory(outDir);
        AtomicFile.WriteAllText(Path.Combine(outDir, JsonFile), ToJson().ToJsonString(JsonFormat.Pretty));
        var md = Path.Combine(outDir, MarkdownFile);
        AtomicFile.WriteAllText(md, Markdown(title));
        return md;
    }
}
