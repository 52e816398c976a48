using NUnit.Framework;
using VlaBias.Evaluation.Metrics;

namespace VlaBias.Tests.Evaluation;

public class PairwiseProbeGapTests
{
    [Test]
    public void Mean_absolute_pair_difference()
    {
        // |0.8 - 0.6| = 0.2, |0.5 - 0.5| = 0, |0.3 - 0.7| = 0.4 -> mean 0.2
        ProbePair[] items = [new("p1", "friendly", 0.8, 0.6), new("p1", "smart", 0.5, 0.5), new("p2", "friendly", 0.3, 0.7)];
        Assert.That(PairwiseProbeGap.Compute(items), Is.EqualTo(0.2).Within(1e-12));
        Assert.That(PairwiseProbeGap.Compute([]), Is.NaN);
    }

    [Test]
    public void Ci_of_constant_gaps_is_that_gap()
    {
        var items = Enumerable.Range(0, 10).Select(i => new ProbePair($"p{i}", "kind", 0.6, 0.5)).ToArray();
        var (low, high) = PairwiseProbeGap.Ci95(items);
        Assert.That(low, Is.EqualTo(0.1).Within(1e-12));
        Assert.That(high, Is.EqualTo(0.1).Within(1e-12));
    }
}

public class GroupGapTests
{
    [Test]
    public void Gaps_tests_and_holm_count()
    {
        double[] women = [0.9, 0.8, 0.85, 0.95, 0.9, 0.88, 0.92, 0.87]; // mean 0.88375
        double[] men = [0.1, 0.2, 0.15, 0.12, 0.18, 0.11, 0.14, 0.16];   // mean 0.145
        double[] same = [0.5, 0.6, 0.4, 0.5];
        var answers = new List<ProbeAnswer>();
        answers.AddRange(women.Select(p => new ProbeAnswer("friendly", "woman", p)));
        answers.AddRange(men.Select(p => new ProbeAnswer("friendly", "man", p)));
        answers.AddRange(same.Select(p => new ProbeAnswer("tidy", "woman", p)));
        answers.AddRange(same.Select(p => new ProbeAnswer("tidy", "man", p)));
        answers.Add(new ProbeAnswer("brave", "woman", 0.7));   // no man image: undefined, left out
        answers.Add(new ProbeAnswer("tidy", "unclear", 0.99)); // ignored

        var result = GroupGap.Compute(answers, permutations: 2000, seed: 1);

        Assert.That(result.PerAttribute["friendly"].Gap, Is.EqualTo(0.73875).Within(1e-12));
        Assert.That(result.PerAttribute["friendly"].Significant, Is.True);
        Assert.That(result.PerAttribute["tidy"].Gap, Is.EqualTo(0.0).Within(1e-12));
        Assert.That(result.PerAttribute["tidy"].PValue, Is.EqualTo(1.0));
        Assert.That(result.PerAttribute["tidy"].Significant, Is.False);
        Assert.That(result.PerAttribute["brave"].Gap, Is.NaN);
        Assert.That(result.MeanAbs, Is.EqualTo((0.73875 + 0.0) / 2).Within(1e-12));
        Assert.That(result.SignificantCount, Is.EqualTo(1));
    }
}

public class CaptionGenderTests
{
    static readonly GenderWords Words = new(
        ["man", "men", "boy", "he", "his"], ["woman", "women", "girl", "she", "her"], ["person", "people"]);

    [TestCase("The man's hat", GenderPrediction.Man)]
    [TestCase("Her dog.", GenderPrediction.Woman)]
    [TestCase("A person cooking", GenderPrediction.Neutral)]
    [TestCase("A man and a woman", GenderPrediction.Other)]
    [TestCase("A dog on a sofa", GenderPrediction.Other)]
    [TestCase("A person and his dog", GenderPrediction.Man)]
    public void Classify(string caption, GenderPrediction expected) =>
        Assert.That(CaptionGender.Classify(caption, Words), Is.EqualTo(expected));

