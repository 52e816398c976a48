using NUnit.Framework;
using TorchSharp;
using VlaBias.Adapters;
using VlaBias.Data;
using VlaBias.Evaluation;
using VlaBias.Images;
using VlaBias.Recipes;
using VlaBias.Training;
using static TorchSharp.torch;

namespace VlaBias.Tests.Training;

/// <summary>The loss terms of a debiasing run on a tiny world.</summary>
public class ObjectivesTests
{
    private string dir = "";
    private TinyWorld world = null!;

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("objectives");
        world = new TinyWorld(dir, tunePairs: 4, valPairs: 2, testPairs: 1);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private TuneConfig Config(params (string key, object value)[] overrides)
    {
        var r = Recipe.Load(Path.Combine(TinyWorld.RepoRoot(), "recipes/default.yaml"));
        r.Override("model", world.Model); r.Override("data", world.Manifest); r.Override("suite", world.Suite);
        foreach (var (k, v) in overrides) r.Override(k, v);
        return TuneConfig.From(r);
    }

    [Test]
    public void Terms_follow_the_objective_list_and_weights_in_summing_order()
    {
        var vla = Vla.Load(world.Model);
        var items = Manifest.Load(world.Manifest).Where(i => i.Split == Split.Tune).ToList();
        var data = TuneData.Build(vla, items, WordLists.Load(Path.Combine(TinyWorld.RepoRoot(), "data/words/gender_words.json"), Path.Combine(TinyWorld.RepoRoot(), "data/scenes/world.json")), "describe the image.");
        Assert.That(Objectives.For(Config(), data).Select(t => t.Name), Is.EqualTo(new[] { "parity", "caption_kl", "retain" }));
        Assert.That(Objectives.For(Config(("objective", "parity+unknown"), ("retain_kl_weight", 0.5)), data).Select(t => (t.Name, t.Weight)),
            Is.EqualTo(new[] { ("parity", 1.0), ("caption_kl", 0.1), ("unknown", 1.0), ("retain", 10.0), ("retain_kl", 0.5) }));
        Assert.That(Objectives.For(Config(("objective", "retain"), ("retain_weight", 0)), data), Is.Empty);
    }

    [Test]
    public void Retain_kl_is_zero_for_a_fresh_adapter_and_pulls_a_moved_one_back_to_the_base()
    {
        var cfg = Config(("retain_kl_weight", 1.0), ("retain_per_step", 6));
        var vla = Vla.Load(world.Model);
        var lora = LoraAdapter.Apply(vla.Model, cfg.Lora, cfg.Seed);
        vla.Attach(lora);
        var items = Manifest.Load(world.Manifest).Where(i => i.Split == Split.Tune).OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        var words = WordLists.Load(Path.Combine(TinyWorld.RepoRoot(), "data/words/gender_words.json"), Path.Combine(TinyWorld.RepoRoot(), "data/scenes/world.json"));
        var data = TuneData.Build(vla, items, words, "describe the image.");
        using var bank = ImageBank.Load(items, Path.GetDirectoryName(Path.GetFullPath(world.Manifest))!, vla.Images);
        var term = Objectives.For(cfg, data).Single(t => t.Name == "retain_kl");

        double Kl(bool backward)
        {
            using var scope = NewDisposeScope();
            using var mb = new MicroBatch(vla, lora, data, cfg, new Random(7), bank, null);
            var kl = term.Compute(mb);
            if (backward) kl.backward();
            return kl.ToDouble();
        }

        Assert.That(Kl(false), Is.EqualTo(0).Within(1e-7), "a fresh adapter (B = 0) is the base");
        using (no_grad()) foreach (var m in lora.Modules.Values) m.LoraB.weight.normal_(0, 0.3, generator: new Generator(9));
        double moved = Kl(true);
        TestContext.Out.WriteLine($"retain KL after moving the adapter: {moved:E3}");
        Assert.That(moved, Is.GreaterThan(1e-4));
        Assert.That(lora.Parameters().Any(p => p.grad is not null && p.grad.abs().sum().ToDouble() > 0), "the term has gradients on the adapter");
        Assert.That(vla.Model.LanguageModel.LmHead.weight.grad, Is.Null, "and none on the frozen base");
        Assert.That(lora.Enabled, "the adapter is enabled again after the base forward");
    }

