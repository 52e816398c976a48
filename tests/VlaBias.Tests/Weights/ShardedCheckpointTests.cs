using System.Text.Json;
using NUnit.Framework;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Weights;

public class ShardedCheckpointTests
{
    private TempFolder _folder = null!;

    [SetUp] public void CreateFolder() => _folder = new TempFolder();
    [TearDown] public void RemoveFolder() => _folder.Dispose();

    /// <summary>Five F32 tensors of 40 bytes each, in a fixed order.</summary>
    private static Dictionary<string, Tensor> FiveTensors() => new()
    {
        ["model.embed_tokens.weight"] = RawSafeTensors.Noise(SafeDType.F32, [2, 5], seed: 1),
        ["model.layers.0.self_attn.q_proj.weight"] = RawSafeTensors.Noise(SafeDType.F32, [10], seed: 2),
        ["model.layers.0.mlp.gate_proj.weight"] = RawSafeTensors.Noise(SafeDType.F32, [5, 2], seed: 3),
        ["model.norm.weight"] = RawSafeTensors.Noise(SafeDType.F32, [10], seed: 4),
        ["lm_head.weight"] = RawSafeTensors.Noise(SafeDType.F32, [2, 5], seed: 5),
    };

    private static void Dispose(IReadOnlyDictionary<string, ITensorFile> files)
    {
        foreach (var file in files.Values.Distinct()) file.Dispose();
    }

    [Test]
    public void Sharded_save_and_load_round_trip_with_a_small_shard_limit()
    {
        var tensors = FiveTensors();

        ShardedCheckpoint.SaveFolder(_folder.Path, tensors, maxShardBytes: 100);
        var files = ShardedCheckpoint.OpenFolder(_folder.Path);

        try
        {
            Assert.That(Directory.GetFiles(_folder.Path).Select(Path.GetFileName).Order(), Is.EqualTo(new[]
            {
                "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
                "model.safetensors.index.json",
            }));
            Assert.That(files.Keys, Is.EquivalentTo(tensors.Keys));
            foreach (var (name, tensor) in tensors)
            {
                using var read = ((SafeTensorsFile)files[name]).Read(name);
                Assert.That(RawSafeTensors.Bytes(read), Is.EqualTo(RawSafeTensors.Bytes(tensor)), name);
            }
            Assert.That(((SafeTensorsFile)files["model.embed_tokens.weight"]).Metadata["format"], Is.EqualTo("pt"), "shards carry format=pt like transformers");
        }
        finally
        {
            Dispose(files);
        }
    }

