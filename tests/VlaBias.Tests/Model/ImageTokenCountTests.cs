using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Generation;
using VlaBias.Images;
using VlaBias.Model;

namespace VlaBias.Tests.Model;

/// <summary>
/// The number of image tokens one &lt;image&gt; becomes, as Hugging Face's LlavaProcessor counts it from
/// processor_config.json: (height // patch_size) · (width // patch_size) + num_additional_image_tokens, minus 1 for
/// vision_feature_select_strategy "default" (processing_llava.py), with the model's features to match.
/// </summary>
public class ImageTokenCountTests
{
    private string dir = "";

    [OneTimeSetUp]
    public void Setup() => dir = TestPaths.NewTempDir("imgtok");

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private static int Count(int[] ids, int imageId) => ids.Count(i => i == imageId);

    [Test]
    public void Random_siglip_checkpoint_with_default_strategy_captions_with_Hugging_Faces_count()
    {
        var model = Path.Combine(dir, "siglip-default");
        // SigLIP 32 px, patch 8: 16 patches and no CLS. "default" drops the first feature: 15, as HF's LlavaModel does.
        RandomCheckpoint.Write(model, TestPaths.Words, seed: 2,
            config: v => RandomCheckpoint.SiglipQwen2(v) with { VisionFeatureSelectStrategy = "default" });
        // llava-interleave-qwen's processor_config.json fields: SigLIP has no CLS, so num_additional_image_tokens 0.
        File.WriteAllText(Path.Combine(model, ProcessorConfig.FileName), new JsonObject
        {
            ["processor_class"] = "LlavaProcessor", ["patch_size"] = 8, ["num_additional_image_tokens"] = 0,
            ["vision_feature_select_strategy"] = "default", ["image_token"] = "<image>",
        }.ToJsonString());
        var vla = Vla.Load(model);
        int hfCount = (32 / 8) * (32 / 8) + 0 - 1;                        // processing_llava.py with these fields
        Assert.That(vla.ImageTokens, Is.EqualTo(hfCount).And.EqualTo(15));
        Assert.That(Count(vla.PromptIds("describe the image ."), vla.Config.ImageTokenIndex), Is.EqualTo(15));

        var image = Path.Combine(AppContext.BaseDirectory, "Fixtures", "images", "inputs", "grace_171x200_grey.png");
        using var px = vla.Images.Load(image);
        using var batch = vla.Batch([vla.PromptIds("describe the image .")], [px]);
        var outs = new TextGenerator(vla).Generate(batch, new GenerationOptions(4, 1));
        Assert.That(outs[0].Tokens, Is.Not.Empty, "captions instead of failing on a token/feature mismatch");

        var cli = Cli.CliRunner.Run(dir, "caption", "--model", model, image, "--max-new-tokens", "3");
        Assert.That(cli.ExitCode, Is.EqualTo(0), cli.Stderr);
        Assert.That(cli.Stdout, Does.StartWith(image + "\t"));
    }

    [TestCase("clip_vision_model", "default", 16)]   // patches + CLS − 1
    [TestCase("clip_vision_model", "full", 17)]      // patches + CLS
    [TestCase("siglip_vision_model", "default", 15)] // patches − 1
    [TestCase("siglip_vision_model", "full", 16)]    // patches
    public void Model_feature_count_follows_tower_and_strategy(string tower, string strategy, int expected)
    {
        var cfg = RandomCheckpoint.ClipLlama(40);
        cfg = cfg with { VisionFeatureSelectStrategy = strategy, Vision = cfg.Vision with { ModelType = tower } };
        Assert.That(cfg.ImageSeqLength, Is.EqualTo(expected));
        using var model = new LlavaModel(cfg);
        using var feats = model.ImageFeatures(TorchSharp.torch.zeros(1, 3, 32, 32));
        Assert.That(feats.shape[1], Is.EqualTo(expected), "the prompt count is what the model gives");
    }

    [Test]
    public void Llava15_processor_config_gives_576_image_tokens()
    {
        // llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14 at 336, processor_config.json patch_size 14, num_additional_image_tokens 1, "default".
        var path = Path.Combine(dir, "llava15");
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, ProcessorConfig.FileName),
            """{"patch_size": 14, "num_additional_image_tokens": 1, "vision_feature_select_strategy": "default", "processor_class": "LlavaProcessor"}""");
        var baseCfg = RandomCheckpoint.ClipLlama(40);
        var cfg = baseCfg with { Vision = baseCfg.Vision with { ImageSize = 336, PatchSize = 14 } };
        var pre = PreprocessorConfig.ForSize(336) with { DoPad = true };
        Assert.That(ProcessorConfig.Load(path).ImageTokens(cfg, pre), Is.EqualTo(576));
    }

    [Test]
    public void Processor_config_that_disagrees_with_the_model_is_an_error_naming_the_file()
    {
        var path = Path.Combine(dir, "mismatch");
        Directory.CreateDirectory(path);
        // num_additional_image_tokens 1 claims a CLS token, which a SigLIP tower does not have
        File.WriteAllText(Path.Combine(path, ProcessorConfig.FileName),
            """{"patch_size": 8, "num_additional_image_tokens": 1, "vision_feature_select_strategy": "full"}""");
        var cfg = RandomCheckpoint.SiglipQwen2(40);
        var e = Assert.Throws<BadInputException>(() => ProcessorConfig.Load(path).ImageTokens(cfg, PreprocessorConfig.ForSize(32)))!;
        Assert.That(e.Message, Does.Contain(ProcessorConfig.FileName).And.Contain("17 image tokens").And.Contain("16 image features"));
    }
}