    [Test]
    public void Parity_over_a_shared_image_prefix_equals_full_prompts_in_loss_and_lora_gradients()
    {
        var cfg = Config(("probes_per_pair", 4), ("pairs_per_step", 3));
        var vla = Vla.Load(world.Model);
        var lora = LoraAdapter.Apply(vla.Model, cfg.Lora, cfg.Seed);
        vla.Attach(lora);
        // B ≠ 0: the prefix keys and values then depend on the adapter, so its gradients must flow through the prefix
        using (no_grad()) foreach (var m in lora.Modules.Values) m.LoraB.weight.normal_(0, 0.3, generator: new Generator(5));
        var items = Manifest.Load(world.Manifest).Where(i => i.Split == Split.Tune).OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        var words = WordLists.Load(Path.Combine(TinyWorld.RepoRoot(), "data/words/gender_words.json"), Path.Combine(TinyWorld.RepoRoot(), "data/scenes/world.json"));
        var data = TuneData.Build(vla, items, words, "describe the image.");
        using var bank = ImageBank.Load(items, Path.GetDirectoryName(Path.GetFullPath(world.Manifest))!, vla.Images);
        var term = Objectives.For(cfg, data).Single(t => t.Name == "parity");
        var parameters = lora.Parameters().ToList();

        (double loss, float[][] grads) Run(bool share)
        {
            using var scope = NewDisposeScope();
            foreach (var p in parameters) p.grad = null;
            using var mb = new MicroBatch(vla, lora, data, cfg, new Random(3), bank, null) { SharePrefix = share };
            var loss = term.Compute(mb);
            loss.backward();
            return (loss.ToDouble(), parameters.Select(p => p.grad!.data<float>().ToArray()).ToArray());
        }

        var shared = Run(true);
        var full = Run(false);
        double maxGrad = shared.grads.Zip(full.grads).Max(g => g.First.Zip(g.Second).Max(x => Math.Abs(x.First - x.Second)));
        double scale = full.grads.Max(g => g.Max(Math.Abs));
        TestContext.Out.WriteLine($"parity shared {shared.loss:E6} full {full.loss:E6}; max |Δ grad| {maxGrad:E2} (largest grad {scale:E2}) over {parameters.Count} LoRA tensors");
        Assert.That(full.loss, Is.GreaterThan(1e-6), "the pairs should differ");
        Assert.That(shared.loss, Is.EqualTo(full.loss).Within(1e-5));
        Assert.That(scale, Is.GreaterThan(1e-3));
        Assert.That(maxGrad, Is.LessThan(1e-5));

        // with gradient checkpointing the prefix forward's layers are checkpointed (their keys and values outputs of the
        // checkpoint) and recomputed once each in backward; the continuation keeps its activations
        vla.Model.LanguageModel.Model.GradientCheckpointing = true;
        long before = VlaBias.Model.CheckpointedLayer.Recomputed;
        var checkpointed = Run(true);
        long recomputed = VlaBias.Model.CheckpointedLayer.Recomputed - before;
        before = VlaBias.Model.CheckpointedLayer.Recomputed;
        var checkpointedFull = Run(false);
        long recomputedFull = VlaBias.Model.CheckpointedLayer.Recomputed - before;
        vla.Model.LanguageModel.Model.GradientCheckpointing = false;
        int layers = vla.Model.Config.Text.NumHiddenLayers;
        Assert.That(recomputed, Is.EqualTo(layers), "every prefix layer recomputed once, the continuation not checkpointed");
        Assert.That(recomputedFull, Is.EqualTo(layers), "full prompts: every layer recomputed once");
        double Diff(float[][] a, float[][] b) => a.Zip(b).Max(g => g.First.Zip(g.Second).Max(x => Math.Abs(x.First - x.Second)));
        TestContext.Out.WriteLine($"checkpointed shared {checkpointed.loss:E6} (max |Δ grad| {Diff(checkpointed.grads, shared.grads):E2} to unchecked shared), full {checkpointedFull.loss:E6}");
        Assert.That(checkpointed.loss, Is.EqualTo(shared.loss).Within(1e-6));
        Assert.That(Diff(checkpointed.grads, shared.grads), Is.LessThan(1e-6), "checkpointing the prefix changes no gradient");
        Assert.That(Diff(checkpointed.grads, full.grads), Is.LessThan(1e-5));
        Assert.That(checkpointedFull.loss, Is.EqualTo(full.loss).Within(1e-6));
        Assert.That(Diff(checkpointedFull.grads, full.grads), Is.LessThan(1e-5));
    }
}
