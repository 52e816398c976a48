using NUnit.Framework;
using VlaBias.Evaluation.Metrics;

namespace VlaBias.Tests.Evaluation;

/// <summary>The shortcuts the evaluator's statistics take (shared random streams, reused counts, several statistics
/// per resample, threads) give exactly what the one-at-a-time definitions give.</summary>
public class FastStatisticsTests
{
    static double[] Values(Random rng, int n, bool coarse) =>
        Enumerable.Range(0, n).Select(_ => coarse ? Math.Round(rng.NextDouble(), 1) : rng.NextDouble()).ToArray();

    [Test]
    public void Subtractive_random_draws_what_a_seeded_System_Random_draws()
    {
        foreach (int seed in new[] { 0, 1, 7, 42, -5, 123456789, int.MaxValue, int.MinValue })
        {
            var expected = new Random(seed);
            var actual = new SubtractiveRandom(seed);
            for (int i = 0; i < 20000; i++)
            {
                int min = i % 97, max = min + 1 + (i * 7919) % 100000;
                Assert.That(actual.Next(min, max), Is.EqualTo(expected.Next(min, max)), $"seed {seed}, draw {i}");
            }
        }
    }

    [Test]
    public void Subtractive_random_batches_draw_what_one_call_per_draw_draws()
    {
        // Short batches go one draw at a time, long ones (64 and up) through the vectorized generator: mixed with single
        // draws, every value and the state after each batch are System.Random's.
        int[] counts = [1, 5, 63, 64, 65, 110, 192, 384, 55, 200, 1000, 3];
        foreach (int seed in new[] { 0, 3, -17, 987654321 })
        {
            var expected = new Random(seed);
            var actual = new SubtractiveRandom(seed);
            for (int round = 0; round < 3; round++)
                foreach (int count in counts)
                {
                    var below = new int[count];
                    actual.NextBelow(below, 1 + count * 7 + round);
                    for (int i = 0; i < count; i++) Assert.That(below[i], Is.EqualTo(expected.Next(1 + count * 7 + round)), $"seed {seed}, below {count}, draw {i}");
                    var rising = new int[count];
                    actual.NextRising(rising, count + 11);
                    for (int i = 0; i < count; i++) Assert.That(rising[i], Is.EqualTo(expected.Next(i, count + 11)), $"seed {seed}, rising {count}, draw {i}");
                    Assert.That(actual.Next(0, 1000), Is.EqualTo(expected.Next(0, 1000)), $"seed {seed}, single draw after {count}");
                }
        }
    }

    [Test]
    public void Column_sums_of_rows_equal_one_column_loops()
    {
        var rng = new Random(21);
        foreach (int columns in new[] { 1, 7, 16, 33, 50, 64, 100 })
        {
            int stride = RowSums.Stride(columns), rowCount = 40;
            var table = new double[rowCount * stride];
            for (int i = 0; i < table.Length; i++) table[i] = rng.NextDouble() * (rng.Next(3) - 1) * Math.Pow(10, rng.Next(-8, 9));
            var rows = Enumerable.Range(0, 300).Select(_ => rng.Next(rowCount) * stride).ToArray();   // repeats, any order
            var sums = new double[stride];
            RowSums.Add(table, rows, sums, stride);
            for (int t = 0; t < columns; t++)
            {
                double s = 0;
                foreach (int r in rows) s += table[r + t];
                Assert.That(BitConverter.DoubleToInt64Bits(sums[t]), Is.EqualTo(BitConverter.DoubleToInt64Bits(s)), $"{columns} columns, column {t}");
            }
        }
    }

    [Test]
    public void Permutation_tests_of_large_groups_at_once_equal_each_test_alone()
    {
        // Groups above 64 values draw their swaps through the vectorized generator; the tests share them in lanes.
        var rng = new Random(13);
        var tests = Enumerable.Range(0, 11).Select(t => (A: Values(rng, 100, coarse: t % 3 == 0), B: Values(rng, 80, coarse: t % 3 == 0).Select(v => v + 0.01 * t).ToArray())).ToList();
        var many = PermutationTest.TwoSampleMany(tests, permutations: 300, seed: 8);
        for (int t = 0; t < tests.Count; t++)
            Assert.That(many[t], Is.EqualTo(PermutationTest.TwoSample(tests[t].A, tests[t].B, permutations: 300, seed: 8)), $"test {t}");
        Assert.That(PermutationTest.TwoSampleMany([tests[0]], permutations: 300, seed: 8)[0], Is.EqualTo(many[0]), "one test alone");
    }

