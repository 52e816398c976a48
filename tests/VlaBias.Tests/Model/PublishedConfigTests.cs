using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Bench;
using VlaBias.Model;
using VlaBias.Tests.Cli;

namespace VlaBias.Tests.Model;

/// <summary>
/// Published config.json files (Fixtures/hf_configs, as Hugging Face serves them) load with the shapes transformers
/// gives them: what a file leaves out is its model_type's config-class default.
/// </summary>
public class PublishedConfigTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "hf_configs", name + ".config.json");

    private static JsonObject Minimal() => new()
    {
        ["model_type"] = "llava",
        ["text_config"] = new JsonObject { ["model_type"] = "llama" },
        ["vision_config"] = new JsonObject { ["model_type"] = "clip_vision_model" },
    };

    [Test]
    public void Llava_1_5_7b_text_config_takes_LlamaConfig_defaults()
    {
        var c = LlavaConfig.Load(Fixture("llava-1.5-7b-hf"));
        var t = c.Text;
        // given by the file: vocab 32064, 4096 positions, rms_norm_eps 1e-5; everything else is LlamaConfig's
        Assert.That((t.ModelType, t.HiddenSize, t.IntermediateSize, t.NumHiddenLayers, t.NumAttentionHeads, t.NumKeyValueHeads, t.HeadDim),
                    Is.EqualTo(("llama", 4096, 11008, 32, 32, 32, 128)));
        Assert.That((t.VocabSize, t.MaxPositionEmbeddings, t.RmsNormEps, t.RopeTheta, t.HiddenAct), Is.EqualTo((32064, 4096, 1e-5, 10000.0, "silu")));
        Assert.That((t.TieWordEmbeddings, t.AttentionBias, t.BosTokenId, t.EosTokenId, t.PadTokenId), Is.EqualTo((false, false, (int?)1, (int?)2, (int?)null)));
    }

    [Test]
    public void Llava_1_5_7b_vision_config_takes_CLIPVisionConfig_defaults_for_what_it_omits()
    {
        var c = LlavaConfig.Load(Fixture("llava-1.5-7b-hf"));
        var v = c.Vision;
        Assert.That((v.ModelType, v.HiddenSize, v.IntermediateSize, v.NumHiddenLayers, v.NumAttentionHeads, v.ImageSize, v.PatchSize),
                    Is.EqualTo(("clip_vision_model", 1024, 4096, 24, 16, 336, 14)));
        Assert.That((v.NumChannels, v.HiddenAct, v.LayerNormEps), Is.EqualTo((3, "quick_gelu", 1e-5)));
        Assert.That((c.ImageTokenIndex, c.ImageSeqLength, c.VisionFeatureLayer, c.VisionFeatureSelectStrategy, c.ProjectorHiddenAct, c.ProjectorBias, c.TorchDtype),
                    Is.EqualTo((32000, 576, -2, "default", "gelu", true, "float16")));
    }

    [Test]
    public void Llava_interleave_qwen_0_5b_loads_as_tied_qwen2_with_siglip()
    {
        var c = LlavaConfig.Load(Fixture("llava-interleave-qwen-0.5b-hf"));
        var t = c.Text;
        Assert.That((t.ModelType, t.HiddenSize, t.IntermediateSize, t.NumHiddenLayers, t.NumAttentionHeads, t.NumKeyValueHeads, t.HeadDim),
                    Is.EqualTo(("qwen2", 1024, 2816, 24, 16, 16, 64)));
        // rms_norm_eps is Qwen2Config's default; q/k/v biases are Qwen2's always
        Assert.That((t.VocabSize, t.MaxPositionEmbeddings, t.RmsNormEps, t.RopeTheta, t.TieWordEmbeddings, t.AttentionBias),
                    Is.EqualTo((152000, 32768, 1e-6, 1e6, true, true)));
        Assert.That((t.BosTokenId, t.EosTokenId, t.PadTokenId), Is.EqualTo(((int?)151643, (int?)151645, (int?)null)));
        var v = c.Vision;
        Assert.That((v.ModelType, v.HiddenSize, v.IntermediateSize, v.NumHiddenLayers, v.NumAttentionHeads, v.ImageSize, v.PatchSize, v.HiddenAct, v.LayerNormEps),
                    Is.EqualTo(("siglip_vision_model", 1152, 4304, 26, 16, 384, 14, "gelu_pytorch_tanh", 1e-6)));
        Assert.That((c.ImageTokenIndex, c.ImageSeqLength, c.VisionFeatureLayer, c.VisionFeatureSelectStrategy), Is.EqualTo((151646, 729, -1, "full")));
    }

    [Test]
    public void Real_size_bench_configs_are_the_published_files_as_loaded()
    {
        // The bench writes its own tokenizer (so its own special-token ids) and bf16 weights; every shape is the file's.
        foreach (var (rc, file) in new[] { (RealSizeConfig.Llava15_7B, "llava-1.5-7b-hf"), (RealSizeConfig.InterleaveQwen05B, "llava-interleave-qwen-0.5b-hf") })
        {
            var published = LlavaConfig.Load(Fixture(file));
            var bench = rc.Llava with
            {
                ImageTokenIndex = published.ImageTokenIndex, TorchDtype = published.TorchDtype,
                Text = rc.Llava.Text with { BosTokenId = published.Text.BosTokenId, EosTokenId = published.Text.EosTokenId, PadTokenId = published.Text.PadTokenId },
            };
            Assert.That(bench, Is.EqualTo(published), $"{rc.Name} mirrors {rc.Mirrors}");
            Assert.That(rc.Mirrors, Is.EqualTo("llava-hf/" + file));
        }
    }

    [Test]
    public void Absent_text_and_vision_configs_are_LlavaConfig_defaults()
    {
        var c = LlavaConfig.FromJson(new JsonObject { ["model_type"] = "llava" }, "config.json");
        Assert.That((c.Text.ModelType, c.Text.HiddenSize, c.Text.NumHiddenLayers, c.Text.VocabSize, c.Text.MaxPositionEmbeddings, c.Text.RmsNormEps),
                    Is.EqualTo(("llama", 4096, 32, 32000, 2048, 1e-6)));
        // LLaVA's own tower, not CLIPVisionConfig's ViT-B/32 defaults
        Assert.That((c.Vision.ModelType, c.Vision.HiddenSize, c.Vision.IntermediateSize, c.Vision.NumHiddenLayers, c.Vision.NumAttentionHeads, c.Vision.ImageSize, c.Vision.PatchSize),
                    Is.EqualTo(("clip_vision_model", 1024, 4096, 24, 16, 336, 14)));
        Assert.That((c.ImageTokenIndex, c.ProjectorHiddenAct, c.VisionFeatureLayer, c.VisionFeatureSelectStrategy), Is.EqualTo((32000, "gelu", -2, "default")));
    }

    [Test]
    public void Empty_sub_configs_take_their_class_defaults()
    {
        var c = LlavaConfig.FromJson(Minimal(), "config.json");
        Assert.That((c.Vision.HiddenSize, c.Vision.IntermediateSize, c.Vision.NumHiddenLayers, c.Vision.NumAttentionHeads, c.Vision.ImageSize, c.Vision.PatchSize),
                    Is.EqualTo((768, 3072, 12, 12, 224, 32)), "CLIPVisionConfig");
        Assert.That((c.Text.HiddenSize, c.Text.IntermediateSize, c.Text.NumKeyValueHeads), Is.EqualTo((4096, 11008, 32)), "LlamaConfig");

        var siglip = Minimal();
        siglip["vision_config"]!["model_type"] = "siglip_vision_model";
        var s = LlavaConfig.FromJson(siglip, "config.json").Vision;
        Assert.That((s.PatchSize, s.HiddenAct, s.LayerNormEps), Is.EqualTo((16, "gelu_pytorch_tanh", 1e-6)), "SiglipVisionConfig");
    }

    [TestCase("llama", 16, 16)]   // LlamaConfig: num_attention_heads
    [TestCase("mistral", 32, 8)]  // MistralConfig: 8
    public void Absent_key_value_heads_follow_the_text_class(string type, int heads, int expectedKv)
    {
        var o = Minimal();
        o["text_config"] = new JsonObject { ["model_type"] = type, ["num_attention_heads"] = heads };
        Assert.That(LlavaConfig.FromJson(o, "config.json").Text.NumKeyValueHeads, Is.EqualTo(expectedKv));
    }

    [Test]
    public void Qwen2_absent_key_value_heads_are_32_whatever_the_heads()
    {
        var o = Minimal();
        o["text_config"] = new JsonObject { ["model_type"] = "qwen2", ["num_attention_heads"] = 16, ["num_key_value_heads"] = 16 };
        Assert.That(LlavaConfig.FromJson(o, "config.json").Text.NumKeyValueHeads, Is.EqualTo(16));
        // Qwen2Config's default 32 does not divide 16 heads: a named error, not a broken model
        o["text_config"]!.AsObject().Remove("num_key_value_heads");
        var e = Assert.Throws<BadInputException>(() => LlavaConfig.FromJson(o, "config.json"))!;
        Assert.That(e.Message, Does.Contain("config.json").And.Contain("'text_config.num_key_value_heads': 32 does not divide num_attention_heads 16"));
    }

    [Test]
    public void Qwen2_defaults_without_heads_given_are_Qwen2Config_s()
    {
        var o = Minimal();
        o["text_config"] = new JsonObject { ["model_type"] = "qwen2" };
        var t = LlavaConfig.FromJson(o, "config.json").Text;
        Assert.That((t.HiddenSize, t.IntermediateSize, t.NumHiddenLayers, t.NumAttentionHeads, t.NumKeyValueHeads, t.VocabSize, t.BosTokenId, t.AttentionBias),
                    Is.EqualTo((4096, 22016, 32, 32, 32, 151936, (int?)null, true)));
    }

    [Test]
    public void Explicit_null_token_ids_stay_null_and_absent_ones_take_the_class_default()
    {
        var o = Minimal();
        o["text_config"]!["bos_token_id"] = null;
        var t = LlavaConfig.FromJson(o, "config.json").Text;
        Assert.That((t.BosTokenId, t.EosTokenId), Is.EqualTo(((int?)null, (int?)2)));
        // and a config this project writes (ToJson) reads back as it was
        var again = LlavaConfig.FromJson(LlavaConfig.FromJson(o, "config.json").ToJson(), "config.json");
        Assert.That(again.Text, Is.EqualTo(t));
    }

    [Test]
    public void Rope_theta_is_read_from_rope_parameters_as_transformers_5_writes_it()
    {
        var o = Minimal();
        o["text_config"]!["rope_parameters"] = new JsonObject { ["rope_theta"] = 500000.0, ["rope_type"] = "default" };
        Assert.That(LlavaConfig.FromJson(o, "config.json").Text.RopeTheta, Is.EqualTo(500000.0));
        o["text_config"]!["rope_theta"] = 1e6; // the top-level field wins where both are given
        Assert.That(LlavaConfig.FromJson(o, "config.json").Text.RopeTheta, Is.EqualTo(1e6));
    }

    [TestCase("text_config", "hidden_size", "\"big\"", "field 'text_config.hidden_size': expected an integer")]
    [TestCase("text_config", "num_attention_heads", "0", "field 'text_config.num_attention_heads': 0 must be positive")]
    [TestCase("", "text_config", "3", "field 'text_config': expected an object")]
    public void Wrongly_typed_fields_are_named(string parent, string field, string json, string expected)
    {
        var o = Minimal();
        (parent == "" ? o : o[parent]!.AsObject())[field] = JsonNode.Parse(json);
        var e = Assert.Throws<BadInputException>(() => LlavaConfig.FromJson(o, "/m/config.json"))!;
        Assert.That(e.Message, Does.StartWith("/m/config.json: ").And.Contain(expected));
    }

    [Test]
    public void Unknown_text_model_type_exits_2_naming_the_file_and_field()
    {
        var dir = TestPaths.NewTempDir("hfcfg");
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(Fixture("llava-1.5-7b-hf")))!.AsObject();
            o["text_config"]!["model_type"] = "gpt2";
            string model = Path.Combine(dir, "model");
            Directory.CreateDirectory(model);
            File.WriteAllText(Path.Combine(model, "config.json"), o.ToJsonString());
            var r = CliRunner.Run(dir, "caption", "--model", model, "--dtype", "f32", Path.Combine(AppContext.BaseDirectory, "Fixtures", "images", "inputs", "grace_171x200_grey.png"));
            Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
            Assert.That(r.Stderr, Does.Contain(Path.Combine(model, "config.json")).And.Contain("field 'text_config.model_type': unsupported value 'gpt2' (expected llama, qwen2, mistral)"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
