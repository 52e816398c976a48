using NUnit.Framework;
using TorchSharp;
using VlaBias.Adapters;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Adapters;

/// <summary>LoRA and the soft prompt behind one face (ITunable): disabling gives the base exactly; saved weights read back.</summary>
public class TunerTests
{
    private string dir = "";

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("tuners");
        RandomCheckpoint.Write(Path.Combine(dir, "model"), TestPaths.Words, seed: 17, std: 0.3);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private static Tensor LastLogits(Vla vla)
    {
        using var _ = no_grad();
        manual_seed(3);
        using var batch = vla.Batch([vla.PromptIds("describe the image."), vla.PromptIds("is the person friendly ?")], [randn(3, 32, 32), randn(3, 32, 32)]);
        return vla.Model.call(batch.Input(LogitsMode.Last)).LastLogits.clone();
    }

    private static float MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().ToSingle();

    [Test]
    public void Disabled_lora_gives_the_base_outputs_exactly_and_saved_weights_read_back()
    {
        var vla = Vla.Load(Path.Combine(dir, "model"));
        var before = LastLogits(vla);
        var lora = LoraAdapter.Apply(vla.Model, new LoraConfig(R: 4), seed: 1);
        vla.Attach(lora);
        using (no_grad()) foreach (var m in lora.Modules.Values) m.LoraB.weight.normal_(0, 0.2, generator: new Generator(5));
        var tuned = LastLogits(vla);
        Assert.That(MaxDiff(tuned, before), Is.GreaterThan(1e-3f));
        using (lora.Disable())
        {
            Assert.That(lora.Enabled, Is.False);
            Assert.That(MaxDiff(LastLogits(vla), before), Is.EqualTo(0f));
        }
        Assert.That(MaxDiff(LastLogits(vla), tuned), Is.EqualTo(0f), "enabled again after the scope");

        var saved = Path.Combine(dir, "lora");
        lora.Save(saved);
        using (no_grad()) foreach (var m in lora.Modules.Values) m.LoraB.weight.zero_();
        Assert.That(MaxDiff(LastLogits(vla), before), Is.LessThan(1e-6f));
        lora.LoadWeights(saved);
        Assert.That(MaxDiff(LastLogits(vla), tuned), Is.EqualTo(0f));
        Assert.That(lora.CheckpointTensors().Keys, Has.All.Contain(".lora_"));
        Assert.That(lora.CheckpointTensors().Count, Is.EqualTo(lora.Parameters().Count()));
    }

    [Test]
    public void Disabled_soft_prompt_builds_the_base_prompts_and_saved_weights_read_back()
    {
        var vla = Vla.Load(Path.Combine(dir, "model"));
        var before = LastLogits(vla);
        var plainIds = vla.PromptIds("describe the image.");
        using var soft = SoftPrompt.Create(vla.Model, 3, seed: 2);
        vla.Attach(soft);
        Assert.That(vla.PromptIds("describe the image."), Has.Length.EqualTo(plainIds.Length + 3));
        var tuned = LastLogits(vla);
        Assert.That(MaxDiff(tuned, before), Is.GreaterThan(1e-3f));
        using (soft.Disable())
        {
            Assert.That(vla.PromptIds("describe the image."), Is.EqualTo(plainIds));
            Assert.That(vla.Prompts.VirtualTokens, Is.Null);
            Assert.That(MaxDiff(LastLogits(vla), before), Is.EqualTo(0f));
        }
        var saved = Path.Combine(dir, "soft");
        soft.Save(saved);
        using (no_grad()) soft.Embeddings.zero_();
        Assert.That(MaxDiff(LastLogits(vla), tuned), Is.GreaterThan(1e-3f));
        soft.LoadWeights(saved);
        Assert.That(MaxDiff(LastLogits(vla), tuned), Is.EqualTo(0f));
        Assert.That(soft.CheckpointTensors().Single().Value.Handle, Is.EqualTo(soft.Embeddings.Handle));
    }
}
