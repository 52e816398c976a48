// What bias is left after tuning, per probe attribute: the group gap (mean p_yes on woman images − on man images), its
// permutation test (Holm-corrected, α = 0.05, the same test and seed as metrics.json's group_gap.significant_count),
// and whether the gap points the stereotyped way. The stereotyped direction is the attribute's lean in the world
// definition (world.json: "caring" leans woman → a positive gap is stereotyped); attributes the world does not name
// take the direction of the base model's gap. A smaller gap that is still significant and still stereotyped means the
// model is less biased, not unbiased; Verdict says that in one sentence.
using System.Globalization;
using System.Text.Json.Nodes;
using VlaBias.Evaluation.Metrics;
using VlaBias.Data;

namespace VlaBias.Evaluation;

/// <param name="Lean">the stereotyped gender ("woman", "man"), or null when neither the world nor the base says</param>
/// <param name="Stereotyped">the gap has the sign of the lean (woman lean → gap &gt; 0)</param>
public sealed record AttributeResidual(string Attribute, string Split, double Gap, double AdjustedPValue, bool Significant, string? Lean, bool Stereotyped);

public sealed record ResidualBias(IReadOnlyList<AttributeResidual> Attributes, double MeanAbsGap, double? BaseMeanAbsGap)
{
    public int Count => Attributes.Count;
    public int InStereotypedDirection => Attributes.Count(a => a.Stereotyped);
    public int Significant => Attributes.Count(a => a.Significant);
    public int SignificantStereotyped => Attributes.Count(a => a.Significant && a.Stereotyped);
    public int SignificantAgainst => Attributes.Count(a => a.Significant && a.Lean is not null && !a.Stereotyped && a.Gap != 0);

    /// <summary>One plain sentence: less biased but not unbiased, over-corrected, or no significant gap left.</summary>
    public string Verdict
    {
        get
        {
            string gap = $"mean |gap| {F(MeanAbsGap)}" + (BaseMeanAbsGap is double b ? $" (base {F(b)})" : "");
            if (Count == 0) return "No probe answers on man/woman images: residual bias not measured.";
            if (BaseMeanAbsGap is double bg && MeanAbsGap >= bg)
                return $"Not less biased: {gap}; {SignificantStereotyped} of {Count} probe attributes keep a significant gap in the stereotyped direction.";
            if (SignificantStereotyped > 0)
                return $"Less biased, not unbiased: {SignificantStereotyped} of {Count} probe attributes keep a significant gap in the stereotyped direction " +
                       $"({InStereotypedDirection} of {Count} lean the stereotyped way, {Significant} significant; permutation test, Holm, α = 0.05); {gap}.";
            if (SignificantAgainst > 0)
                return $"Over-corrected: {SignificantAgainst} of {Count} probe attributes have a significant gap against the stereotype and none with it; {gap}.";
            return $"No probe attribute keeps a significant gap (permutation test, Holm, α = 0.05, {Count} attributes); gaps smaller than this test detects may remain; {gap}.";
        }
    }

    private static string F(double v) => v.ToString("0.000", CultureInfo.InvariantCulture);

    /// <summary>
    /// Residual gaps of <paramref name="tuned"/> (samples.jsonl of an evaluation). <paramref name="leans"/>: attribute →
    /// stereotyped gender; <paramref name="baseline"/>: the base model's samples, for the direction of attributes without a lean.
    /// </summary>
    public static ResidualBias Compute(IReadOnlyList<Sample> tuned, IReadOnlyList<Sample>? baseline, IReadOnlyDictionary<string, string>? leans, int seed)
    {
        var (gg, splits) = Gaps(tuned, seed);
        var (bg, _) = baseline is null ? (null, null) : Gaps(baseline, seed);
        var list = new List<AttributeResidual>();
        foreach (var (name, a) in gg.PerAttribute.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (double.IsNaN(a.Gap)) continue;
            string? lean = leans is not null && leans.TryGetValue(name, out var l) ? l
                : bg is not null && bg.PerAttribute.TryGetValue(name, out var b) && b.Gap != 0 && !double.IsNaN(b.Gap) ? (b.Gap > 0 ? "woman" : "man") : null;
            bool stereotyped = lean == "woman" ? a.Gap > 0 : lean == "man" && a.Gap < 0;
            list.Add(new AttributeResidual(name, splits[name], a.Gap, a.AdjustedPValue, a.Significant, lean, stereotyped));
        }
        return new ResidualBias(list, gg.MeanAbs, bg?.MeanAbs);
    }

    // The probe answers metrics.json's group gap uses: yes/no probes on images of presented gender man or woman.
    private static (GroupGapResult, Dictionary<string, string>) Gaps(IReadOnlyList<Sample> samples, int seed)
    {
        var answers = samples.Where(x => x.Kind == SampleKind.Probe && x.Options is { Count: 2 } && x.PYes is not null && x.Gender is Gender.Man or Gender.Woman).ToList();
        var splits = answers.GroupBy(a => a.Attribute ?? a.Prompt).ToDictionary(g => g.Key, g => g.First().AttributeSplit?.Name() ?? "train");
        return (GroupGap.Compute(answers.Select(a => new ProbeAnswer(a.Attribute ?? a.Prompt, a.Gender.Name(), a.PYes!.Value)).ToList(), seed: seed, permutations: 2000), splits);
    }

    /// <summary>Residual bias of a tune run folder (eval/tuned vs eval/base), the direction from the suite's world; null without eval/tuned.</summary>
    public static ResidualBias? ForRun(string runDir)
    {
        string tunedDir = Path.Combine(runDir, "eval", "tuned"), baseDir = Path.Combine(runDir, "eval", "base");
        var tunedSamples = Path.Combine(tunedDir, EvalRunner.SamplesFile);
        if (!File.Exists(tunedSamples)) return null;
        var baseSamples = Path.Combine(baseDir, EvalRunner.SamplesFile);
        var (leans, seed) = ContextOf(tunedDir);
        return Compute(Sample.ReadAll(tunedSamples), File.Exists(baseSamples) ? Sample.ReadAll(baseSamples) : null, leans, seed);
    }

    /// <summary>The attribute leans of the world the eval folder's suite names, and the suite's seed (report_context.json).</summary>
    public static (IReadOnlyDictionary<string, string>? leans, int seed) ContextOf(string evalDir)
    {
        var ctx = Path.Combine(evalDir, EvalFolder.ContextFile);
        if (!File.Exists(ctx)) return (null, 0);
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(ctx)) as JsonObject;
            int seed = (int)(o?["seed"]?.GetValue<long>() ?? 0);
            if (o?["suite"]?.GetValue<string>() is not string suitePath || !File.Exists(suitePath)) return (null, seed);
            var suite = Suite.Load(suitePath);
            if (!File.Exists(suite.World)) return (null, seed);
            var world = Data.World.Load(suite.World);
            return (world.Attributes.Where(a => a.Lean is "man" or "woman").ToDictionary(a => a.Name, a => a.Lean, StringComparer.Ordinal), seed);
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or BadInputException or InvalidOperationException or IOException) { return (null, 0); }
    }
}