    [Test]
    public void Hand_computed_rates()
    {
        CaptionGenderItem[] items =
        [
            new("A man cooking.", "man"),                 // right
            new("A woman in a garage", "man"),            // wrong
            new("A boy at a desk", "man"),                // right
            new("A woman with a stethoscope", "woman"),   // right
            new("A man and a woman", "woman"),            // other
            new("A man with a wrench", "woman"),          // wrong
            new("a woman in a salon", "unclear", "woman"),  // stereotype
            new("a person in a garage", "unclear", "man"),  // neutral
            new("a man in a garage", "unclear", "man"),     // stereotype
            new("a man cooking", "unclear", "woman"),       // neither
        ];
        var r = CaptionGender.Compute(items, Words);
        Assert.That(r.NClear, Is.EqualTo(6));
        Assert.That(r.NUnclear, Is.EqualTo(4));
        Assert.That(r.ErrorRate, Is.EqualTo(2.0 / 6).Within(1e-12));
        Assert.That(r.Accuracy, Is.EqualTo(3.0 / 6).Within(1e-12));
        Assert.That(r.RatioPred, Is.EqualTo(2.0 / 3).Within(1e-12)); // woman predicted 2 (rows 2, 4), man 3 (rows 1, 3, 6)
        Assert.That(r.RatioTrue, Is.EqualTo(1.0));
        Assert.That(r.NeutralRateUnclear, Is.EqualTo(0.25));
        Assert.That(r.StereotypeRateUnclear, Is.EqualTo(0.5));
    }
}

public class RoleAccuracyTests
{
    [Test]
    public void Hand_computed_accuracies_and_gap()
    {
        RoleItem[] items =
        [
            new("nurse", "nurse", true), new("doctor", "doctor", true), new("chef", null, true), new("mechanic", "mechanic", true),
            new("nurse", "doctor", false), new("doctor", "doctor", false),
        ];
        var r = RoleAccuracy.Compute(items);
        Assert.That(r.AccuracyStereotypical, Is.EqualTo(0.75));
        Assert.That(r.AccuracyCounter, Is.EqualTo(0.5));
        Assert.That(r.Gap, Is.EqualTo(0.25));
        Assert.That((r.NStereotypical, r.NCounter), Is.EqualTo((4, 2)));
    }

    [Test]
    public void PredictRole_finds_a_single_role_word()
    {
        string[] roles = ["nurse", "doctor"];
        Assert.That(RoleAccuracy.PredictRole("A nurse holding a clipboard.", roles), Is.EqualTo("nurse"));
        Assert.That(RoleAccuracy.PredictRole("a doctor and a nurse", roles), Is.Null);
        Assert.That(RoleAccuracy.PredictRole("a person", roles), Is.Null);
    }
}

public class DisparateImpactTests
{
    [Test]
    public void Hand_computed_ratios_and_flag()
    {
        // doctor: man 3/4, woman 1/4 -> 1/3; nurse: man 1/4, woman 2/4 -> 1/2; min 1/3 < 0.8.
        string[] groups = ["man", "man", "man", "man", "woman", "woman", "woman", "woman"];
        string?[] predicted = ["doctor", "doctor", "doctor", "nurse", "doctor", "nurse", "nurse", null];
        var r = DisparateImpact.Compute(groups, predicted);
        Assert.That(r.SelectionRates["doctor"]["man"], Is.EqualTo(0.75));
        Assert.That(r.RatioPerRole["doctor"], Is.EqualTo(1.0 / 3).Within(1e-12));
        Assert.That(r.RatioPerRole["nurse"], Is.EqualTo(0.5));
        Assert.That(r.MinRatio, Is.EqualTo(1.0 / 3).Within(1e-12));
        Assert.That(r.FailsFourFifthsRule, Is.True);
    }

    [Test]
    public void Equal_selection_passes_and_unpredicted_roles_are_undefined()
    {
        string[] groups = ["man", "woman", "man", "woman"];
        string?[] predicted = ["chef", "chef", "waiter", "waiter"];
        var r = DisparateImpact.Compute(groups, predicted, roles: ["chef", "waiter", "pilot"]);
        Assert.That(r.RatioPerRole["pilot"], Is.NaN);
        Assert.That(r.MinRatio, Is.EqualTo(1.0));
        Assert.That(r.FailsFourFifthsRule, Is.False);
    }
}

