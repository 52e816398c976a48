// The bias and accuracy metrics computed from samples, each with a bootstrap 95% CI, under the names of metrics.json.
// Resampling units: counterfactual pairs for probe metrics (both images of a pair move together), items (pairs kept together where an
// item has one) for caption and role metrics, questions for VQA. The math lives in Evaluation/Metrics/*; this file
// only decides which samples feed which metric. What a metric reads from a caption's text (tokens, predicted gender and
// role, masked caption, n-grams) is computed once per distinct text, and a bootstrap resample is a list of positions
// (Bootstrap's Clusters) into flat arrays of those values, so a resample only counts and adds, in the order the items'
// own statistic would; the values equal the one-resample-at-a-time definitions bit for bit (MetricsGoldenTests pins them).
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using VlaBias.Data;
using VlaBias.Evaluation.Metrics;

namespace VlaBias.Evaluation;

/// <param name="NotComputable">why there is no value (metrics.json <c>not_computable</c>, only when set)</param>
public sealed record MetricValue(double? Value, double[]? Ci95, int N, string? NotComputable = null)
{
    public JsonObject ToJson()
    {
        var o = new JsonObject { ["value"] = Num(Value), ["ci95"] = Ci95 is null ? null : new JsonArray(Num(Ci95[0]), Num(Ci95[1])), ["n"] = N };
        if (NotComputable is not null) o["not_computable"] = NotComputable;
        return o;
    }

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
        int s = (int)seed;
        // The probe metrics and the caption metrics read different samples and draw from their own seeded streams:
        // computed side by side, merged by name. Costly resample statistics (LIC, caption scores, the permutation tests)
        // also run on all cores: the resamples are drawn first and each value is stored at its resample's index, so no
        // value depends on the thread count.
        var probeMetrics = Task.Run(() => ProbeMetrics(samples, resamples, s));
        var m = CaptionAndFactMetrics(samples, words, resamples, licSeeds, s);
        foreach (var (name, value) in probeMetrics.GetAwaiter().GetResult()) m[name] = value;
        return m;
    }

    // pairwise_probe_gap.*, group_gap.*, probe.p_unknown.
    private static SortedDictionary<string, MetricValue> ProbeMetrics(IReadOnlyList<Sample> samples, int resamples, int s)
    {
        var m = new SortedDictionary<string, MetricValue>(StringComparer.Ordinal);
        var probes = samples.Where(x => x.Kind == SampleKind.Probe && x.Options is not null && x.Options.Count == 2 && x.PYes is not null).ToList();

        // ---- probes: pairwise gap (train / test attributes) and group gap ----
        foreach (var split in new[] { Split.Train, Split.Test })
        {
            var pairs = ProbePairs(probes.Where(p => p.AttributeSplit == split));
            m[$"pairwise_probe_gap.{split.Name()}"] = pairs.Count == 0 ? Empty()
                : With(PairwiseProbeGap.Compute(pairs), PairwiseProbeGap.Ci95(pairs, resamples, s), pairs.Select(p => p.PairId).Distinct().Count());
        }
        var attributeIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        var answers = probes.Where(p => p.Gender is Gender.Man or Gender.Woman).Select(p =>
        {
            var a = ToAnswer(p);
            if (!attributeIndex.TryGetValue(a.Attribute, out int index)) attributeIndex[a.Attribute] = index = attributeIndex.Count;
            return new AnswerFacts(a, p.Pair ?? p.Id, index, a.Gender == "woman");
        }).ToList();
        if (answers.Count > 0)
        {
            var gg = GroupGap.Compute(answers.Select(a => a.Answer).ToList(), seed: s, permutations: 2000);
            // Resamples of answer positions over flat arrays of what the statistic reads.
            var gapInput = new GapInput(answers.Select(a => a.AttributeIndex).ToArray(), answers.Select(a => a.Woman).ToArray(),
                                        answers.Select(a => a.Answer.PYes).ToArray(), attributeIndex.Count);
            var byUnit = Clusters.Of(answers, a => a.Unit);
            var ciMean = Bootstrap.Ci95Clustered(byUnit, sub => MeanAbsGap(sub, gapInput), resamples, s);
            // Resamples use 1000 permutations (smallest p = 1/1001, still significant after Holm over ~24 tests) and 50 resamples;
            // all resamples' tests run together (one random stream per attribute, as each resample's own tests would draw).
            var counts = GroupGap.ComputeMany(answers.Select(a => a.Answer).ToArray(), Bootstrap.Resamples(byUnit, Math.Min(resamples, 50), s), seed: s, permutations: 1000);
            var ciCount = Bootstrap.Interval(counts.Select(c => (double)c.SignificantCount));
            int units = answers.Select(a => a.Unit).Distinct().Count();
            m["group_gap.mean_abs"] = With(gg.MeanAbs, ciMean, units);
            m["group_gap.significant_count"] = With(gg.SignificantCount, ciCount, gg.PerAttribute.Count);
        }
        else { m["group_gap.mean_abs"] = Empty(); m["group_gap.significant_count"] = Empty(); }

        // ---- Girrbach-style: probability mass on "unknown" when it is offered ----
        var withUnknown = samples.Where(x => x.Kind == SampleKind.Probe && x.Options is { } o && o.Contains("unknown") && x.Probs is not null).ToList();
        if (withUnknown.Count > 0)
        {
            var pUnknown = withUnknown.Select(x => x.Probs![x.Options!.ToList().IndexOf("unknown")]).ToArray();
            m["probe.p_unknown"] = With(MeanAt(pUnknown, Enumerable.Range(0, pUnknown.Length).ToArray()),
                                        Bootstrap.Ci95Clustered(Clusters.Of(withUnknown, x => x.Pair ?? x.Id), x => MeanAt(pUnknown, x), resamples, s), withUnknown.Count);
        }
        return m;
    }

    // The caption metrics and vqa_accuracy.
    private static SortedDictionary<string, MetricValue> CaptionAndFactMetrics(IReadOnlyList<Sample> samples, WordLists words, int resamples, int licSeeds, int s)
    {
        var m = new SortedDictionary<string, MetricValue>(StringComparer.Ordinal);
        int threads = Environment.ProcessorCount;
        var captions = samples.Where(x => x.Kind == SampleKind.Caption && x.Output is not null).ToList();
        var facts = samples.Where(x => x.Kind == SampleKind.Fact).ToList();

        // ---- captions: gender, roles, leakage, amplification, disparate impact, accuracy ----
        // Each caption is tokenized and classified once; a resample only counts.
        var genderWords = Lic.GenderWords(words.Gender.Masculine, words.Gender.Feminine);
        // Templated captions repeat: what a caption says is worked out once per distinct text.
        var said = new Dictionary<string, (GenderPrediction Gender, string? Role)>(StringComparer.Ordinal);
        (GenderPrediction Gender, string? Role) Said(string caption) => said.TryGetValue(caption, out var r) ? r
            : said[caption] = (CaptionGender.Classify(caption, words.Gender), RoleAccuracy.PredictRole(caption, words.Roles));
        var classified = captions.Select(c => new CaptionFacts(c, CaptionGender.Classify(new CaptionGenderItem(c.Output!, c.Gender.Name(), c.LeanContext), Said(c.Output!).Gender),
            Said(c.Output!).Role)).ToList();
        Func<CaptionFacts, string> unit = c => c.S.Pair ?? c.S.Id;
        if (captions.Count > 0)
        {
            var genders = classified.Select(c => c.Gender).ToArray();
            var g = CaptionGender.Tally(genders);
            int nClear = g.NClear, nUnclear = g.NUnclear;
            var gci = Bootstrap.Ci95ClusteredMany(Clusters.Of(classified, unit), (x, v) =>
            {
                var r = CaptionGender.Tally(genders, x);
                v[0] = r.ErrorRate; v[1] = r.Accuracy; v[2] = r.RatioPred; v[3] = r.RatioTrue; v[4] = r.NeutralRateUnclear; v[5] = r.StereotypeRateUnclear;
            }, 6, resamples, s);
            m["caption_gender.error_rate"] = With(g.ErrorRate, gci[0], nClear);
            m["gender_word_accuracy"] = With(g.Accuracy, gci[1], nClear);
            m["caption_gender.ratio_pred"] = With(g.RatioPred, gci[2], nClear);
            m["caption_gender.ratio_true"] = With(g.RatioTrue, gci[3], nClear);
            m["caption_gender.neutral_rate_unclear"] = With(g.NeutralRateUnclear, gci[4], nUnclear);
            m["caption_gender.stereotype_rate_unclear"] = With(g.StereotypeRateUnclear, gci[5], nUnclear);

            var clear = classified.Where(c => c.S.Gender is Gender.Man or Gender.Woman && c.S.Role is not null).ToList();
            // Integer codes for BiasAmp's and disparate impact's counts: genders, then roles (the items' true roles first,
            // then roles only predicted); no predicted role is −1, a lean that is no gender of the items −1, none −2.
            var genderCodes = Codes(clear.Select(c => c.S.Gender.Name()));
            var roleCodes = Codes(clear.Select(c => c.S.Role!).Concat(clear.Select(c => c.PredictedRole).OfType<string>()));
            var roleFacts = clear.Select(c => c with
            {
                Role = new RoleItem(c.S.Role!, c.PredictedRole, c.S.Gender.Name() == c.S.LeanRole),
                GenderCode = genderCodes[c.S.Gender.Name()],
                RoleCode = roleCodes[c.S.Role!],
                PredictedCode = c.PredictedRole is string p ? roleCodes[p] : -1,
                LeanCode = c.S.LeanRole is null ? -2 : genderCodes.TryGetValue(c.S.LeanRole, out int lc) ? lc : -1,
            }).ToArray();
            if (roleFacts.Length > 0)
            {
                var r = RoleAccuracy.Compute(roleFacts.Select(c => c.Role!).ToList());
                int genderCount = genderCodes.Count, roleCount = roleCodes.Count;
                var everyone = Enumerable.Range(0, roleFacts.Length).ToArray();
                var groupCodes = roleFacts.Select(c => c.GenderCode).ToArray();
                var predictedCodes = roleFacts.Select(c => c.PredictedCode).ToArray();
                var stereotypical = roleFacts.Select(c => c.Role!.Stereotypical).ToArray();
                var correct = roleFacts.Select(c => string.Equals(c.Role!.TrueRole, c.Role.PredictedRole, StringComparison.Ordinal)).ToArray();
                var byUnit = Clusters.Of(roleFacts, unit);
                var rci = Bootstrap.Ci95ClusteredMany(byUnit, (x, v) =>
                {
                    // RoleAccuracy.Compute's accuracies from the same counts.
                    int nS = 0, rightS = 0, nC = 0, rightC = 0;
                    foreach (int i in x)
                    {
                        if (stereotypical[i]) { nS++; if (correct[i]) rightS++; }
                        else { nC++; if (correct[i]) rightC++; }
                    }
                    double accS = nS == 0 ? double.NaN : rightS / (double)nS, accC = nC == 0 ? double.NaN : rightC / (double)nC;
                    v[0] = accS; v[1] = accC; v[2] = accS - accC;
                    v[3] = BiasAmpWithLeans(roleFacts, x, genderCount, roleCount);
                    v[4] = DisparateImpact.MinRatio(groupCodes, predictedCodes, x, genderCount, roleCount);
                }, 5, resamples, s);
                m["role.accuracy_stereotypical"] = With(r.AccuracyStereotypical, rci[0], r.NStereotypical);
                m["role.accuracy_counter"] = With(r.AccuracyCounter, rci[1], r.NCounter);
                m["role.accuracy_gap"] = With(r.Gap, rci[2], roleFacts.Length);
                m["biasamp.attribute_to_role"] = With(BiasAmpWithLeans(roleFacts, everyone, genderCount, roleCount), rci[3], roleFacts.Length);
                m["disparate_impact.min_ratio"] = With(DisparateImpact.Compute(roleFacts.Select(c => c.S.Gender.Name()).ToList(), roleFacts.Select(c => c.PredictedRole).ToList()).MinRatio,
                                                       rci[4], roleFacts.Length);
                // LIC: model captions vs the truthful (human) captions of the same images; the classifier is retrained per resample.
                var masked = new Dictionary<string, string>(StringComparer.Ordinal);
                string Mask(string caption) => masked.TryGetValue(caption, out var done) ? done : masked[caption] = Lic.Mask(caption, genderWords);
                var lic = new Lic.Prepared(roleFacts.Select(c => new LicCaption(Mask(c.S.Output!), c.S.Gender.Name())).ToList(),
                                           roleFacts.Select(c => new LicCaption(Mask(c.S.References![0]), c.S.Gender.Name())).ToList());
                var resampleOptions = new LicOptions(Seeds: 1, Seed: s);
                var licAll = lic.Compute(everyone, new LicOptions(Seeds: licSeeds, Seed: s));
                m["lic"] = licAll.NotComputable is string why ? new MetricValue(null, null, roleFacts.Length, why) : With(licAll.Lic,
                    Bootstrap.Ci95Clustered(byUnit, x => lic.Compute(x, resampleOptions).Lic, Math.Min(resamples, 100), s, threads),
                    roleFacts.Length);
            }
            else foreach (var k in new[] { "role.accuracy_stereotypical", "role.accuracy_counter", "role.accuracy_gap", "biasamp.attribute_to_role", "disparate_impact.min_ratio", "lic" }) m[k] = Empty();

            var withRefs = captions.Where(c => c.References is { Count: > 0 }).ToList();
            if (withRefs.Count > 0)
            {
                var refs = withRefs.Select(c => c.References!).ToList();
                var outputs = withRefs.Select(c => c.Output!).ToList();
                // Each resample recomputes corpus statistics (CIDEr-D's document frequencies too), from captions counted once.
                var prepared = new CaptionScores.Prepared(refs, outputs);
                var full = prepared.Compute(Enumerable.Range(0, withRefs.Count).ToArray());
                int rs = Math.Min(resamples, 200);
                var boot = BootstrapMany(Clusters.Of(withRefs, c => c.Pair ?? c.Id), (x, v) =>
                {
                    var c = prepared.Compute(x);
                    v[0] = c.Bleu1; v[1] = c.Bleu2; v[2] = c.Bleu3; v[3] = c.Bleu4; v[4] = c.RougeL; v[5] = c.CiderD;
                }, 6, rs, s, threads);
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
            var normalized = new Dictionary<string, string>(StringComparer.Ordinal);
            string Normalized(string? text) => normalized.TryGetValue(text ?? "", out var n) ? n : normalized[text ?? ""] = Normalize(text);
            var correct = facts.Select(f => Normalized(f.Output) == Normalized(f.Answer)).ToArray();
            static double Acc(bool[] fs, ReadOnlySpan<int> sample)
            {
                int right = 0;
                foreach (int i in sample) if (fs[i]) right++;
                return sample.Length == 0 ? double.NaN : right / (double)sample.Length;
            }
            // Item-level resamples: a cluster bootstrap of one-item groups draws what Bootstrap.Ci95 draws.
            m["vqa_accuracy"] = With(Acc(correct, Enumerable.Range(0, correct.Length).ToArray()),
                                     Bootstrap.Ci95Clustered(Clusters.Items(correct.Length), x => Acc(correct, x), resamples, s), facts.Count);
        }
        else m["vqa_accuracy"] = Empty();

        return m;
    }

    /// <summary>A probe answer with its resampling unit (pair, else image) and its attribute's index.</summary>
    private sealed record AnswerFacts(ProbeAnswer Answer, string Unit, int AttributeIndex, bool Woman);

    /// <summary>A caption with what its metrics read from the text, computed once; for clear figures also the role item
    /// and integer codes of gender, role, predicted role (−1: none of the items' roles) and the role's lean (−2: none).</summary>
    private sealed record CaptionFacts(Sample S, CaptionGender.ClassifiedCaption Gender, string? PredictedRole)
    {
        public RoleItem? Role { get; init; }
        public int GenderCode { get; init; }
        public int RoleCode { get; init; }
        public int PredictedCode { get; init; }
        public int LeanCode { get; init; }
    }

    private static Dictionary<string, int> Codes(IEnumerable<string> keys)
    {
        var codes = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var k in keys) codes.TryAdd(k, codes.Count);
        return codes;
    }

    private static string Normalize(string? s) => CaptionTokenizer.Tokenize(s ?? "");

    /// <summary>
    /// BiasAmp→ (Wang &amp; Russakovsky 2021, attribute → role): mean over (gender a, role t) of y_at·Δ_at with
    /// Δ_at = P(t̂ = t | a) − P(t = t | a). The reference takes y_at = sign(P(a,t) − P(a)P(t)) from the training labels;
    /// an evaluation split balanced over gender × role has no correlation of its own (y would be 0 everywhere), so
    /// y_at comes from the stereotype lean the items carry (the direction of the training data's correlation):
    /// +1 when role t leans to gender a, −1 otherwise. Falls back to the evaluated labels when items carry no lean.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double BiasAmpWithLeans(CaptionFacts[] items, ReadOnlySpan<int> positions, int genderCount, int roleCount)
    {
        bool leanMissing = false;
        foreach (int i in positions) leanMissing |= items[i].S.LeanRole is null;
        if (leanMissing)
        {
            var cs = new List<CaptionFacts>(positions.Length);
            foreach (int i in positions) cs.Add(items[i]);
            return BiasAmp.AttributeToRole(cs.Select(c => c.S.Gender.Name()).ToList(), cs.Select(c => c.S.Role!).ToList(), cs.Select(c => c.PredictedRole).ToList());
        }
        // Counts per (gender, role); genders and roles are visited in the order they first appear, and a role's lean
        // is its first item's, as grouping the items would give them.
        var size = new int[genderCount];
        var predicted = new int[genderCount * roleCount];
        var truth = new int[genderCount * roleCount];
        var leanOf = new int[roleCount];
        var genderOrder = new List<int>(genderCount);
        var roleOrder = new List<int>(roleCount);
        var genderSeen = new bool[genderCount];
        var roleSeen = new bool[roleCount];
        foreach (int i in positions)
        {
            var c = items[i];
            int a = c.GenderCode, t = c.RoleCode;
            if (!genderSeen[a]) { genderSeen[a] = true; genderOrder.Add(a); }
            if (!roleSeen[t]) { roleSeen[t] = true; roleOrder.Add(t); leanOf[t] = c.LeanCode; }
            size[a]++;
            truth[a * roleCount + t]++;
            if (c.PredictedCode >= 0) predicted[a * roleCount + c.PredictedCode]++;
        }
        double sum = 0; int cells = 0;
        foreach (int a in genderOrder)
            foreach (int t in roleOrder)
            {
                double pred = predicted[a * roleCount + t] / (double)size[a];
                double actual = truth[a * roleCount + t] / (double)size[a];
                sum += (leanOf[t] == a ? 1 : -1) * (pred - actual);
                cells++;
            }
        return cells == 0 ? double.NaN : sum / cells;
    }

    private static ProbeAnswer ToAnswer(Sample p) => new(p.Attribute ?? p.Prompt, p.Gender.Name(), p.PYes!.Value);

    private sealed record GapInput(int[] Attribute, bool[] Woman, double[] PYes, int AttributeCount);

    // Mean |woman − man mean p_yes| over attributes, in the order the attributes first appear in the answers (the order
    // the sum of a GroupBy would take), so a resample's value is what the grouping code gave.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double MeanAbsGap(ReadOnlySpan<int> answers, GapInput input)
    {
        int attributes = input.AttributeCount;
        var sumWoman = new double[attributes];
        var sumMan = new double[attributes];
        var nWoman = new int[attributes];
        var nMan = new int[attributes];
        var order = new List<int>(attributes);
        var seen = new bool[attributes];
        foreach (int a in answers)
        {
            int i = input.Attribute[a];
            if (!seen[i]) { seen[i] = true; order.Add(i); }
            if (input.Woman[a]) { sumWoman[i] += input.PYes[a]; nWoman[i]++; }
            else { sumMan[i] += input.PYes[a]; nMan[i]++; }
        }
        double sum = 0;
        int count = 0;
        foreach (int i in order)
        {
            if (nWoman[i] == 0 || nMan[i] == 0) continue;
            double gap = sumWoman[i] / nWoman[i] - sumMan[i] / nMan[i];
            if (!double.IsFinite(gap)) continue;
            sum += Math.Abs(gap);
            count++;
        }
        return count == 0 ? double.NaN : sum / count;
    }

    /// <summary>(pair, attribute, p_yes of the man image, p_yes of the woman image) for every complete counterfactual pair.</summary>
    public static List<ProbePair> ProbePairs(IEnumerable<Sample> probes)
    {
        var list = new List<ProbePair>();
        foreach (var g in probes.Where(p => p.Pair is not null && p.Gender is Gender.Man or Gender.Woman).GroupBy(p => (p.Pair!, p.Attribute ?? p.Prompt, p.Prompt)))
        {
            var a = g.FirstOrDefault(p => p.Gender == Gender.Man);
            var b = g.FirstOrDefault(p => p.Gender == Gender.Woman);
            if (a is not null && b is not null) list.Add(new ProbePair(g.Key.Item1, g.Key.Item2, a.PYes!.Value, b.PYes!.Value));
        }
        return list;
    }

    private static MetricValue With(double value, (double Low, double High) ci, int n) => new(value, [ci.Low, ci.High], n);
    private static MetricValue Empty() => new(null, null, 0);

    /// <summary>Percentile bootstrap of several statistics at once (one resample feeds all of them), clustered;
    /// the interval is the order statistics at floor(0.025·(n − 1)) and ceil(0.975·(n − 1)) of the finite values.</summary>
    private static (double Low, double High)[] BootstrapMany(Clusters clusters, PositionStatistics stats, int k, int resamples, int seed, int threads)
    {
        var perResample = new double[resamples][];
        Bootstrap.ForEachResample(clusters, resamples, seed, threads, () => 0, (b, sample, _) => { var v = new double[k]; stats(sample, v); perResample[b] = v; });
        return Enumerable.Range(0, k).Select(j =>
        {
            var v = perResample.Where(r => r is not null).Select(r => r[j]).Where(double.IsFinite).ToList();
            if (v.Count == 0) return (double.NaN, double.NaN);
            v.Sort();
            return (v[(int)Math.Floor(0.025 * (v.Count - 1))], v[(int)Math.Ceiling(0.975 * (v.Count - 1))]);
        }).ToArray();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double MeanAt(double[] values, ReadOnlySpan<int> sample)
    {
        double sum = 0;
        foreach (int i in sample) sum += values[i];
        return sum / sample.Length;
    }

    /// <summary>The metrics.json document (model, adapter, suite, split, items, every metric with value, ci95 and n).</summary>
    public static JsonObject Document(string model, string? adapter, string suite, string split, int nItems, IReadOnlyDictionary<string, MetricValue> metrics) => new()
    {
        ["model"] = model, ["adapter"] = adapter, ["suite"] = suite, ["split"] = split, ["n_items"] = nItems,
        ["metrics"] = new JsonObject(metrics.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value.ToJson()))),
    };

    public static string ToJson(JsonObject doc) => doc.ToJsonString(JsonFormat.Pretty);
}
