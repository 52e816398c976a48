// What the reports read: an evaluation folder (metrics.json + samples.jsonl + where its images live),
// a run folder's training curves (trainer_state.json), and the per-attribute group gaps with bootstrap CIs that the
// bias plots draw. Everything here is recomputed from samples, so a report can be rebuilt from any eval folder.
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using VlaBias.Evaluation.Metrics;
using VlaBias.Data;

namespace VlaBias.Evaluation;

/// <summary>Group gap of one probe attribute (woman − man mean p_yes) with a bootstrap 95% CI over counterfactual pairs.</summary>
/// <param name="Split">the attribute's split: train (tuning saw it) or test (held out)</param>
/// <param name="Significant">permutation test, Holm-corrected over attributes, α = 0.05 (as group_gap.significant_count)</param>
public sealed record AttributeBias(string Attribute, string Split, double Gap, double Low, double High, bool Significant, int NWoman, int NMan);

/// <summary>One validation point of a tuning run (trainer_state.json → evaluations).</summary>
public sealed record CurvePoint(long Step, double Bias, double CiderD, double Loss);

/// <summary>A run's training curves and the base values the first point is compared with.</summary>
public sealed record TrainingCurves(IReadOnlyList<CurvePoint> Points, double? BaseBias, double? BaseCiderD, double? Threshold, long? BestStep, string? StopReason)
{
    public const string StateFile = "trainer_state.json";

    /// <summary>Reads trainer_state.json; null when the folder has none.</summary>
    public static TrainingCurves? Load(string runDir)
    {
        var path = Path.Combine(runDir, StateFile);
        if (!File.Exists(path)) return null;
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new BadInputException($"{path}: expected a JSON object"); }
        catch (JsonException e) { throw new BadInputException($"{path}: not JSON ({e.Message})"); }
        static double D(JsonNode? n) => n is null ? double.NaN : n.GetValue<double>();
        var points = (o["evaluations"] as JsonArray ?? [])
            .Select(e => new CurvePoint(e!["step"]!.GetValue<long>(), D(e["bias"]), D(e["cider_d"]), D(e["loss"])))
            .OrderBy(p => p.Step).ToList();
        return new TrainingCurves(points, o["base"]?["bias"]?.GetValue<double>(), o["base"]?["cider_d"]?.GetValue<double>(),
            o["threshold"]?.GetValue<double>(), o["best_step"]?.GetValue<long>(), o["stop_reason"]?.GetValue<string>());
    }
}

/// <summary>An evaluation folder as the reports see it.</summary>
/// <param name="ManifestDir">the folder that sample image paths are relative to; null when unknown (no thumbnails then)</param>
public sealed record EvalFolder(string Name, string Dir, JsonObject Metrics, IReadOnlyList<Sample> Samples, string? ManifestDir)
{
    /// <summary>Written by <see cref="Reports.WriteEvalReport"/>: where the suite's manifest is, so reports built later
    /// (compare, run reports) find the images.</summary>
    public const string ContextFile = "report_context.json";