    [Test]
    public void Index_json_has_total_size_and_a_sorted_weight_map_like_transformers()
    {
        ShardedCheckpoint.SaveFolder(_folder.Path, FiveTensors(), maxShardBytes: 100);
        string text = File.ReadAllText(_folder.File("model.safetensors.index.json"));
        using var index = JsonDocument.Parse(text);

        Assert.That(index.RootElement.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "metadata", "weight_map" }));
        Assert.That(index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64(), Is.EqualTo(200));
        var weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.That(weightMap.Keys, Is.Ordered.Using((IComparer<string>)StringComparer.Ordinal));
        // Filled in dictionary order, 100 bytes per shard: two tensors, two tensors, one tensor.
        Assert.That(weightMap["model.embed_tokens.weight"], Is.EqualTo("model-00001-of-00003.safetensors"));
        Assert.That(weightMap["model.layers.0.self_attn.q_proj.weight"], Is.EqualTo("model-00001-of-00003.safetensors"));
        Assert.That(weightMap["model.layers.0.mlp.gate_proj.weight"], Is.EqualTo("model-00002-of-00003.safetensors"));
        Assert.That(weightMap["model.norm.weight"], Is.EqualTo("model-00002-of-00003.safetensors"));
        Assert.That(weightMap["lm_head.weight"], Is.EqualTo("model-00003-of-00003.safetensors"));
        Assert.That(text, Does.StartWith("{\n  \"metadata\": {\n    \"total_size\": 200\n  },\n  \"weight_map\": {\n    \"lm_head.weight\": "));
        Assert.That(text, Does.EndWith("}\n"));
    }

    [Test]
    public void A_tensor_larger_than_the_limit_gets_a_shard_of_its_own()
    {
        var tensors = new Dictionary<string, Tensor> { ["small1"] = ones(5), ["big"] = ones(100), ["small2"] = ones(5) };

        var shards = ShardedCheckpoint.Split(tensors, maxShardBytes: 100);

        Assert.That(shards, Is.EqualTo(new[] { new[] { "big" }, new[] { "small1", "small2" } }));
    }

    [Test]
    public void One_shard_is_saved_as_model_safetensors_and_replaces_an_earlier_sharded_save()
    {
        ShardedCheckpoint.SaveFolder(_folder.Path, FiveTensors(), maxShardBytes: 100);

        ShardedCheckpoint.SaveFolder(_folder.Path, FiveTensors());
        var files = ShardedCheckpoint.OpenFolder(_folder.Path);

        Assert.That(Directory.GetFiles(_folder.Path).Select(Path.GetFileName), Is.EqualTo(new[] { "model.safetensors" }));
        Assert.That(files.Keys, Is.EquivalentTo(FiveTensors().Keys));
        Dispose(files);
    }

    [Test]
    public void Missing_shard_is_reported_naming_the_shard_file_and_the_index()
    {
        ShardedCheckpoint.SaveFolder(_folder.Path, FiveTensors(), maxShardBytes: 100);
        File.Delete(_folder.File("model-00002-of-00003.safetensors"));

        var error = Assert.Throws<BadInputException>(() => ShardedCheckpoint.OpenFolder(_folder.Path));

        Assert.That(error!.Message, Does.Contain("model-00002-of-00003.safetensors").And.Contain("model.safetensors.index.json"));
    }

    [Test]
    public void Tensor_listed_in_the_index_but_absent_from_its_shard_is_reported()
    {
        ShardedCheckpoint.SaveFolder(_folder.Path, FiveTensors(), maxShardBytes: 100);
        string indexPath = _folder.File("model.safetensors.index.json");
        File.WriteAllText(indexPath, File.ReadAllText(indexPath)
            .Replace("\"lm_head.weight\": \"model-00003-of-00003.safetensors\"", "\"lm_head.weight\": \"model-00001-of-00003.safetensors\""));

        var error = Assert.Throws<BadInputException>(() => ShardedCheckpoint.OpenFolder(_folder.Path));

        Assert.That(error!.Message, Does.Contain("'lm_head.weight'").And.Contain("model-00001-of-00003.safetensors").And.Contain("index"));
    }

    [Test]
    public void Folder_with_neither_model_safetensors_nor_an_index_is_reported()
    {
        var error = Assert.Throws<BadInputException>(() => ShardedCheckpoint.OpenFolder(_folder.Path));

        Assert.That(error!.Message, Does.Contain(_folder.Path).And.Contain("model.safetensors").And.Contain("model.safetensors.index.json"));
    }

    [Test]
    public void Index_pointing_outside_the_folder_is_refused()
    {
        File.WriteAllText(_folder.File("model.safetensors.index.json"),
            "{\"metadata\":{\"total_size\":4},\"weight_map\":{\"w\":\"../elsewhere.safetensors\"}}");

        var error = Assert.Throws<BadInputException>(() => ShardedCheckpoint.OpenFolder(_folder.Path));

        Assert.That(error!.Message, Does.Contain("'w'").And.Contain("../elsewhere.safetensors"));
    }

    [Test]
    public void Corrupt_shard_is_reported_with_the_shard_path()
    {
        ShardedCheckpoint.SaveFolder(_folder.Path, FiveTensors(), maxShardBytes: 100);
        string shard = _folder.File("model-00003-of-00003.safetensors");
        File.WriteAllBytes(shard, File.ReadAllBytes(shard)[..^1]);

        var error = Assert.Throws<BadInputException>(() => ShardedCheckpoint.OpenFolder(_folder.Path));

        Assert.That(error!.Message, Does.Contain(shard).And.Contain("'lm_head.weight'"));
    }
}
