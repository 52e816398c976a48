using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Model;

/// <summary>A broken checkpoint folder fails to load with a message naming what is wrong.</summary>
public class CheckpointErrorTests
{
    private string dir = "";

    [SetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("ckpt-err");
        var model = RandomCheckpoint.Write(dir, TestPaths.Words);
        // re-save in small shards, so there is a shard to lose
        foreach (var f in Directory.GetFiles(dir, "model*.safetensors*")) File.Delete(f);
        model.SavePretrained(dir, maxShardBytes: 40_000);
        Assert.That(Directory.GetFiles(dir, "model-*.safetensors"), Has.Length.GreaterThan(1));
    }

    [TearDown]
    public void Clean() => Directory.Delete(dir, true);

    [Test]
    public void Missing_shard_is_named()
    {
        var shard = Directory.GetFiles(dir, "model-*.safetensors").Order().Last();
        File.Delete(shard);
        var e = Assert.Throws<BadInputException>(() => LlavaModel.FromPretrained(dir))!;
        Assert.That(e.Message, Does.Contain(Path.GetFileName(shard)));
    }

    [Test]
    public void Mis_shaped_tensor_is_named_with_both_shapes()
    {
        var shard = Directory.GetFiles(dir, "model-*.safetensors").Order().First();
        var tensors = SafeTensors.Load(shard);
        var name = tensors.Keys.First(k => k.EndsWith("q_proj.weight"));
        var shape = tensors[name].shape;
        tensors[name] = zeros(shape[0], shape[1] + 1);
        SafeTensors.Save(shard, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var e = Assert.Throws<BadInputException>(() => LlavaModel.FromPretrained(dir))!;
        Assert.That(e.Message, Does.Contain($"tensor '{name}' has shape [{shape[0]}, {shape[1] + 1}], expected [{shape[0]}, {shape[1]}]"));
    }

    [TestCase("model_type", "blip_2", "field 'model_type': unsupported value 'blip_2'")]
    [TestCase("text_config.model_type", "gpt2", "field 'text_config.model_type': unsupported value 'gpt2'")]
    [TestCase("vision_config.model_type", "dinov2", "field 'vision_config.model_type': unsupported value 'dinov2'")]
    public void Unknown_model_type_is_named(string field, string value, string expected)
    {
        var path = Path.Combine(dir, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        var parts = field.Split('.');
        (parts.Length == 1 ? cfg : cfg[parts[0]]!.AsObject())[parts[^1]] = value;
        File.WriteAllText(path, cfg.ToJsonString());
        var e = Assert.Throws<BadInputException>(() => LlavaModel.FromPretrained(dir))!;
        Assert.That(e.Message, Does.Contain(expected));
        Assert.That(e.Message, Does.Contain("config.json"));
    }

    [Test]
    public void Bf16_load_creates_bf16_parameters_and_restores_the_default_dtype()
    {
        var model = LlavaModel.FromPretrained(dir, ScalarType.BFloat16);
        Assert.That(model.parameters().All(p => p.dtype == ScalarType.BFloat16), Is.True);
        Assert.That(get_default_dtype(), Is.EqualTo(ScalarType.Float32));
    }
}
