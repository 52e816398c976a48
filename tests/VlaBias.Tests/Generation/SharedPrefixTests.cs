using NUnit.Framework;
using TorchSharp;
using VlaBias.Evaluation;
using VlaBias.Generation;
using VlaBias.Model;
using VlaBias.Tests.Data;
using static TorchSharp.torch;

namespace VlaBias.Tests.Generation;

/// <summary>
/// Questions continuing from an image prefix computed once equal the same prompts run in full: batched with left
/// padding and one by one, on tiny-base, a random CLIP + Llama model with grouped-query attention and a random
/// SigLIP + Qwen2 model (q/k/v biases, GQA, byte-level BPE).
/// </summary>
public class SharedPrefixTests
{
    private string dir = "";

    [OneTimeSetUp]
    public void Build() => dir = TestPaths.NewTempDir("prefix");

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private static readonly string[] Questions =
    [
        "is the person friendly ?", "is the man a chef ?", "is the woman holding a pan in the kitchen ?", "is the person a mechanic ?",
        "is the person in the garage with a red wrench ?", "friendly ?",
    ];

    private Vla Load(string kind) => kind switch
    {
        "tiny-base" => Vla.Load(Path.Combine(RepoPaths.Root, "checkpoints", "tiny-base")),
        "clip-llama-gqa" => LoadWritten(kind, d => RandomCheckpoint.Write(d, TestPaths.Words, seed: 11, std: 0.3)),
        "siglip-qwen2" => LoadWritten(kind, d => RandomCheckpoint.WriteQwen2Siglip(d, TestPaths.Words, seed: 12, std: 0.3)),
        _ => throw new ArgumentException(kind),
    };

    private Vla LoadWritten(string kind, Action<string> write)
    {
        var d = Path.Combine(dir, kind);
        if (!Directory.Exists(d)) write(d);
        return Vla.Load(d);
    }

    private static Tensor Features(Vla vla, int images, int seed)
    {
        manual_seed(seed);
        int size = vla.Model.Config.Vision.ImageSize;
        using var _ = no_grad();
        return vla.Model.ImageFeatures(randn(images, 3, size, size));
    }

    [TestCase("tiny-base")]
    [TestCase("clip-llama-gqa")]
    [TestCase("siglip-qwen2")]
    public void Questions_continuing_a_shared_image_prefix_equal_full_prompts(string kind)
    {
        var vla = Load(kind);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var features = Features(vla, 3, 5);
        // every question about images 2 and 0 (interleaved, so a prefix row serves rows that are not adjacent)
        var prompts = new List<int[]>();
        var imageOfRow = new List<int>();
        foreach (var q in Questions)
            foreach (int img in new[] { 2, 0 }) { prompts.Add(vla.PromptIds(q)); imageOfRow.Add(img); }
        int p = SharedPrefix.Split(prompts, vla.Model.Config.ImageTokenIndex)
            ?? throw new AssertionException("prompts of one template should share their prefix through the image tokens");
        Assert.That(p, Is.GreaterThanOrEqualTo(vla.ImageTokens));
        Assert.That(prompts.Select(x => x.Length).Distinct().Count(), Is.GreaterThan(2), "the questions should have different lengths so continuations are padded");

        var slot = new Dictionary<int, long> { [2] = 0, [0] = 1 };
        var shared = SharedPrefix.LastLogits(vla.Model, prompts, p, features.index_select(0, tensor(new long[] { 2, 0 })),
            imageOfRow.Select(i => slot[i]).ToList(), vla.Tokenizer.PadId).log_softmax(-1);
        using var full = vla.Batch(prompts, null, features.index_select(0, tensor(imageOfRow.Select(i => (long)i).ToArray())));
        var batched = vla.Model.call(full.Input(LogitsMode.Last)).LastLogits.log_softmax(-1);
        // option log-probs (yes / no / unknown over the whole vocabulary) within 1e-5; every token's within 1e-4
        // (the far tail, log p ≈ −20, carries the largest absolute rounding)
        var gen = new TextGenerator(vla);
        var options = tensor(gen.OptionTokenIds(["yes", "no", "unknown"]).Select(i => (long)i).ToArray());
        double Max(Tensor x, Tensor y, bool optionsOnly) =>
            (optionsOnly ? (x.index_select(1, options) - y.index_select(1, options)) : (x - y)).abs().max().ToDouble();
        var alone = cat(Enumerable.Range(0, prompts.Count).Select(r =>
        {
            using var single = vla.Batch([prompts[r]], null, features.narrow(0, imageOfRow[r], 1));
            return vla.Model.call(single.Input(LogitsMode.Last)).LastLogits.log_softmax(-1);
        }).ToList(), 0);
        TestContext.Out.WriteLine($"{kind}: prefix {p} of {prompts.Max(x => x.Length)} tokens; max |Δ log p| of the options (all tokens): " +
            $"shared vs batched {Max(shared, batched, true):E2} ({Max(shared, batched, false):E2}), shared vs one by one {Max(shared, alone, true):E2} ({Max(shared, alone, false):E2}), " +
            $"batched vs one by one {Max(batched, alone, true):E2} ({Max(batched, alone, false):E2})");
        Assert.That(Max(shared, batched, true), Is.LessThan(1e-5), "option log-probs, shared vs full batch");
        Assert.That(Max(shared, alone, true), Is.LessThan(1e-5), "option log-probs, shared vs each prompt alone");
        Assert.That(Max(shared, batched, false), Is.LessThan(1e-4), "every token's log-prob, shared vs full batch");
        Assert.That(Max(shared, alone, false), Is.LessThan(1e-4), "every token's log-prob, shared vs each prompt alone");
        Assert.That(shared.narrow(0, 0, 1).sub(shared.narrow(0, 1, 1)).abs().max().ToDouble(), Is.GreaterThan(1e-4), "the two images give different answers");

        // the evaluator's scoring path, shared and not
        var a = Evaluator.ScoreOptions(vla, gen, prompts, features, imageOfRow, ["yes", "no"], share: true);
        var b = Evaluator.ScoreOptions(vla, gen, prompts, features, imageOfRow, ["yes", "no"], share: false);
        for (int r = 0; r < prompts.Count; r++)
            for (int o = 0; o < 2; o++)
                Assert.That(a[r][o], Is.EqualTo(b[r][o]).Within(1e-5), $"row {r} option {o}");

        // images with different numbers of questions (attention then meets each prefix's rows in a matmul of its own)
        var uneven = Enumerable.Range(0, prompts.Count).Where(r => imageOfRow[r] == 2 || r < 4).ToList();
        Assert.That(uneven.Count(r => imageOfRow[r] == 0), Is.Not.EqualTo(uneven.Count(r => imageOfRow[r] == 2)));
        var c = Evaluator.ScoreOptions(vla, gen, uneven.Select(r => prompts[r]).ToList(), features, uneven.Select(r => imageOfRow[r]).ToList(), ["yes", "no"], share: true);
        for (int k = 0; k < uneven.Count; k++)
            for (int o = 0; o < 2; o++)
                Assert.That(c[k][o], Is.EqualTo(b[uneven[k]][o]).Within(1e-5), $"uneven row {uneven[k]} option {o}");
    }

