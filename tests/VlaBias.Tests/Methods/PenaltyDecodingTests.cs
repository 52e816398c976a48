using NUnit.Framework;
using TorchSharp;
using VlaBias.Generation;
using VlaBias.Methods;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Methods;

public class PenaltyDecodingTests
{
    private string dir = "";
    private Vla vla = null!;

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("penalty");
        RandomCheckpoint.Write(dir, TestPaths.Words, seed: 4, std: 0.3);
        vla = Vla.Load(dir);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private Batch Batch()
    {
        manual_seed(21);
        return vla.Batch([vla.PromptIds("describe the image."), vla.PromptIds("describe the image."), vla.PromptIds("is the person friendly ?")],
            [randn(3, 32, 32), randn(3, 32, 32), randn(3, 32, 32)]);
    }

    [Test]
    public void Zero_penalty_equals_plain_beam_search()
    {
        var gen = new TextGenerator(vla);
        using var batch = Batch();
        var opts = new GenerationOptions(10, 3);
        var plain = gen.Generate(batch, opts);
        var zero = gen.Generate(batch, opts, GenderPenalty.Create(vla.Tokenizer, ["man", "woman"], 0.0));
        for (int r = 0; r < plain.Count; r++)
        {
            Assert.That(zero[r].Tokens, Is.EqualTo(plain[r].Tokens), $"row {r}");
            Assert.That(zero[r].LogProbs, Is.EqualTo(plain[r].LogProbs), $"row {r}");
        }
    }

    [Test]
    public void Large_penalty_keeps_gendered_words_out_of_the_output()
    {
        var gen = new TextGenerator(vla);
        using var batch = Batch();
        var ids = GenderPenalty.TokenIds(vla.Tokenizer, ["man", "woman"]);
        Assert.That(ids, Has.Count.EqualTo(2));
        // make the gendered words attractive: without a penalty some beam output contains them
        var outs = gen.Generate(batch, new GenerationOptions(10, 3), GenderPenalty.Create(vla.Tokenizer, ["man", "woman"], 1e6));
        foreach (var o in outs) Assert.That(o.Tokens.Intersect(ids), Is.Empty, o.Text);
        var penalty = GenderPenalty.Create(vla.Tokenizer, ["man", "woman"], 2.5);
        Assert.That(penalty([], ids.First()), Is.EqualTo(-2.5));
        vla.Tokenizer.TryGetId("kitchen", out var neutral);
        Assert.That(penalty([], neutral), Is.EqualTo(0.0));
    }

    [Test]
    public void Word_lists_load_from_the_gender_json_and_from_plain_text()
    {
        var repo = Training.TinyWorld.RepoRoot();
        var json = GenderPenalty.LoadWords(Path.Combine(repo, "data/words/gender_words.json"));
        Assert.That(json, Does.Contain("man").And.Contain("woman").And.Not.Contain("person"));
        var txt = Path.Combine(dir, "words.txt");
        File.WriteAllText(txt, "# mine\nMan\nwoman\n\n");
        Assert.That(GenderPenalty.LoadWords(txt), Is.EqualTo(new[] { "man", "woman" }));
    }

    [Test]
    public void Prompt_prefix_goes_before_the_prompt_and_unknown_words_are_reported()
    {
        var plain = vla.PromptIds("describe the image.");
        vla.Prompts = vla.Prompts with { Prefix = "the person" };
        try
        {
            var prefixed = vla.PromptIds("describe the image.");
            Assert.That(prefixed.Length, Is.EqualTo(plain.Length + 2));
        }
        finally { vla.Prompts = vla.Prompts with { Prefix = null }; }
        Assert.That(Interventions.UnknownWords(vla, "the person is unknowable"), Is.EqualTo(new[] { "unknowable" }));
        var applied = new Interventions { Fairness = true }.Apply(vla);
        Assert.That(vla.Prompts.Prefix, Is.EqualTo(Interventions.FairnessInstruction));
        applied.Dispose();
        Assert.That(vla.Prompts.Prefix, Is.Null);
    }
}