    /// <summary>Loads an eval folder (metrics.json required, samples.jsonl optional).</summary>
    public static EvalFolder Load(string dir, string? name = null)
    {
        var metricsPath = Path.Combine(dir, EvalRunner.MetricsFile);
        if (!File.Exists(metricsPath))
            throw new BadInputException($"{dir}: no {EvalRunner.MetricsFile} (expected an eval folder from `vlatune eval`, or a run folder with eval/tuned/)");
        JsonObject metrics;
        try { metrics = JsonNode.Parse(File.ReadAllText(metricsPath)) as JsonObject ?? throw new JsonException("not an object"); }
        catch (JsonException e) { throw new BadInputException($"{metricsPath}: not a metrics document ({e.Message})"); }
        if (metrics["metrics"] is not JsonObject) throw new BadInputException($"{metricsPath}: field 'metrics': missing (expected {{NAME: {{value, ci95, n}}}})");
        var samplesPath = Path.Combine(dir, EvalRunner.SamplesFile);
        var samples = File.Exists(samplesPath) ? Sample.ReadAll(samplesPath) : [];
        return new EvalFolder(name ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))), dir, metrics, samples, FindManifestDir(dir));
    }

    public static void WriteContext(string dir, Suite suite) => AtomicFile.WriteAllText(Path.Combine(dir, ContextFile), new JsonObject
    {
        ["suite"] = Path.GetFullPath(suite.SourcePath),
        ["manifest"] = Path.GetFullPath(suite.Manifest),
        ["bootstrap"] = suite.Bootstrap,
        ["seed"] = suite.Seed,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

    // report_context.json first; then a run folder's config.yaml (eval/<x>/ → ../../config.yaml → suite → manifest).
    private static string? FindManifestDir(string dir)
    {
        try
        {
            var ctx = Path.Combine(dir, ContextFile);
            if (File.Exists(ctx) && JsonNode.Parse(File.ReadAllText(ctx))?["manifest"]?.GetValue<string>() is string m)
                return Path.GetDirectoryName(Path.GetFullPath(m));
            var config = Path.Combine(dir, "..", "..", "config.yaml");
            if (File.Exists(config))
            {
                var recipe = Recipes.Recipe.Load(config);
                if (recipe.OptStr("suite") is string suitePath && File.Exists(suitePath))
                    return Path.GetDirectoryName(Path.GetFullPath(Recipes.Recipe.Load(suitePath).Str("manifest", "data/generated/scenes/manifest.jsonl")));
            }
        }
        catch (Exception e) when (e is JsonException or BadInputException or IOException or InvalidOperationException) { }
        return null;
    }
}

public static class AttributeBiasCalculator
{
    /// <summary>Per-attribute group gap with a cluster bootstrap CI (resampling counterfactual pairs), in the order
    /// train attributes then test attributes, each by name.</summary>
    public static List<AttributeBias> Compute(IReadOnlyList<Sample> samples, int resamples = 1000, int seed = 0)
    {
        var answers = samples.Where(x => x.Kind == SampleKind.Probe && x.Options is { Count: 2 } && x.PYes is not null && x.Gender is Gender.Man or Gender.Woman).ToList();
        if (answers.Count == 0) return [];
        var gg = GroupGap.Compute(answers.Select(a => new ProbeAnswer(a.Attribute ?? a.Prompt, a.Gender.Name(), a.PYes!.Value)).ToList(), seed: seed, permutations: 2000);
        var attributes = answers.GroupBy(a => a.Attribute ?? a.Prompt)
            .Select(g => (g.Key, Split: g.First().AttributeSplit?.Name() ?? "train", Items: g.Select(a => new GapItem(a.Pair ?? a.Id, a.Gender == Gender.Woman, a.PYes!.Value)).ToArray()))
            .ToArray();
        // Attributes are independent bootstraps with their own draws: computed side by side, stored by index. A resample
        // is a list of positions into the attribute's items.
        var intervals = new (double Low, double High)[attributes.Length];
        Parallel.For(0, attributes.Length, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
        {
            var items = attributes[i].Items;
            intervals[i] = Bootstrap.Ci95Clustered(Clusters.Of(items, x => x.Unit), sample => Gap(items, sample), Math.Max(1, resamples), seed);
        });
        var list = new List<AttributeBias>();
        for (int i = 0; i < attributes.Length; i++)
        {
            var ag = gg.PerAttribute[attributes[i].Key];
            list.Add(new AttributeBias(attributes[i].Key, attributes[i].Split, ag.Gap, intervals[i].Low, intervals[i].High, ag.Significant, ag.NWoman, ag.NMan));
        }
        return list.OrderBy(a => a.Split == "train" ? 0 : 1).ThenBy(a => a.Attribute, StringComparer.Ordinal).ToList();
    }

    private sealed record GapItem(string Unit, bool Woman, double PYes);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Gap(GapItem[] items, ReadOnlySpan<int> sample)
    {
        double sw = 0, sm = 0; int nw = 0, nm = 0;
        foreach (int i in sample)
        {
            var x = items[i];
            if (x.Woman) { sw += x.PYes; nw++; }
            else { sm += x.PYes; nm++; }
        }
        return nw == 0 || nm == 0 ? double.NaN : sw / nw - sm / nm;
    }
}
