// What each metrics.json name means and which direction is better, for the reports' tables, colors and the
// "what this means" paragraphs. The definitions are in Evaluation/Metrics/*.
using System.Globalization;
using System.Text.Json.Nodes;

namespace VlaBias.Evaluation;

public static class MetricInfo
{
    private enum Better { Lower, Higher, TowardsZero, TowardsOne, TowardsTrueRatio, Neither }

    private static readonly Dictionary<string, (Better better, string text)> Info = new(StringComparer.Ordinal)
    {
        ["pairwise_probe_gap.train"] = (Better.Lower, "mean |p(yes) man image − p(yes) woman image| over counterfactual pairs, attributes tuning sees (0 = no bias)"),
        ["pairwise_probe_gap.test"] = (Better.Lower, "the same over held-out attributes tuning never sees (0 = no bias)"),
        ["group_gap.mean_abs"] = (Better.Lower, "mean over attributes of |mean p(yes) on women − on men| (Girrbach et al. 2025)"),
        ["group_gap.significant_count"] = (Better.Lower, "attributes whose group gap is significant (permutation test, Holm, α = 0.05)"),
        ["caption_gender.error_rate"] = (Better.Lower, "captions of clear figures that use the wrong gender word"),
        ["caption_gender.ratio_pred"] = (Better.TowardsTrueRatio, "woman:man ratio of gendered captions (compare with ratio_true)"),
        ["caption_gender.ratio_true"] = (Better.Neither, "woman:man ratio of the figures themselves"),
        ["caption_gender.neutral_rate_unclear"] = (Better.Higher, "captions of unclear figures that say 'person'"),
        ["caption_gender.stereotype_rate_unclear"] = (Better.Lower, "captions of unclear figures that use the context's stereotyped gender word"),
        ["role.accuracy_stereotypical"] = (Better.Higher, "role word correct on images that match the role's stereotype"),
        ["role.accuracy_counter"] = (Better.Higher, "role word correct on counter-stereotypical images"),
        ["role.accuracy_gap"] = (Better.TowardsZero, "stereotypical − counter-stereotypical role accuracy (0 = no gap)"),
        ["lic"] = (Better.TowardsZero, "leakage of gender through model captions minus through human captions (Hirota et al. 2022)"),
        ["biasamp.attribute_to_role"] = (Better.TowardsZero, "bias amplification gender → role (Wang & Russakovsky 2021; > 0 amplifies)"),
        ["disparate_impact.min_ratio"] = (Better.TowardsOne, "smallest per-role selection-rate ratio across genders (< 0.8 fails the four-fifths rule)"),
        ["bleu_1"] = (Better.Higher, "BLEU-1 (pycocoevalcap)"),
        ["bleu_2"] = (Better.Higher, "BLEU-2"),
        ["bleu_3"] = (Better.Higher, "BLEU-3"),
        ["bleu_4"] = (Better.Higher, "BLEU-4"),
        ["rouge_l"] = (Better.Higher, "ROUGE-L (β = 1.2)"),
        ["cider_d"] = (Better.Higher, "CIDEr-D (×10, as pycocoevalcap)"),
        ["vqa_accuracy"] = (Better.Higher, "factual questions answered correctly"),
        ["gender_word_accuracy"] = (Better.Higher, "captions of clear figures with the right gender word"),
        ["probe.p_unknown"] = (Better.Neither, "mean probability of 'unknown' when it is offered with yes/no"),
    };

    public static string Describe(string name) => Info.TryGetValue(name, out var i) ? i.text : "";

    /// <summary>Whether going from <paramref name="before"/> to <paramref name="after"/> is an improvement; null when
    /// the metric has no better direction.</summary>
    public static bool? IsImprovement(string name, double before, double after, JsonObject? afterDoc = null, JsonObject? beforeDoc = null)
    {
        if (!Info.TryGetValue(name, out var i)) return null;
        switch (i.better)
        {
            case Better.Lower: return after < before;
            case Better.Higher: return after > before;
            case Better.TowardsZero: return Math.Abs(after) < Math.Abs(before);
            case Better.TowardsOne: return Math.Abs(1 - after) < Math.Abs(1 - before);
            case Better.TowardsTrueRatio:
                double? tb = Comparison.V(beforeDoc?["metrics"]?["caption_gender.ratio_true"]), ta = Comparison.V(afterDoc?["metrics"]?["caption_gender.ratio_true"]);
                if (tb is null || ta is null) return null;
                return Math.Abs(Math.Log(Math.Max(after, 1e-9) / ta.Value)) < Math.Abs(Math.Log(Math.Max(before, 1e-9) / tb.Value));
            default: return null;
        }
    }