    [Test]
    public void Bootstraps_of_positions_equal_bootstraps_of_items()
    {
        var rng = new Random(17);
        // Units of one to five items, not contiguous, so the groups' positions interleave.
        var items = Enumerable.Range(0, 200).Select(i => (Unit: rng.Next(60), Value: Math.Round(rng.NextDouble(), rng.Next(1, 4)))).ToArray();
        var values = items.Select(x => x.Value).ToArray();
        double Mean(IReadOnlyList<(int Unit, double Value)> s) { double sum = 0; foreach (var x in s) sum += x.Value; return sum / s.Count; }
        double MeanAt(ReadOnlySpan<int> s) { double sum = 0; foreach (int i in s) sum += values[i]; return sum / s.Length; }
        double Odd(IReadOnlyList<(int Unit, double Value)> s) => s[0].Value < 0.3 ? double.NaN : s[^1].Value;
        double OddAt(ReadOnlySpan<int> s) => values[s[0]] < 0.3 ? double.NaN : values[s[^1]];
        var clusters = Clusters.Of(items, x => x.Unit);
        Assert.That(clusters.Count, Is.EqualTo(items.Length));
        Assert.That(clusters.GroupCount, Is.EqualTo(items.Select(x => x.Unit).Distinct().Count()));
        foreach (int threads in new[] { 1, 3 })
        {
            Assert.That(Bootstrap.Ci95Clustered(clusters, MeanAt, 500, 4, threads), Is.EqualTo(Bootstrap.Ci95Clustered(items, x => x.Unit, Mean, 500, 4)), $"{threads} threads");
            var many = Bootstrap.Ci95ClusteredMany(clusters, (s, v) => { v[0] = MeanAt(s); v[1] = OddAt(s); }, 2, 500, 4, threads);
            Assert.That(many, Is.EqualTo(Bootstrap.Ci95ClusteredMany(items, x => x.Unit, s => [Mean(s), Odd(s)], 2, 500, 4)), $"{threads} threads");
        }
        // One-item groups resample as the item-level bootstrap does.
        Assert.That(Bootstrap.Ci95Clustered(Clusters.Items(items.Length), MeanAt, 500, 9), Is.EqualTo(Bootstrap.Ci95(items, Mean, 500, 9)));
        // The drawn positions are the drawn items.
        var byItems = Bootstrap.ClusteredResamples(items, x => x.Unit, 20, 6);
        var byPositions = Bootstrap.Resamples(clusters, 20, 6);
        for (int b = 0; b < 20; b++) Assert.That(byPositions[b].Select(i => items[i]), Is.EqualTo(byItems[b]), $"resample {b}");
    }

    [Test]
    public void Group_gaps_of_position_sets_equal_the_group_gaps_of_those_answers()
    {
        var rng = new Random(19);
        string[] attributes = ["b", "a", "c"];
        var answers = Enumerable.Range(0, 90).Select(i => new ProbeAnswer(attributes[rng.Next(3)], (i % 3) switch { 0 => "woman", 1 => "man", _ => rng.Next(2) == 0 ? "woman" : "unclear" },
                                                                          Math.Round(rng.NextDouble(), 2))).ToList();
        var sets = Enumerable.Range(0, 8).Select(k => Enumerable.Range(0, 20 + 9 * k).Select(_ => rng.Next(answers.Count)).ToArray()).ToList();
        sets.Add(answers.Select((a, i) => (a, i)).Where(x => x.a.Attribute != "a").Select(x => x.i).ToArray());   // an attribute missing: later ranks move up
        var many = GroupGap.ComputeMany(answers, sets, permutations: 400, seed: 5);
        for (int k = 0; k < sets.Count; k++)
        {
            var alone = GroupGap.Compute(sets[k].Select(i => answers[i]).ToList(), permutations: 400, seed: 5);
            Assert.That(many[k].MeanAbs, Is.EqualTo(alone.MeanAbs).Or.NaN, $"set {k}");
            Assert.That(many[k].SignificantCount, Is.EqualTo(alone.SignificantCount), $"set {k}");
            Assert.That(many[k].PerAttribute, Is.EquivalentTo(alone.PerAttribute), $"set {k}");
        }
    }

