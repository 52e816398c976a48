using NUnit.Framework;
using TorchSharp;
using VlaBias.Adapters;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Model;

public class GradientCheckpointTests
{
    /// <summary>LoRA gradients (and the loss) of one batch with and without checkpointing, padded rows included.</summary>
    private static (double loss, Dictionary<string, float[]> grads, float[] pixelGrad) Grads(LlavaConfig cfg, bool checkpoint, bool padded)
    {
        manual_seed(3);
        var model = new LlavaModel(cfg);
        model.InitWeights(0.05, 3);
        var adapter = LoraAdapter.Apply(model, new LoraConfig(R: 4, Alpha: 8), seed: 5);
        // non-zero B so the adapters change the function and every factor gets a gradient
        using (no_grad()) foreach (var p in adapter.Parameters()) p.normal_(0, 0.05);
        model.LanguageModel.Model.GradientCheckpointing = checkpoint;
        model.train();
        var gen = new Generator(11);
        long b = 3, t = 9;
        var embeds = randn([b, t, cfg.Text.HiddenSize], generator: gen) * 0.5;
        var labels = randint(0, cfg.Text.VocabSize, [b, t], generator: gen);
        var mask = ones(b, t, dtype: ScalarType.Int64);
        if (padded) { mask[0, 0] = 0; mask[0, 1] = 0; mask[2, 0] = 0; }
        var loss = model.call(new ModelInput { InputsEmbeds = embeds, Labels = labels, Mask = padded ? mask : null }).Loss!;
        loss.backward();
        var grads = adapter.Parameters().Select((p, i) => (i, p)).ToDictionary(x => $"p{x.i}", x => x.p.grad!.data<float>().ToArray());
        return (loss.ToDouble(), grads, []);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Checkpointed_decoder_layers_give_the_same_loss_and_lora_gradients(bool padded)
    {
        var cfg = RandomCheckpoint.ClipLlama(50, hidden: 32, layers: 3, heads: 4, kvHeads: 2, intermediate: 64);
        long before = CheckpointedLayer.Recomputed;
        var (loss0, g0, _) = Grads(cfg, checkpoint: false, padded);
        Assert.That(CheckpointedLayer.Recomputed, Is.EqualTo(before), "no recomputation without checkpointing");
        var (loss1, g1, _) = Grads(cfg, checkpoint: true, padded);
        Assert.That(CheckpointedLayer.Recomputed - before, Is.EqualTo(cfg.Text.NumHiddenLayers), "every decoder layer recomputed once in backward");
        Assert.That(loss1, Is.EqualTo(loss0).Within(1e-6));
        Assert.That(g1.Keys, Is.EquivalentTo(g0.Keys));
        double maxAbs = g0.Values.SelectMany(v => v).Max(v => Math.Abs(v));
        Assert.That(maxAbs, Is.GreaterThan(1e-4), "the reference gradients are not trivially zero");
        foreach (var (name, reference) in g0)
        {
            var got = g1[name];
            for (int i = 0; i < reference.Length; i++)
                Assert.That(got[i], Is.EqualTo(reference[i]).Within(1e-6 + 1e-4 * Math.Abs(reference[i])), $"{name}[{i}]");
        }
    }

    [Test]
    public void Checkpointing_also_passes_gradients_to_the_input_embeddings()
    {
        var cfg = RandomCheckpoint.ClipLlama(50, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64);
        float[] Run(bool checkpoint)
        {
            manual_seed(3);
            var model = new LlavaModel(cfg);
            model.InitWeights(0.05, 3);
            foreach (var p in model.parameters()) p.requires_grad = false;
            model.LanguageModel.Model.GradientCheckpointing = checkpoint;
            var gen = new Generator(2);
            var embeds = (randn([2, 5, 32], generator: gen) * 0.5).requires_grad_(true);
            var labels = randint(0, 50, [2, 5], generator: gen);
            model.call(new ModelInput { InputsEmbeds = embeds, Labels = labels }).Loss!.backward();
            return embeds.grad!.data<float>().ToArray();
        }
        var reference = Run(false);
        var got = Run(true);
        Assert.That(reference.Max(Math.Abs), Is.GreaterThan(1e-5));
        for (int i = 0; i < reference.Length; i++) Assert.That(got[i], Is.EqualTo(reference[i]).Within(1e-6 + 1e-4 * Math.Abs(reference[i])));
    }
}
