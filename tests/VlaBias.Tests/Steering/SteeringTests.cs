using NUnit.Framework;
using TorchSharp;
using VlaBias.Model;
using VlaBias.Steering;
using static TorchSharp.torch;

namespace VlaBias.Tests.Steering;

/// <summary>Steering hooks on a random model: zero vectors are inert, hooks go away on dispose, removal projects out.</summary>
public class SteeringTests
{
    private string dir = "";
    private Vla vla = null!;
    private int hidden;

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("steer");
        RandomCheckpoint.Write(dir, TestPaths.Words, seed: 3, std: 0.3);
        vla = Vla.Load(dir);
        hidden = vla.Config.Text.HiddenSize;
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private Tensor Logits()
    {
        using var _ = no_grad();
        manual_seed(11);
        var images = new[] { randn(3, 32, 32), randn(3, 32, 32) };
        using var batch = vla.Batch([vla.PromptIds("describe the image."), vla.PromptIds("is the person friendly ?")], images);
        return vla.Model.call(batch.Input()).Logits!.detach();
    }

    private SteeringVectors Vectors(Func<Tensor> make) =>
        new(Enumerable.Range(0, vla.Config.Text.NumHiddenLayers).ToDictionary(l => l, _ => make()), new Dictionary<string, string>());

    [Test]
    public void Zero_vector_changes_nothing()
    {
        var baseLogits = Logits();
        using var zero = Vectors(() => zeros(hidden));
        foreach (var mode in new[] { SteerMode.Remove, SteerMode.Add })
        {
            using var scope = zero.Apply(vla.Model, 1.0, mode);
            Assert.That(Logits().Equals(baseLogits), Is.True, $"mode {mode}");
        }
    }

    [Test]
    public void Hook_is_removed_after_use()
    {
        var baseLogits = Logits();
        manual_seed(5);
        using var v = Vectors(() => randn(hidden));
        using (v.Apply(vla.Model, 2.0, SteerMode.Add))
            Assert.That((Logits() - baseLogits).abs().max().ToSingle(), Is.GreaterThan(1e-3f), "the hook should change the logits while applied");
        Assert.That(Logits().Equals(baseLogits), Is.True, "after disposal the logits are the base logits again");
        using (v.Apply(vla.Model, 1.0, SteerMode.Remove)) { }
        Assert.That(Logits().Equals(baseLogits), Is.True);
    }

    [Test]
    public void Removal_with_scale_one_makes_activations_orthogonal_to_the_direction()
    {
        manual_seed(6);
        using var v = Vectors(() => randn(hidden));
        var layers = vla.Model.LanguageModel.Model.Layers;
        var before = new Dictionary<int, Tensor>();
        var after = new Dictionary<int, Tensor>();
        void Capture(Dictionary<int, Tensor> into)
        {
            // registered after the steering hooks, so it sees their result
            var handles = Enumerable.Range(0, layers.Count).Select(l => layers[l].register_forward_hook((_, _, o) =>
            {
                into[l] = o.detach().clone().DetachFromDisposeScope();
                return o;
            })).ToList();
            Logits();
            foreach (var h in handles) h.remove();
        }
        Capture(before);
        using (v.Apply(vla.Model, 1.0, SteerMode.Remove)) Capture(after);
        foreach (var (l, dirv) in v.ByLayer)
        {
            var unit = dirv / dirv.norm();
            double projBefore = (before[l] * unit).sum(-1).abs().max().ToDouble();
            double projAfter = (after[l] * unit).sum(-1).abs().max().ToDouble();
            double scale = after[l].norm(-1).max().ToDouble();
            Assert.That(projBefore, Is.GreaterThan(1e-2), $"layer {l}: the base activations should have a component along v");
            Assert.That(projAfter, Is.LessThan(1e-5 * Math.Max(1, scale)), $"layer {l}: component along v̂ after removal");
        }
    }

    [Test]
    public void Vectors_survive_a_file_round_trip_and_bad_layers_are_rejected()
    {
        manual_seed(7);
        var path = Path.Combine(dir, "v.safetensors");
        using (var v = new SteeringVectors(new Dictionary<int, Tensor> { [1] = randn(hidden) }, new Dictionary<string, string> { ["method"] = "test" }))
        {
            v.Save(path);
            using var back = SteeringVectors.Load(path);
            Assert.That(back.ByLayer.Keys, Is.EqualTo(new[] { 1 }));
            Assert.That(back.ByLayer[1].Equals(v.ByLayer[1]), Is.True);
            Assert.That(back.Metadata["method"], Is.EqualTo("test"));
        }
        using var wrong = new SteeringVectors(new Dictionary<int, Tensor> { [9] = randn(hidden) }, new Dictionary<string, string>());
        Assert.Throws<BadInputException>(() => wrong.Apply(vla.Model, 1, SteerMode.Remove));
        Assert.That(SteeringBuilder.ParseLayers("1,0", 2), Is.EqualTo(new[] { 0, 1 }));
        Assert.Throws<BadInputException>(() => SteeringBuilder.ParseLayers("2", 2));
    }

    [Test]
    public void Gradient_vector_has_one_direction_per_layer_and_is_not_zero()
    {
        var repo = Training.TinyWorld.RepoRoot();
        var words = VlaBias.Evaluation.WordLists.Load(Path.Combine(repo, "data/words/gender_words.json"), Path.Combine(repo, "data/scenes/world.json"));
        using var v = SteeringBuilder.Gradient(vla, words, [0, 1], "describe the image.", images: 3, seed: 1, maxNewTokens: 4);
        Assert.That(v.ByLayer.Keys.Order(), Is.EqualTo(new[] { 0, 1 }));
        foreach (var t in v.ByLayer.Values)
        {
            Assert.That(t.shape, Is.EqualTo(new long[] { hidden }));
            Assert.That(t.norm().ToDouble(), Is.GreaterThan(0));
        }
        Assert.That(vla.Model.parameters().All(p => p.grad is null || p.grad.abs().max().ToDouble() == 0), Is.True, "no gradient left on the model");
    }
}
