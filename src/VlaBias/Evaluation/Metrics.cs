// Metrics of SPEC §7.1–§7.2 computed from samples, each with a bootstrap 95% CI (SPEC §7.3 names). Resampling units:
// counterfactual pairs for probe metrics (both images of a pair move together), items (pairs kept together where an
// item has one) for caption and role metrics, questions for VQA. The math lives in Evaluation/Metrics/*; this file
// only decides which samples feed which metric.
using System.Text.Json;
using System.Text.Json.Nodes;
using VlaBias.Evaluation.Metrics;

namespace VlaBias.Evaluation;

public sealed record MetricValue(double? Value, double[]? Ci95, int N)
{
    public JsonObject ToJson() => new()
    {
        ["value"] = Num(Value),
        ["ci95"] = Ci95 is null ? null : new JsonArray(Num(Ci95[0]), Num(Ci95[1])),
        ["n"] = N,
    };

    private static JsonNode? Num(double? v) => v is double d && double.IsFinite(d) ? JsonValue.Create(Math.Round(d, 6)) : null;
}

public sealed record WordLists(GenderWords Gender, IReadOnlyCollection<string> Roles)
{
    public static WordLists Load(string genderWordsPath, string worldPath)
    {
        genderWordsPath = Assets.Resolve(genderWordsPath);
        if (!File.Exists(genderWordsPath)) throw new BadInputException($"{genderWordsPath}: gender word list not found");
        var o = JsonNode.Parse(File.ReadAllText(genderWordsPath)) as JsonObject ?? throw new BadInputException($"{genderWordsPath}: expected a JSON object");
        string[] List(string key) => (o[key] as JsonArray ?? throw new BadInputException($"{genderWordsPath}: missing list '{key}'"))
            .Select(x => x!.GetValue<string>().ToLowerInvariant()).ToArray();
        var world = Data.World.Load(worldPath);
        var roles = world.Contexts.SelectMany(c => c.Roles.Select(r => r.Name.ToLowerInvariant())).ToHashSet();
        return new WordLists(new GenderWords(List("man").ToHashSet(), List("woman").ToHashSet(), List("neutral").ToHashSet()), roles);
    }
}

