using NUnit.Framework;
using TorchSharp;
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Model;

/// <summary>
/// Logits of our model against an independent PyTorch implementation written from the published architectures
/// (tools/reference/llava_reference.py, fixtures committed under Fixtures/golden). Padded query positions are
/// excluded: they attend to nothing and their values are implementation-defined.
/// </summary>
public class GoldenTests
{
    private static string Fixture(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "golden", name);

    private static (float maxDiff, float featDiff) Compare(string name, ScalarType dtype, string expectedFile)
    {
        using var scope = NewDisposeScope();
        var dir = Fixture(name);
        var model = LlavaModel.FromPretrained(dir, dtype);
        var inputs = SafeTensors.Load(Path.Combine(dir, "inputs.safetensors"));
        var expected = SafeTensors.Load(Path.Combine(dir, expectedFile));
        using var _ = no_grad();
        var logits = model.call(new ModelInput { InputIds = inputs["input_ids"], Pixels = inputs["pixel_values"], Mask = inputs["attention_mask"], Positions = inputs["position_ids"] })
            .Logits!.to_type(ScalarType.Float32);
        var real = inputs["attention_mask"].to_type(ScalarType.Bool).unsqueeze(-1);
        var diff = (logits - expected["logits"].to_type(ScalarType.Float32)).abs().masked_fill(real.logical_not(), 0);
        var feats = model.ImageFeatures(inputs["pixel_values"]).to_type(ScalarType.Float32);
        var featDiff = (feats - expected["image_features"].to_type(ScalarType.Float32)).abs().max().ToSingle();
        return (diff.max().ToSingle(), featDiff);
    }

    [TestCase("clip-llama-gqa")]
    [TestCase("siglip-qwen2")]
    public void Logits_match_reference_within_1e4_in_fp32(string name)
    {
        var (maxDiff, featDiff) = Compare(name, ScalarType.Float32, "expected.safetensors");
        TestContext.Out.WriteLine($"{name}: max |Δlogit| = {maxDiff:E2}, max |Δimage feature| = {featDiff:E2}");
        Assert.That(featDiff, Is.LessThanOrEqualTo(1e-4f));
        Assert.That(maxDiff, Is.LessThanOrEqualTo(1e-4f));
    }

    /// <summary>BF16 compute against the reference's BF16 compute: rounding differs op by op, so the tolerance is 0.1
    /// absolute on logits of magnitude up to about 4 (the reference itself differs from fp32 by up to 0.074).</summary>
    [Test]
    public void Logits_match_reference_in_bf16_within_documented_tolerance()
    {
        var (maxDiff, _) = Compare("clip-llama-gqa", ScalarType.BFloat16, "expected_bf16.safetensors");
        TestContext.Out.WriteLine($"bf16: max |Δlogit| = {maxDiff:E2}");
        Assert.That(maxDiff, Is.LessThanOrEqualTo(0.1f));
    }
}
