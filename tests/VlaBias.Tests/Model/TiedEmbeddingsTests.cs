using NUnit.Framework;
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Model;

/// <summary>
/// tie_word_embeddings (Qwen2 0.5B): lm_head is the embedding table, one tensor in memory and in the checkpoint, as in
/// transformers, where a tied checkpoint has no lm_head.weight.
/// </summary>
public class TiedEmbeddingsTests
{
    private string dir = "";

    [SetUp]
    public void Make() => dir = TestPaths.NewTempDir("tied");

    [TearDown]
    public void Clean() => Directory.Delete(dir, true);

    private static (Tensor Head, Tensor Embed) Weights(LlavaModel m) => (m.LanguageModel.LmHead.weight, m.LanguageModel.Model.EmbedTokens.weight!);

    [Test]
    public void Tied_lm_head_is_the_embedding_tensor_and_untied_is_not()
    {
        // TorchSharp hands out a new Parameter wrapper per getter call, so sameness is tested on the storage: a write
        var tied = Weights(new LlavaModel(RandomCheckpoint.SiglipQwen2(40)));
        using (no_grad()) tied.Embed[3, 5] = tensor(7.5f);
        Assert.That(tied.Head[3, 5].item<float>(), Is.EqualTo(7.5f), "a write to the embedding is seen by lm_head: the same storage");

        var untied = Weights(new LlavaModel(RandomCheckpoint.ClipLlama(40)));
        using (no_grad()) untied.Embed[3, 5] = tensor(7.5f);
        Assert.That(untied.Head[3, 5].item<float>(), Is.Not.EqualTo(7.5f));
    }

    [Test]
    public void Tied_checkpoint_is_saved_without_lm_head_and_loads_into_the_shared_tensor()
    {
        var saved = RandomCheckpoint.WriteQwen2Siglip(dir, TestPaths.Words, seed: 4, std: 0.1);
        using (var file = TensorFile.Open(Path.Combine(dir, ShardedCheckpoint.SingleFileName)))
            Assert.That(file.Shapes.Keys, Does.Contain("language_model.model.embed_tokens.weight").And.No.Contain("language_model.lm_head.weight"));
        var loaded = LlavaModel.FromPretrained(dir);
        var (head, embed) = Weights(loaded);
        Assert.That(head.allclose(Weights(saved).Embed), Is.True, "lm_head holds the saved embedding table");
        using (no_grad()) embed[0, 1] = tensor(-3.25f);
        Assert.That(head[0, 1].item<float>(), Is.EqualTo(-3.25f), "and still shares its storage after loading");
    }

    [Test]
    public void Untied_checkpoint_without_lm_head_is_a_named_error()
    {
        var model = RandomCheckpoint.Write(dir, TestPaths.Words);
        var path = Path.Combine(dir, "model.safetensors");
        var tensors = SafeTensors.Load(path);
        Assert.That(tensors.Remove("language_model.lm_head.weight"), Is.True);
        SafeTensors.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var e = Assert.Throws<BadInputException>(() => LlavaModel.FromPretrained(dir))!;
        Assert.That(e.Message, Does.Contain("missing tensor 'language_model.lm_head.weight'"));
        Assert.That(model.Config.Text.TieWordEmbeddings, Is.False);
    }
}
