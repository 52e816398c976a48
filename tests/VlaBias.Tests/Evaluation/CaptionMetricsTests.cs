using System.Text.Json;
using NUnit.Framework;
using VlaBias.Evaluation.Metrics;

namespace VlaBias.Tests.Evaluation;

public class CaptionTokenizerTests
{
    [TestCase("A man's dog, (sitting) on the U.S. flag.", "a man 's dog sitting on the u.s. flag")]
    [TestCase("She doesn't like it!", "she does n't like it")]
    [TestCase("\"Hello\" said the person...", "hello said the person")]
    [TestCase("1,000 people at 10:30; wow", "1,000 people at 10:30 wow")]
    [TestCase("a t-shirt - nice -- very", "a t-shirt nice very")]
    [TestCase("The dogs' toys", "the dogs toys")]
    [TestCase("I cannot go, they're late", "i can not go they 're late")]
    [TestCase("Dr. Smith in a lab", "dr. smith in a lab")]
    [TestCase("it costs $5 (50%)", "it costs $ 5 50 %")]
    [TestCase("A  person’s\nbike? Yes: {red}", "a person 's bike yes red")]
    [TestCase("'quoted' words", "quoted words")]
    [TestCase("", "")]
    public void Tokenize_lowercases_and_removes_punctuation_like_PTB(string input, string expected) =>
        Assert.That(CaptionTokenizer.Tokenize(input), Is.EqualTo(expected));
}

public class CaptionMetricsTests
{
    sealed record GoldenImage(string id, List<string> refs, string hyp);
    sealed record Golden(List<GoldenImage> images, double[] bleu, double rouge_l, double[] rouge_l_per_image,
                         double cider_d, double[] cider_d_per_image);

    static Golden LoadGolden()
    {
        var path = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "coco_metrics", "expected.json");
        return JsonSerializer.Deserialize<Golden>(File.ReadAllText(path))!;
    }

    static (IReadOnlyList<IReadOnlyList<string>> Refs, IReadOnlyList<string> Hyps) Inputs(Golden g) =>
        (g.images.Select(i => (IReadOnlyList<string>)i.refs).ToList(), g.images.Select(i => i.hyp).ToList());

    [Test]
    public void Bleu_matches_pycocoevalcap_on_golden_fixture()
    {
        var g = LoadGolden();
        var (refs, hyps) = Inputs(g);
        var bleu = Bleu.Compute(refs, hyps);
        Assert.That(bleu, Has.Length.EqualTo(4));
        for (int k = 0; k < 4; k++) Assert.That(bleu[k], Is.EqualTo(g.bleu[k]).Within(1e-6), $"BLEU-{k + 1}");
    }

    [Test]
    public void RougeL_matches_pycocoevalcap_on_golden_fixture()
    {
        var g = LoadGolden();
        var (refs, hyps) = Inputs(g);
        Assert.That(RougeL.Compute(refs, hyps), Is.EqualTo(g.rouge_l).Within(1e-6));
        Assert.That(RougeL.PerImage(refs, hyps), Is.EqualTo(g.rouge_l_per_image).Within(1e-6));
    }

    [Test]
    public void CiderD_matches_pycocoevalcap_on_golden_fixture()
    {
        var g = LoadGolden();
        var (refs, hyps) = Inputs(g);
        Assert.That(CiderD.Compute(refs, hyps), Is.EqualTo(g.cider_d).Within(1e-6));
        Assert.That(CiderD.PerImage(refs, hyps), Is.EqualTo(g.cider_d_per_image).Within(1e-6));
    }

    [Test]
    public void CaptionScores_tokenizes_raw_captions_then_matches_the_golden_values()
    {
        var g = LoadGolden();
        // Capitalize, add final periods and commas: tokenization must undo all of it.
        IReadOnlyList<IReadOnlyList<string>> rawRefs = g.images
            .Select(i => (IReadOnlyList<string>)i.refs.Select(r => char.ToUpperInvariant(r[0]) + r[1..] + ".").ToList()).ToList();
        IReadOnlyList<string> rawHyps = g.images.Select(i => "  " + i.hyp.Replace(" in ", ", in ") + "!").ToList();
        var s = CaptionScores.Compute(rawRefs, rawHyps);
        Assert.That(new[] { s.Bleu1, s.Bleu2, s.Bleu3, s.Bleu4 }, Is.EqualTo(g.bleu).Within(1e-6));
        Assert.That(s.RougeL, Is.EqualTo(g.rouge_l).Within(1e-6));
        Assert.That(s.CiderD, Is.EqualTo(g.cider_d).Within(1e-6));
    }

    // One image, reference "a man cooking in a kitchen" (6 words), hypothesis "a man in a kitchen" (5 words).
    // BLEU-1: clipped unigram matches a:2 man:1 in:1 kitchen:1 = 5 of 5 guesses, precision (5 + 1e-15) / (5 + 1e-9);
    //   closest reference length 6 > 5, so brevity penalty exp(1 - 6/5) = exp(-0.2) = 0.8187307531.
    // ROUGE-L: LCS = 5 ("a man in a kitchen"), P = 5/5 = 1, R = 5/6,
    //   F = (1 + 1.44)·1·(5/6) / (5/6 + 1.44·1) = 12.2 / 13.64 = 0.8944281525.
    // CIDEr-D: with one image ln N = 0, so every tf-idf weight is 0 and the score is 0.
    [Test]
    public void Hand_computed_single_image_example()
    {
        IReadOnlyList<IReadOnlyList<string>> refs = [["a man cooking in a kitchen"]];
        IReadOnlyList<string> hyps = ["a man in a kitchen"];
        Assert.That(Bleu.Compute(refs, hyps, n: 1)[0], Is.EqualTo(Math.Exp(-0.2)).Within(1e-9));
        Assert.That(RougeL.Compute(refs, hyps), Is.EqualTo(12.2 / 13.64).Within(1e-12));
        Assert.That(CiderD.Compute(refs, hyps), Is.EqualTo(0.0));
    }

    [Test]
    public void Closest_reference_length_ties_go_to_the_shorter()
    {
        Assert.That(Bleu.ClosestRefLength([7, 5, 9], 6), Is.EqualTo(5));
        Assert.That(Bleu.ClosestRefLength([8, 4], 6), Is.EqualTo(4));
        Assert.That(Bleu.ClosestRefLength([10, 7], 6), Is.EqualTo(7));
    }

    [Test]
    public void Perfect_hypothesis_scores_one_on_bleu_and_rouge()
    {
        IReadOnlyList<IReadOnlyList<string>> refs = [["a woman riding a red bike"], ["a dog on a sofa"]];
        IReadOnlyList<string> hyps = ["a woman riding a red bike", "a dog on a sofa"];
        Assert.That(Bleu.Compute(refs, hyps), Is.All.EqualTo(1.0).Within(1e-9));
        Assert.That(RougeL.Compute(refs, hyps), Is.EqualTo(1.0).Within(1e-12));
    }

    [Test]
    public void Mismatched_inputs_are_rejected()
    {
        IReadOnlyList<IReadOnlyList<string>> refs = [["a cat"]];
        Assert.Throws<ArgumentException>(() => Bleu.Compute(refs, ["a", "b"]));
        Assert.Throws<ArgumentException>(() => CiderD.Compute([[]], ["a"]));
    }
}