    [Test]
    public void Prompts_that_differ_before_the_image_or_end_with_it_do_not_share()
    {
        var vla = Load("clip-llama-gqa");
        long image = vla.Model.Config.ImageTokenIndex;
        var a = vla.PromptIds("is the person friendly ?");
        Assert.That(SharedPrefix.Split([a, vla.PromptIds("is the man a chef ?")], image), Is.Not.Null);
        int firstImage = Array.IndexOf(a, (int)image);
        Assert.That(firstImage, Is.GreaterThan(0), "the template has text before the image");
        var otherStart = (int[])a.Clone();
        otherStart[firstImage - 1] = a[firstImage - 1] == 5 ? 6 : 5;
        Assert.That(SharedPrefix.Split([a, otherStart], image), Is.Null, "a different token before the image");
        var endsWithImage = a.Take(Array.LastIndexOf(a, (int)image) + 1).ToArray();
        Assert.That(SharedPrefix.Split([a, endsWithImage], image), Is.Null, "nothing after the image to continue");
        Assert.That(SharedPrefix.Split([vla.PromptIds("describe the image.", withImage: false)], image), Is.Null, "no image");
        var twoImages = a.Concat(Enumerable.Repeat((int)image, 2)).Concat(a.TakeLast(2)).ToArray();
        Assert.That(SharedPrefix.Split([a, twoImages], image), Is.Null, "the second prompt's last image token is elsewhere");
    }

    [Test]
    public void The_shared_prefix_reaches_past_the_image_into_the_words_every_prompt_starts_with()
    {
        var vla = Load("clip-llama-gqa");
        long image = vla.Model.Config.ImageTokenIndex;
        var a = vla.PromptIds("is the person friendly ?");
        var b = vla.PromptIds("is the person kind ?");
        var c = vla.PromptIds("is the man a chef ?");
        int afterImage = Array.LastIndexOf(a, (int)image) + 1;
        int common = a.AsSpan().CommonPrefixLength(b);
        Assert.That(common, Is.GreaterThan(afterImage + 2), "the prompts share 'is the person' after the image");
        Assert.That(SharedPrefix.Split([a, b], image), Is.EqualTo(common));
        Assert.That(SharedPrefix.Split([a, b, c], image), Is.EqualTo(a.AsSpan().CommonPrefixLength(c)).And.LessThan(common));
        Assert.That(SharedPrefix.Split([a, a], image), Is.EqualTo(a.Length - 1), "identical prompts keep their last token to continue from");
    }
}