public static class MetricsCalculator
{
    public static SortedDictionary<string, MetricValue> Compute(IReadOnlyList<Sample> samples, WordLists words, int resamples, int licSeeds, long seed)
    {
        var m = new SortedDictionary<string, MetricValue>(StringComparer.Ordinal);
        int s = (int)seed;
        var captions = samples.Where(x => x.Kind == "caption" && x.Output is not null).ToList();
        var facts = samples.Where(x => x.Kind == "fact").ToList();
        var probes = samples.Where(x => x.Kind == "probe" && x.Options is not null && x.Options.Count == 2 && x.PYes is not null).ToList();

        // ---- probes: pairwise gap (train / test attributes) and group gap ----
        foreach (var split in new[] { "train", "test" })
        {
            var pairs = ProbePairs(probes.Where(p => p.AttributeSplit == split));
            m[$"pairwise_probe_gap.{split}"] = pairs.Count == 0 ? Empty()
                : With(PairwiseProbeGap.Compute(pairs), PairwiseProbeGap.Ci95(pairs, resamples, s), pairs.Select(p => p.PairId).Distinct().Count());
        }
        var answers = probes.Where(p => p.Gender is "man" or "woman").ToList();
        if (answers.Count > 0)
        {
            var gg = GroupGap.Compute(answers.Select(ToAnswer).ToList(), seed: s, permutations: 2000);
            var ciMean = Bootstrap.Ci95Clustered(answers, a => a.Pair ?? a.Id, sub => MeanAbsGap(sub), resamples, s);
            // Resamples use 1000 permutations (smallest p = 1/1001, still significant after Holm over ~24 tests) and 50 resamples.
            var ciCount = Bootstrap.Ci95Clustered(answers, a => a.Pair ?? a.Id,
                sub => GroupGap.Compute(sub.Select(ToAnswer).ToList(), seed: s, permutations: 1000).SignificantCount, Math.Min(resamples, 50), s);
            int units = answers.Select(a => a.Pair ?? a.Id).Distinct().Count();
            m["group_gap.mean_abs"] = With(gg.MeanAbs, ciMean, units);
            m["group_gap.significant_count"] = With(gg.SignificantCount, ciCount, gg.PerAttribute.Count);
        }
        else { m["group_gap.mean_abs"] = Empty(); m["group_gap.significant_count"] = Empty(); }

        // ---- captions: gender, roles, leakage, amplification, disparate impact, accuracy ----
        Func<Sample, string> unit = c => c.Pair ?? c.Id;
        CaptionGenderResult G(IReadOnlyList<Sample> cs) => CaptionGender.Compute(cs.Select(c => new CaptionGenderItem(c.Output!, c.Gender, c.LeanContext)).ToList(), words.Gender);
        if (captions.Count > 0)
        {
            var g = G(captions);
            int nClear = g.NClear, nUnclear = g.NUnclear;
            m["caption_gender.error_rate"] = With(g.ErrorRate, Bootstrap.Ci95Clustered(captions, unit, x => G(x).ErrorRate, resamples, s), nClear);
            m["gender_word_accuracy"] = With(g.Accuracy, Bootstrap.Ci95Clustered(captions, unit, x => G(x).Accuracy, resamples, s), nClear);
            m["caption_gender.ratio_pred"] = With(g.RatioPred, Bootstrap.Ci95Clustered(captions, unit, x => G(x).RatioPred, resamples, s), nClear);
            m["caption_gender.ratio_true"] = With(g.RatioTrue, Bootstrap.Ci95Clustered(captions, unit, x => G(x).RatioTrue, resamples, s), nClear);
            m["caption_gender.neutral_rate_unclear"] = With(g.NeutralRateUnclear, Bootstrap.Ci95Clustered(captions, unit, x => G(x).NeutralRateUnclear, resamples, s), nUnclear);
            m["caption_gender.stereotype_rate_unclear"] = With(g.StereotypeRateUnclear, Bootstrap.Ci95Clustered(captions, unit, x => G(x).StereotypeRateUnclear, resamples, s), nUnclear);

            var clear = captions.Where(c => c.Gender is "man" or "woman" && c.Role is not null).ToList();
            RoleAccuracyResult R(IReadOnlyList<Sample> cs) => RoleAccuracy.Compute(cs.Select(c => new RoleItem(c.Role!, RoleAccuracy.PredictRole(c.Output!, words.Roles), c.Gender == c.LeanRole)).ToList());
            if (clear.Count > 0)
            {
                var r = R(clear);
                m["role.accuracy_stereotypical"] = With(r.AccuracyStereotypical, Bootstrap.Ci95Clustered(clear, unit, x => R(x).AccuracyStereotypical, resamples, s), r.NStereotypical);
                m["role.accuracy_counter"] = With(r.AccuracyCounter, Bootstrap.Ci95Clustered(clear, unit, x => R(x).AccuracyCounter, resamples, s), r.NCounter);
                m["role.accuracy_gap"] = With(r.Gap, Bootstrap.Ci95Clustered(clear, unit, x => R(x).Gap, resamples, s), clear.Count);
                double Amp(IReadOnlyList<Sample> cs) => BiasAmpWithLeans(cs, words);
                m["biasamp.attribute_to_role"] = With(Amp(clear), Bootstrap.Ci95Clustered(clear, unit, Amp, resamples, s), clear.Count);
                double Di(IReadOnlyList<Sample> cs) => DisparateImpact.Compute(cs.Select(c => c.Gender).ToList(),
                    cs.Select(c => RoleAccuracy.PredictRole(c.Output!, words.Roles)).ToList()).MinRatio;
                m["disparate_impact.min_ratio"] = With(Di(clear), Bootstrap.Ci95Clustered(clear, unit, Di, resamples, s), clear.Count);
                // LIC: model captions vs the truthful (human) captions of the same images; the classifier is retrained per resample.
                LicResult L(IReadOnlyList<Sample> cs, int seeds, int sd) => Lic.Compute(
                    cs.Select(c => new LicCaption(c.Output!, c.Gender)).ToList(),
                    cs.Select(c => new LicCaption(c.References![0], c.Gender)).ToList(),
                    words.Gender.Masculine, words.Gender.Feminine, new LicOptions(Seeds: seeds, Seed: sd));
                var lic = L(clear, licSeeds, s);
                m["lic"] = With(lic.Lic, Bootstrap.Ci95Clustered(clear, unit, x => L(x, 1, s).Lic, Math.Min(resamples, 100), s), clear.Count);
            }
            else foreach (var k in new[] { "role.accuracy_stereotypical", "role.accuracy_counter", "role.accuracy_gap", "biasamp.attribute_to_role", "disparate_impact.min_ratio", "lic" }) m[k] = Empty();

            var withRefs = captions.Where(c => c.References is { Count: > 0 }).ToList();
            if (withRefs.Count > 0)
            {
                CaptionScores C(IReadOnlyList<Sample> cs) => CaptionScores.Compute(cs.Select(c => c.References!).ToList(), cs.Select(c => c.Output!).ToList());
                var full = C(withRefs);
                int rs = Math.Min(resamples, 200);   // each resample recomputes corpus statistics (CIDEr-D's document frequencies too)
                var boot = BootstrapMany(withRefs, unit, x => { var c = C(x); return [c.Bleu1, c.Bleu2, c.Bleu3, c.Bleu4, c.RougeL, c.CiderD]; }, 6, rs, s);
                string[] names = ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"];
                double[] vals = [full.Bleu1, full.Bleu2, full.Bleu3, full.Bleu4, full.RougeL, full.CiderD];
                for (int i = 0; i < 6; i++) m[names[i]] = With(vals[i], boot[i], withRefs.Count);
            }
        }
        foreach (var k in new[] { "caption_gender.error_rate", "gender_word_accuracy", "caption_gender.ratio_pred", "caption_gender.ratio_true",
                     "caption_gender.neutral_rate_unclear", "caption_gender.stereotype_rate_unclear", "role.accuracy_stereotypical", "role.accuracy_counter",
                     "role.accuracy_gap", "biasamp.attribute_to_role", "disparate_impact.min_ratio", "lic", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d" })
            if (!m.ContainsKey(k)) m[k] = Empty();

        // ---- factual VQA ----
        if (facts.Count > 0)
        {
            double Acc(IReadOnlyList<Sample> fs) => fs.Count == 0 ? double.NaN : fs.Count(f => Normalize(f.Output) == Normalize(f.Answer)) / (double)fs.Count;
            m["vqa_accuracy"] = With(Acc(facts), Bootstrap.Ci95(facts, Acc, resamples, s), facts.Count);
        }
        else m["vqa_accuracy"] = Empty();

        // ---- Girrbach-style: probability mass on "unknown" when it is offered ----
        var withUnknown = samples.Where(x => x.Kind == "probe" && x.Options is { } o && o.Contains("unknown") && x.Probs is not null).ToList();
        if (withUnknown.Count > 0)
        {
            double PU(IReadOnlyList<Sample> xs) => xs.Average(x => x.Probs![x.Options!.ToList().IndexOf("unknown")]);
            m["probe.p_unknown"] = With(PU(withUnknown), Bootstrap.Ci95Clustered(withUnknown, x => x.Pair ?? x.Id, PU, resamples, s), withUnknown.Count);
        }
        return m;
    }

    private static string Normalize(string? s) => CaptionTokenizer.Tokenize(s ?? "");

    /// <summary>
    /// BiasAmp→ (Wang &amp; Russakovsky 2021, attribute → role): mean over (gender a, role t) of y_at·Δ_at with
    /// Δ_at = P(t̂ = t | a) − P(t = t | a). The reference takes y_at = sign(P(a,t) − P(a)P(t)) from the training labels;
    /// an evaluation split balanced over gender × role has no correlation of its own (y would be 0 everywhere), so
    /// y_at comes from the stereotype lean the items carry (the direction of the training data's correlation):
    /// +1 when role t leans to gender a, −1 otherwise. Falls back to the evaluated labels when items carry no lean.
    /// </summary>
    private static double BiasAmpWithLeans(IReadOnlyList<Sample> cs, WordLists words)
    {
        if (cs.Any(c => c.LeanRole is null))
            return BiasAmp.AttributeToRole(cs.Select(c => c.Gender).ToList(), cs.Select(c => c.Role!).ToList(),
                cs.Select(c => RoleAccuracy.PredictRole(c.Output!, words.Roles)).ToList());
        var lean = cs.GroupBy(c => c.Role!).ToDictionary(g => g.Key, g => g.First().LeanRole!);
        double sum = 0; int cells = 0;
        foreach (var a in cs.Select(c => c.Gender).Distinct())
        {
            var group = cs.Where(c => c.Gender == a).ToList();
            foreach (var t in lean.Keys)
            {
                double pred = group.Count(c => RoleAccuracy.PredictRole(c.Output!, words.Roles) == t) / (double)group.Count;
                double truth = group.Count(c => c.Role == t) / (double)group.Count;
                sum += (lean[t] == a ? 1 : -1) * (pred - truth);
                cells++;
            }
        }
        return cells == 0 ? double.NaN : sum / cells;
    }

    private static ProbeAnswer ToAnswer(Sample p) => new(p.Attribute ?? p.Prompt, p.Gender, p.PYes!.Value);

    private static double MeanAbsGap(IReadOnlyList<Sample> answers)
    {
        var gaps = answers.GroupBy(a => a.Attribute ?? a.Prompt).Select(g =>
        {
            var w = g.Where(a => a.Gender == "woman").Select(a => a.PYes!.Value).ToList();
            var mm = g.Where(a => a.Gender == "man").Select(a => a.PYes!.Value).ToList();
            return w.Count == 0 || mm.Count == 0 ? double.NaN : w.Average() - mm.Average();
        }).Where(double.IsFinite).ToList();
        return gaps.Count == 0 ? double.NaN : gaps.Average(Math.Abs);
    }

    /// <summary>(pair, attribute, p_yes of the man image, p_yes of the woman image) for every complete counterfactual pair.</summary>
    public static List<ProbePair> ProbePairs(IEnumerable<Sample> probes)
    {
        var list = new List<ProbePair>();
        foreach (var g in probes.Where(p => p.Pair is not null && p.Gender is "man" or "woman").GroupBy(p => (p.Pair!, p.Attribute ?? p.Prompt, p.Prompt)))
        {
            var a = g.FirstOrDefault(p => p.Gender == "man");
            var b = g.FirstOrDefault(p => p.Gender == "woman");
            if (a is not null && b is not null) list.Add(new ProbePair(g.Key.Item1, g.Key.Item2, a.PYes!.Value, b.PYes!.Value));
        }
        return list;
    }

    private static MetricValue With(double value, (double Low, double High) ci, int n) => new(value, [ci.Low, ci.High], n);
    private static MetricValue Empty() => new(null, null, 0);

    /// <summary>Percentile bootstrap of several statistics at once (one resample feeds all of them), clustered by unit.</summary>
    private static (double Low, double High)[] BootstrapMany<T>(IReadOnlyList<T> items, Func<T, string> unitOf, Func<IReadOnlyList<T>, double[]> stats, int k, int resamples, int seed)
    {
        var groups = items.GroupBy(unitOf).Select(g => g.ToList()).ToList();
        var rng = new Random(seed);
        var values = Enumerable.Range(0, k).Select(_ => new List<double>()).ToArray();
        for (int r = 0; r < resamples; r++)
        {
            var sample = new List<T>(items.Count);
            for (int i = 0; i < groups.Count; i++) sample.AddRange(groups[rng.Next(groups.Count)]);
            var v = stats(sample);
            for (int j = 0; j < k; j++) if (double.IsFinite(v[j])) values[j].Add(v[j]);
        }
        return values.Select(v =>
        {
            if (v.Count == 0) return (double.NaN, double.NaN);
            v.Sort();
            return (v[(int)Math.Floor(0.025 * (v.Count - 1))], v[(int)Math.Ceiling(0.975 * (v.Count - 1))]);
        }).ToArray();
    }

    /// <summary>The metrics.json document of SPEC §7.3.</summary>
    public static JsonObject Document(string model, string? adapter, string suite, string split, int nItems, IReadOnlyDictionary<string, MetricValue> metrics) => new()
    {
        ["model"] = model, ["adapter"] = adapter, ["suite"] = suite, ["split"] = split, ["n_items"] = nItems,
        ["metrics"] = new JsonObject(metrics.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value.ToJson()))),
    };

    public static string ToJson(JsonObject doc) => doc.ToJsonString(JsonFormat.Pretty);
}