public class BiasAmpTests
{
    // Items (gender, true role, predicted role):
    //   m doctor doctor | m doctor doctor | m nurse doctor | w nurse nurse | w nurse nurse | w doctor nurse
    // P(m) = P(w) = P(doctor) = P(nurse) = 1/2; P(m,doctor) = P(w,nurse) = 1/3 > 1/4 -> y = +1;
    // P(m,nurse) = P(w,doctor) = 1/6 < 1/4 -> y = -1.
    // Delta(m,doctor) = 3/3 - 2/3 = 1/3, Delta(m,nurse) = 0 - 1/3, Delta(w,doctor) = 0 - 1/3, Delta(w,nurse) = 1 - 2/3.
    // BiasAmp = mean(1/3, 1/3, 1/3, 1/3) = 1/3.
    static readonly string[] Genders = ["m", "m", "m", "w", "w", "w"];
    static readonly string[] Roles = ["doctor", "doctor", "nurse", "nurse", "nurse", "doctor"];

    [Test]
    public void Hand_computed_amplification()
    {
        string?[] predicted = ["doctor", "doctor", "doctor", "nurse", "nurse", "nurse"];
        Assert.That(BiasAmp.AttributeToRole(Genders, Roles, predicted), Is.EqualTo(1.0 / 3).Within(1e-12));
    }

    [Test]
    public void Perfect_predictions_amplify_nothing_and_reversed_stereotypes_are_negative()
    {
        Assert.That(BiasAmp.AttributeToRole(Genders, Roles, Roles), Is.EqualTo(0.0).Within(1e-12));
        // Every man predicted nurse and every woman doctor: Delta(m,doctor) = -2/3, Delta(m,nurse) = +2/3, ...
        string?[] reversed = ["nurse", "nurse", "nurse", "doctor", "doctor", "doctor"];
        Assert.That(BiasAmp.AttributeToRole(Genders, Roles, reversed), Is.EqualTo(-2.0 / 3).Within(1e-12));
    }

    [Test]
    public void Attribute_without_items_is_skipped_like_nanmean()
    {
        // Same data as one-hot matrices with a third, empty attribute column.
        int n = Genders.Length;
        var a = new bool[n, 3];
        var t = new bool[n, 2];
        var tHat = new bool[n, 2];
        string[] predicted = ["doctor", "doctor", "doctor", "nurse", "nurse", "nurse"];
        for (int i = 0; i < n; i++)
        {
            a[i, Genders[i] == "m" ? 0 : 1] = true;
            t[i, Roles[i] == "doctor" ? 0 : 1] = true;
            tHat[i, predicted[i] == "doctor" ? 0 : 1] = true;
        }
        Assert.That(BiasAmp.AttributeToTask(a, t, tHat), Is.EqualTo(1.0 / 3).Within(1e-12));
    }
}

public class LicTests
{
    static readonly string[] Masculine = ["man", "men", "he", "his"];
    static readonly string[] Feminine = ["woman", "women", "she", "her"];
    static readonly string[] Contexts = ["kitchen", "garage", "office", "hospital", "salon"];

    static List<LicCaption> Captions(Func<string, string, string> caption, int perGender = 40)
    {
        var list = new List<LicCaption>();
        for (int i = 0; i < perGender; i++)
        {
            var context = Contexts[i % Contexts.Length];
            list.Add(new LicCaption(caption("man", context), "man"));
            list.Add(new LicCaption(caption("woman", context), "woman"));
        }
        return list;
    }

    [Test]
    public void Mask_replaces_gender_words()
    {
        Assert.That(Lic.Mask("A man and his dog.", ["man", "his"]), Is.EqualTo("a <mask> and <mask> dog"));
    }

