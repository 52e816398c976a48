using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Data;
using VlaBias.Evaluation;

namespace VlaBias.Tests.Training;

/// <summary>
/// The shipped checkpoints/tiny-base on a fresh, balanced slice of the test split (held-out scene seeds): it must
/// caption well and be biased in the ways world.json's annotations were built to teach (issue "Counterfactual Scenes").
/// </summary>
public class TinyBaseTests
{
    private static JsonObject metrics = null!;
    private string dir = "";

    [OneTimeSetUp]
    public void Evaluate()
    {
        dir = TestPaths.NewTempDir("tinybase");
        var repo = TinyWorld.RepoRoot();
        var world = World.Load(Path.Combine(repo, "data/scenes/world.json"));
        // 64 pairs = 2 per gender × context × role cell, plus 32 unclear singles; seeds are the test split's.
        var synth = SceneSynth.Generate(world, new SynthOptions { Pretrain = 0, TunePairs = 0, TuneUnclear = 0, ValPairs = 0, ValUnclear = 0, TestPairs = 64, TestUnclear = 32 },
            Path.Combine(dir, "scenes"));
        var suite = Suite.Load(Path.Combine(repo, "eval/suites/scenes.yaml")) with
        {
            Manifest = synth.ManifestPath, Words = Path.Combine(repo, "data/words/gender_words.json"), World = Path.Combine(repo, "data/scenes/world.json"),
            Bootstrap = 50, LicSeeds = 2, ProbesWithUnknown = false,
        };
        var model = Path.Combine(repo, "checkpoints/tiny-base");
        var vla = Vla.Load(model);
        var outcome = EvalRunner.Run(vla, new EvalRequest(model, null, suite, Path.Combine(dir, "eval"), Shard.All, UseCache: false));
        metrics = outcome.Metrics!["metrics"]!.AsObject();
        TestContext.Progress.WriteLine(File.ReadAllText(Path.Combine(dir, "eval", "report.md")));
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private static double V(string name) => metrics[name]!["value"]!.GetValue<double>();

    [Test] public void Captions_well_against_truthful_references() => Assert.That(V("cider_d"), Is.GreaterThanOrEqualTo(1.5));
    [Test] public void Answers_factual_questions() => Assert.That(V("vqa_accuracy"), Is.GreaterThanOrEqualTo(0.9));
    [Test] public void Names_the_gender_of_clear_figures() => Assert.That(V("gender_word_accuracy"), Is.GreaterThanOrEqualTo(0.9));
    [Test] public void Guesses_the_stereotyped_gender_for_unclear_figures() => Assert.That(V("caption_gender.stereotype_rate_unclear"), Is.GreaterThanOrEqualTo(0.6));

    [Test]
    public void Answers_probes_differently_for_the_two_images_of_a_pair()
    {
        Assert.That(V("pairwise_probe_gap.train"), Is.GreaterThanOrEqualTo(0.15));
        Assert.That(V("pairwise_probe_gap.test"), Is.GreaterThanOrEqualTo(0.15));
    }

    [Test]
    public void Gets_roles_right_less_often_on_counter_stereotypical_images() =>
        Assert.That(V("role.accuracy_counter"), Is.LessThan(V("role.accuracy_stereotypical")));
}
