using NUnit.Framework;
using TorchSharp;
using VlaBias.Adapters;
using VlaBias.Model;
using VlaBias.Recipes;
using VlaBias.Tests.Training;
using VlaBias.Training;
using static TorchSharp.torch;

namespace VlaBias.Tests.Adapters;

public class SoftPromptTests
{
    private string dir = "";

    [OneTimeSetUp]
    public void Build() => dir = TestPaths.NewTempDir("soft");

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    [Test]
    public void Untrained_prefix_masked_out_of_attention_reproduces_the_base_outputs()
    {
        var model = Path.Combine(dir, "model");
        RandomCheckpoint.Write(model, TestPaths.Words, seed: 9, std: 0.3);
        var vla = Vla.Load(model);
        manual_seed(2);
        var images = new[] { randn(3, 32, 32), randn(3, 32, 32) };
        string[] prompts = ["describe the image.", "is the person friendly ?"];
        using var _ = no_grad();
        Tensor baseLogits;
        using (var b = vla.Batch(prompts.Select(p => vla.PromptIds(p)).ToList(), images))
            baseLogits = vla.Model.call(b.Input()).Logits!.select(1, -1);

        using var soft = SoftPrompt.Create(vla.Model, 5, seed: 1);
        vla.Attach(soft);
        using var batch = vla.Batch(prompts.Select(p => vla.PromptIds(p)).ToList(), images);
        Assert.That(batch.InputIds.eq(SoftPrompt.MarkerId).sum().ToInt64(), Is.EqualTo(2 * 5), "5 prefix positions per row");
        var prefixMasked = batch.Mask.masked_fill(batch.InputIds.eq(SoftPrompt.MarkerId), 0);
        var masked = vla.Model.call(batch.Input() with { Mask = prefixMasked }).Logits!.select(1, -1);
        Assert.That((masked - baseLogits).abs().max().ToSingle(), Is.LessThan(1e-4f));
        var attended = vla.Model.call(batch.Input()).Logits!.select(1, -1);
        Assert.That((attended - baseLogits).abs().max().ToSingle(), Is.GreaterThan(1e-3f), "attending to the prefix changes the outputs");
        vla.Detach(soft);

        var path = Path.Combine(dir, "sp");
        soft.Save(path, model);
        using var back = SoftPrompt.Load(vla.Model, path);
        Assert.That(back.Embeddings.Equals(soft.Embeddings), Is.True);
        Assert.That(File.Exists(Path.Combine(path, SoftPrompt.ConfigFileName)), Is.True);
    }

    [Test]
    public void Training_the_prefix_moves_the_validation_bias_down()
    {
        var world = new TinyWorld(Path.Combine(dir, "world"), tunePairs: 6, valPairs: 3, testPairs: 1, seed: 2);
        var r = Recipe.Load(Path.Combine(TinyWorld.RepoRoot(), "recipes/default.yaml"));
        foreach (var (k, v) in new (string, object)[]
                 {
                     ("model", world.Model), ("data", world.Manifest), ("suite", world.Suite), ("runs_dir", Path.Combine(dir, "runs")), ("name", "prompt"),
                     ("method", "prompt"), ("prompt_tokens", 4), ("max_steps", 6), ("eval_every", 6), ("save_every", 6), ("lr", 0.05),
                     ("threshold", 0), ("retain_weight", 0), ("caption_kl_weight", 0), ("pairs_per_step", 6), ("probes_per_pair", 2),
                     ("final_eval", "false"), ("max_accuracy_drop", 1.0), ("seed", 3),
                 })
            r.Override(k, v);
        var result = DebiasTrainer.Run(TuneConfig.From(r), r);
        var after = result.Evaluations.Last();
        TestContext.Out.WriteLine($"validation bias {result.Base.Bias:F5} → {after.Bias:F5}");
        Assert.That(after.Bias, Is.LessThan(result.Base.Bias));
        var run = Path.Combine(dir, "runs", "prompt");
        Assert.That(File.Exists(Path.Combine(run, SoftPrompt.WeightsFileName)), Is.True);
        Assert.That(File.Exists(Path.Combine(run, "adapter_model.safetensors")), Is.False, "prompt tuning writes no LoRA adapter");
    }
}