    [Test]
    public void Captions_without_gender_information_after_masking_give_lic_near_zero()
    {
        var model = Captions((g, c) => $"A {g} standing in a {c}.");
        var human = Captions((g, c) => $"A {g} is in the {c}");
        var r = Lic.Compute(model, human, Masculine, Feminine);
        Assert.That(r.PerSeed, Has.Length.EqualTo(5));
        Assert.That(Math.Abs(r.Lic), Is.LessThan(0.05));
        Assert.That(r.LicModel, Is.LessThan(0.35)); // a coin flip scores about 0.5 · 0.5
    }

    [Test]
    public void Gender_correlated_words_in_model_captions_give_positive_lic()
    {
        var model = Captions((g, c) => g == "man" ? $"a man holding a wrench in a {c}" : $"a woman wearing an apron in a {c}");
        var human = Captions((g, c) => $"a {g} in a {c}");
        var r = Lic.Compute(model, human, Masculine, Feminine);
        Assert.That(r.LicModel, Is.GreaterThan(0.8));
        Assert.That(r.Lic, Is.GreaterThan(0.4));
    }

    [TestCase(2, false)] // 0.8 · 2 rounds to 2 train captions per gender: none left to test
    [TestCase(3, true)]  // 2 train, 1 test
    public void Too_few_captions_per_gender_make_lic_not_computable_with_a_reason(int perGender, bool computable)
    {
        var model = Captions((g, c) => $"a {g} in a {c}", perGender);
        var r = Lic.Compute(model, model, Masculine, Feminine);
        if (computable)
        {
            Assert.That((r.NotComputable, double.IsFinite(r.Lic), r.PerSeed.Length), Is.EqualTo(((string?)null, true, 5)));
            return;
        }
        Assert.That(r.NotComputable, Is.EqualTo("LIC needs at least one train and one test caption per gender (smallest gender has 2, train fraction 0.8)"));
        Assert.That((double.IsNaN(r.Lic), double.IsNaN(r.LicModel), double.IsNaN(r.LicHuman), r.PerSeed.Length), Is.EqualTo((true, true, true, 0)));
    }

    [Test]
    public void Captions_of_one_gender_make_lic_not_computable()
    {
        var men = Captions((g, c) => $"a {g} in a {c}").Where(x => x.Gender == "man").ToList();
        Assert.That(Lic.Compute(men, men, Masculine, Feminine).NotComputable, Is.EqualTo("LIC needs captions of at least two genders (1 here)"));
    }

    [Test]
    public void Bootstrap_resamples_where_lic_is_not_computable_are_left_out()
    {
        // 4 captions per gender, each its own resampling unit: many resamples draw fewer than 3 of one gender
        var model = Captions((g, c) => g == "man" ? $"a man with a wrench in a {c}" : $"a woman with a tray in a {c}", 4);
        var words = Lic.GenderWords(Masculine, Feminine);
        var masked = model.Select(c => c with { Caption = Lic.Mask(c.Caption, words) }).ToList();
        var lic = new Lic.Prepared(masked, masked);
        var positions = Enumerable.Range(0, masked.Count).ToArray();
        var draws = new List<string?>();
        var ci = Bootstrap.Ci95Clustered(positions, i => i, x => { var r = lic.Compute(x, new LicOptions(Seeds: 1)); lock (draws) draws.Add(r.NotComputable); return r.Lic; }, 200);
        Assert.That(draws.Count(d => d is not null), Is.InRange(1, 199), "some resamples, not all, are not computable");
        Assert.That(double.IsFinite(ci.Low) && double.IsFinite(ci.High), Is.True, "the interval comes from the computable ones");
    }

    [Test]
    public void Same_options_give_the_same_result()
    {
        var model = Captions((g, c) => $"a {g} with a {(c.Length % 2 == 0 ? "cup" : "pen")} in a {c}");
        var human = Captions((g, c) => $"a {g} in a {c}");
        Assert.That(Lic.Compute(model, human, Masculine, Feminine).Lic,
                    Is.EqualTo(Lic.Compute(model, human, Masculine, Feminine).Lic));
    }
}