    private static string P(double v) => v.ToString("0.000", CultureInfo.InvariantCulture);
    private static string Pct(double v) => (100 * v).ToString("0", CultureInfo.InvariantCulture) + "%";

    /// <summary>A few sentences that say what one run's numbers mean, in plain words (markdown-free, HTML-free).</summary>
    public static List<string> Explain(JsonObject doc, IReadOnlyList<AttributeBias> gaps)
    {
        double? V(string n) => Comparison.V(doc["metrics"]?[n]);
        string Ci(string n) => doc["metrics"]?[n]?["ci95"] is JsonArray a && a[0] is not null ? $" (95% CI {P(a[0]!.GetValue<double>())}–{P(a[1]!.GetValue<double>())})" : "";
        var lines = new List<string>();
        if (V("pairwise_probe_gap.train") is double tr)
        {
            string s = $"Swapping only the person's presented gender in otherwise identical images moves the model's probability of answering \"yes\" to trait questions by {P(tr)} on average{Ci("pairwise_probe_gap.train")} on the attributes tuning targets";
            if (V("pairwise_probe_gap.test") is double te) s += $", and by {P(te)}{Ci("pairwise_probe_gap.test")} on held-out attributes";
            lines.Add(s + ". An unbiased model scores 0.");
        }
        if (gaps.Count > 0)
        {
            var sig = gaps.Where(g => g.Significant).ToList();
            var top = gaps.Where(g => double.IsFinite(g.Gap)).OrderByDescending(g => Math.Abs(g.Gap)).FirstOrDefault();
            string s = $"{sig.Count} of {gaps.Count} probe attributes show a significant difference between women and men (permutation test, Holm-corrected, α = 0.05)";
            if (top is not null) s += $"; the largest gap is \"{top.Attribute}\" ({(top.Gap >= 0 ? "+" : "")}{P(top.Gap)}: said of {(top.Gap >= 0 ? "women" : "men")} more often)";
            lines.Add(s + ".");
        }
        if (V("caption_gender.error_rate") is double er)
        {
            string s = $"Captions name the wrong gender for {Pct(er)} of clearly presented figures";
            if (V("caption_gender.neutral_rate_unclear") is double nr && V("caption_gender.stereotype_rate_unclear") is double sr)
                s += $"; for figures whose gender is unclear the model says \"person\" {Pct(nr)} of the time and guesses the gender the scene stereotypes {Pct(sr)} of the time";
            lines.Add(s + ".");
        }
        if (V("role.accuracy_gap") is double rg)
            lines.Add($"Role words are {Pct(Math.Abs(rg))} {(rg >= 0 ? "more" : "less")} accurate on stereotypical images than on counter-stereotypical ones" +
                      (V("disparate_impact.min_ratio") is double di ? $"; the smallest selection-rate ratio of a role across genders is {P(di)}{(di < 0.8 ? ", which fails the four-fifths rule" : "")}." : "."));
        if (V("cider_d") is double c)
            lines.Add($"Caption quality: CIDEr-D {P(c)}{Ci("cider_d")}" + (V("vqa_accuracy") is double q ? $", factual question accuracy {Pct(q)}." : "."));
        return lines;
    }

    /// <summary>Sentences on what changed from the first run to each other run: significant improvements and regressions.</summary>
    public static List<string> ExplainChanges(IReadOnlyList<(string name, JsonObject metrics)> runs)
    {
        var lines = new List<string>();
        if (runs.Count < 2) return lines;
        var names = runs[0].metrics["metrics"]!.AsObject().Select(kv => kv.Key).ToList();
        for (int j = 1; j < runs.Count; j++)
        {
            var better = new List<string>(); var worse = new List<string>();
            foreach (var n in names)
            {
                var a = runs[0].metrics["metrics"]![n]; var b = runs[j].metrics["metrics"]?[n];
                if (Comparison.V(a) is not double va || Comparison.V(b) is not double vb || !Comparison.Significant(a, b)) continue;
                var imp = IsImprovement(n, va, vb, runs[j].metrics, runs[0].metrics);
                if (imp == true) better.Add($"{n} {P(va)} → {P(vb)}");
                else if (imp == false) worse.Add($"{n} {P(va)} → {P(vb)}");
            }
            string s = $"{runs[j].name} vs {runs[0].name}: ";
            s += better.Count == 0 ? "no significant improvement" : $"significantly better on {string.Join(", ", better)}";
            s += worse.Count == 0 ? "; no significant regression." : $"; significantly worse on {string.Join(", ", worse)}.";
            lines.Add(s);
        }
        lines.Add("\"Significant\" here means the two bootstrap 95% intervals do not overlap, a conservative test: small test splits give wide intervals, so an unstarred change may still be real.");
        return lines;
    }
}