    // LIC's leakage score as the one-caption-at-a-time definition computes it: System.Random shuffles, a vocabulary of
    // the train split's words, full-batch gradient descent adding every caption's term into every one of its words.
    static double ReferenceLeakage(IReadOnlyList<LicCaption> captions, LicOptions options, int seed)
    {
        var classes = captions.Select(c => c.Gender).Distinct().Order(StringComparer.Ordinal).ToArray();
        var rng = new Random(seed);
        var byClass = classes.Select(g =>
        {
            var items = Enumerable.Range(0, captions.Count).Where(i => captions[i].Gender == g).ToArray();
            for (int i = items.Length - 1; i > 0; i--) { int j = rng.Next(i + 1); (items[i], items[j]) = (items[j], items[i]); }
            return items;
        }).ToArray();
        int perClass = byClass.Min(c => c.Length), trainPerClass = (int)Math.Round(options.TrainFraction * perClass);
        var train = new List<(string[] Words, int Label)>();
        var test = new List<(string[] Words, int Label)>();
        for (int k = 0; k < classes.Length; k++)
            for (int j = 0; j < perClass; j++)
                (j < trainPerClass ? train : test).Add((captions[byClass[k][j]].Caption.Split(' ', StringSplitOptions.RemoveEmptyEntries).Distinct().ToArray(), k));
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (words, _) in train) foreach (var w in words) vocabulary.TryAdd(w, vocabulary.Count);
        int K = classes.Length, V = vocabulary.Count;
        var weights = new double[K * V];
        var bias = new double[K];
        int[] Features(string[] words) => words.Where(vocabulary.ContainsKey).Select(w => vocabulary[w]).ToArray();
        double[] P(int[] f)
        {
            double value = f.Length == 0 ? 0 : 1 / Math.Sqrt(f.Length);
            var p = new double[K];
            for (int k = 0; k < K; k++) { double z = 0; foreach (int x in f) z += weights[k * V + x]; p[k] = bias[k] + value * z; }
            double max = p.Max(), sum = 0;
            for (int k = 0; k < K; k++) sum += p[k] = Math.Exp(p[k] - max);
            for (int k = 0; k < K; k++) p[k] /= sum;
            return p;
        }
        var features = train.Select(t => Features(t.Words)).ToArray();
        double rate = options.LearningRate / train.Count, decay = options.LearningRate * options.L2;
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            var gradW = new double[K * V];
            var gradB = new double[K];
            for (int d = 0; d < train.Count; d++)
            {
                var p = P(features[d]);
                double value = features[d].Length == 0 ? 0 : 1 / Math.Sqrt(features[d].Length);
                for (int k = 0; k < K; k++)
                {
                    double error = p[k] - (k == train[d].Label ? 1 : 0);
                    gradB[k] += error;
                    foreach (int x in features[d]) gradW[k * V + x] += error * value;
                }
            }
            for (int k = 0; k < K; k++)
            {
                bias[k] -= rate * gradB[k];
                for (int f = k * V; f < (k + 1) * V; f++) weights[f] -= rate * gradW[f] + decay * weights[f];
            }
        }
        double score = 0;
        foreach (var (words, label) in test)
        {
            var p = P(Features(words));
            int argmax = 0;
            for (int k = 1; k < K; k++) if (p[k] > p[argmax]) argmax = k;
            if (argmax == label) score += p[argmax];
        }
        return score / test.Count;
    }

    [TestCase(2)]
    [TestCase(3)]
    public void Lic_leakage_equals_the_one_caption_at_a_time_classifier(int genders)
    {
        var rng = new Random(23 + genders);
        string[] names = ["man", "woman", "unclear"];
        string[] words = ["a", "the", "chef", "nurse", "pilot", "in", "kitchen", "holding", "pan", "tray", "<mask>", "red", "garage"];
        // Templated captions (texts repeat, some words always together) and one-off ones, with a word only a few have.
        var templates = Enumerable.Range(0, 9).Select(_ => string.Join(' ', Enumerable.Range(0, 3 + rng.Next(6)).Select(_ => words[rng.Next(words.Length)]))).ToArray();
        var captions = Enumerable.Range(0, 70).Select(i => new LicCaption(
            rng.Next(4) == 0 ? string.Join(' ', Enumerable.Range(0, 2 + rng.Next(7)).Select(_ => words[rng.Next(words.Length)])) + (i % 11 == 0 ? " rare" : "")
                             : templates[rng.Next(templates.Length)],
            names[i % genders])).ToList();
        var options = new LicOptions(Epochs: 60, LearningRate: 1.0, L2: 1e-3);
        foreach (int seed in new[] { 0, 5, 12 })
            Assert.That(Lic.LeakageScore(captions, options, seed), Is.EqualTo(ReferenceLeakage(captions, options, seed)), $"seed {seed}");
    }

    [Test]
    public void Many_permutation_tests_at_once_equal_each_test_alone()
    {
        var rng = new Random(11);
        // Same sizes share a random stream; other sizes get their own; coarse values make ties at the threshold.
        var tests = new List<(double[] A, double[] B)>();
        for (int t = 0; t < 23; t++)
        {
            int na = t % 3 == 0 ? 7 : 12, nb = t % 5 == 0 ? 9 : 12;
            var a = Values(rng, na, coarse: t % 2 == 0);
            var b = Values(rng, nb, coarse: t % 2 == 0).Select(v => v + (t % 4) * 0.05).ToArray();
            tests.Add((a, b));
        }
        tests.Add(([1, 2, 3], [1, 2, 3]));
        var many = PermutationTest.TwoSampleMany(tests, permutations: 700, seed: 4);
        for (int t = 0; t < tests.Count; t++)
            Assert.That(many[t], Is.EqualTo(PermutationTest.TwoSample(tests[t].A, tests[t].B, permutations: 700, seed: 4)), $"test {t}");
    }

    [Test]
    public void Group_gaps_of_many_answer_sets_equal_each_set_alone()
    {
        var rng = new Random(3);
        string[] attributes = ["a", "b", "c", "d"];
        var sets = Enumerable.Range(0, 9).Select(k => (IReadOnlyList<ProbeAnswer>)Enumerable.Range(0, 40 + k)
            .Select(i => new ProbeAnswer(attributes[(i + k) % (k == 4 ? 2 : 4)], (i % 3) switch { 0 => "woman", 1 => "man", _ => k == 6 ? "unclear" : "woman" },
                                         Math.Round(rng.NextDouble(), 2)))
            .ToList()).ToList();
        sets.Add([new ProbeAnswer("a", "woman", 0.3)]);   // an attribute with one gender only: NaN gap, not tested
        var many = GroupGap.ComputeMany(sets, permutations: 500, seed: 2);
        for (int k = 0; k < sets.Count; k++)
        {
            var alone = GroupGap.Compute(sets[k], permutations: 500, seed: 2);
            Assert.That(many[k].SignificantCount, Is.EqualTo(alone.SignificantCount));
            Assert.That(many[k].MeanAbs, Is.EqualTo(alone.MeanAbs).Or.NaN);
            Assert.That(many[k].PerAttribute.Keys, Is.EqualTo(alone.PerAttribute.Keys));
            foreach (var (name, gap) in alone.PerAttribute)
                Assert.That(many[k].PerAttribute[name], Is.EqualTo(gap), $"set {k}, attribute {name}");
        }
    }

    [Test]
    public void Several_statistics_of_one_bootstrap_equal_each_bootstrapped_alone_and_threads_change_nothing()
    {
        var rng = new Random(8);
        var items = Enumerable.Range(0, 150).Select(i => (Group: i / 3, Value: rng.NextDouble())).ToArray();
        double Mean(IReadOnlyList<(int Group, double Value)> s) => s.Average(x => x.Value);
        double Max(IReadOnlyList<(int Group, double Value)> s) => s.Max(x => x.Value);
        double NanSometimes(IReadOnlyList<(int Group, double Value)> s) => s[0].Value < 0.3 ? double.NaN : s[0].Value;
        var many = Bootstrap.Ci95ClusteredMany(items, x => x.Group, s => [Mean(s), Max(s), NanSometimes(s)], 3, resamples: 400, seed: 5, threads: 3);
        Assert.That(many[0], Is.EqualTo(Bootstrap.Ci95Clustered(items, x => x.Group, Mean, 400, 5)));
        Assert.That(many[1], Is.EqualTo(Bootstrap.Ci95Clustered(items, x => x.Group, Max, 400, 5)));
        Assert.That(many[2], Is.EqualTo(Bootstrap.Ci95Clustered(items, x => x.Group, NanSometimes, 400, 5)));
        Assert.That(Bootstrap.Ci95Clustered(items, x => x.Group, Mean, 400, 5, threads: 4), Is.EqualTo(Bootstrap.Ci95Clustered(items, x => x.Group, Mean, 400, 5)));
        var resamples = Bootstrap.ClusteredResamples(items, x => x.Group, 400, 5);
        Assert.That(Bootstrap.Interval(resamples.Select(r => Mean(r))), Is.EqualTo(Bootstrap.Ci95Clustered(items, x => x.Group, Mean, 400, 5)));
    }

    static (List<IReadOnlyList<string>> Refs, List<string> Hyps) Captions(int n, int seed)
    {
        var rng = new Random(seed);
        string[] words = ["a", "man", "woman", "person", "chef", "holding", "pan", "in", "the", "kitchen", "garage", "with", "red", "Wrench."];
        string Caption() => string.Join(' ', Enumerable.Range(0, 2 + rng.Next(9)).Select(_ => words[rng.Next(words.Length)]));
        var refs = Enumerable.Range(0, n).Select(_ => (IReadOnlyList<string>)Enumerable.Range(0, 1 + rng.Next(3)).Select(_ => Caption()).ToArray()).ToList();
        var hyps = Enumerable.Range(0, n).Select(i => i % 7 == 0 ? refs[i][0] : Caption()).ToList();
        return (refs, hyps);
    }

    [Test]
    public void Prepared_caption_scores_of_a_resample_equal_the_scores_of_its_captions()
    {
        var (refs, hyps) = Captions(60, 1);
        var prepared = new CaptionScores.Prepared(refs, hyps);
        var rng = new Random(2);
        List<int[]> samples = [Enumerable.Range(0, 60).ToArray(), [5], [3, 3, 3, 9]];
        for (int k = 0; k < 6; k++) samples.Add(Enumerable.Range(0, 60).Select(_ => rng.Next(60)).ToArray());
        foreach (var sample in samples)
        {
            var expected = CaptionScores.Compute(sample.Select(i => refs[i]).ToList(), sample.Select(i => hyps[i]).ToList());
            Assert.That(prepared.Compute(sample), Is.EqualTo(expected), $"sample of {sample.Length}");
        }
    }

    [Test]
    public void Prepared_caption_scores_of_repeated_captions_equal_the_scores_of_their_captions()
    {
        // Templated captions: most images share their hypothesis and references with others (prepared once per content).
        var (refs, hyps) = Captions(12, 7);
        var rng = new Random(8);
        var images = Enumerable.Range(0, 90).Select(_ => rng.Next(12)).ToArray();
        var imageRefs = images.Select(i => refs[i]).ToList();
        var imageHyps = images.Select((i, k) => k % 10 == 0 ? hyps[(i + 1) % 12] : hyps[i]).ToList();   // the same references with another hypothesis
        var prepared = new CaptionScores.Prepared(imageRefs, imageHyps);
        for (int k = 0; k < 6; k++)
        {
            var sample = Enumerable.Range(0, 90).Select(_ => rng.Next(90)).ToArray();
            var expected = CaptionScores.Compute(sample.Select(i => imageRefs[i]).ToList(), sample.Select(i => imageHyps[i]).ToList());
            Assert.That(prepared.Compute(sample), Is.EqualTo(expected), $"sample {k}");
        }
    }

    [Test]
    public void Cider_corpus_of_a_subset_equals_cider_of_its_captions()
    {
        var (refs, hyps) = Captions(40, 3);
        var tokenizedRefs = refs.Select(rs => (IReadOnlyList<string>)rs.Select(CaptionTokenizer.Tokenize).ToArray()).ToList();
        var tokenizedHyps = hyps.Select(CaptionTokenizer.Tokenize).ToList();
        var corpus = new CiderD.Corpus(tokenizedRefs, tokenizedHyps);
        var rng = new Random(4);
        for (int k = 0; k < 8; k++)
        {
            var sample = Enumerable.Range(0, 1 + rng.Next(50)).Select(_ => rng.Next(40)).ToArray();
            Assert.That(corpus.Mean(sample), Is.EqualTo(CiderD.Compute(sample.Select(i => tokenizedRefs[i]).ToList(), sample.Select(i => tokenizedHyps[i]).ToList())));
        }
    }

    [Test]
    public void Lic_of_masked_captions_equals_lic_of_the_raw_captions()
    {
        var rng = new Random(6);
        string[] roles = ["chef", "nurse", "mechanic"];
        var model = new List<LicCaption>();
        var human = new List<LicCaption>();
        for (int i = 0; i < 60; i++)
        {
            string gender = i % 2 == 0 ? "man" : "woman", role = roles[rng.Next(3)];
            model.Add(new LicCaption($"a {gender} {(rng.Next(3) == 0 ? "nurse" : role)} in a room", gender));
            human.Add(new LicCaption($"the {gender} {role}", gender));
        }
        string[] masculine = ["man"], feminine = ["woman"];
        var words = Lic.GenderWords(masculine, feminine);
        var options = new LicOptions(Seeds: 3, Seed: 9, Epochs: 50);
        var raw = Lic.Compute(model, human, masculine, feminine, options);
        var masked = Lic.ComputeMasked(model.Select(c => c with { Caption = Lic.Mask(c.Caption, words) }).ToList(),
                                       human.Select(c => c with { Caption = Lic.Mask(c.Caption, words) }).ToList(), options);
        Assert.That(masked.Lic, Is.EqualTo(raw.Lic));
        Assert.That(masked.PerSeed, Is.EqualTo(raw.PerSeed));
    }

    [Test]
    public void Bleu_corpus_of_image_counts_does_not_depend_on_image_order()
    {
        var (refs, hyps) = Captions(30, 5);
        var counts = Enumerable.Range(0, 30).Select(i => Bleu.Image(refs[i], hyps[i])).ToList();
        var reversed = Enumerable.Reverse(counts).ToList();
        Assert.That(Bleu.Corpus(reversed), Is.EqualTo(Bleu.Compute(refs, hyps)));
    }

    [Test]
    public void Disparate_impact_from_codes_equals_the_min_ratio_of_compute()
    {
        var rng = new Random(12);
        string[] groups = ["man", "woman", "unclear"], roles = ["chef", "nurse", "pilot", "judge"];
        for (int trial = 0; trial < 50; trial++)
        {
            int n = 1 + rng.Next(40), groupCount = 1 + rng.Next(3);
            var g = Enumerable.Range(0, n).Select(_ => rng.Next(groupCount)).ToArray();
            var r = Enumerable.Range(0, n).Select(_ => rng.Next(6) - 2).Select(x => x < 0 ? -1 : x).ToArray();   // a third predict nothing
            double expected = DisparateImpact.Compute(g.Select(x => groups[x]).ToList(), r.Select(x => x < 0 ? null : roles[x]).ToList()).MinRatio;
            double actual = DisparateImpact.MinRatio(g, r, groups.Length, roles.Length);
            if (double.IsNaN(expected)) Assert.That(actual, Is.NaN, $"trial {trial}");
            else Assert.That(actual, Is.EqualTo(expected), $"trial {trial}");
        }
    }
}
