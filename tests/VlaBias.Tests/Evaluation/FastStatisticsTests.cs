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
