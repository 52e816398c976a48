using NUnit.Framework;
using VlaBias.Export;
using VlaBias.Model;
using VlaBias.Tests.Data;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Export;

/// <summary>
/// A small committed export (Fixtures/onnx/clip-llama-tiny, CLIP + Llama with GQA) with TorchSharp's logits for a
/// left-padded two-image batch. It is in the layout exports had before the Transformers.js one (graphs beside
/// config.json, decoder_model.onnx, a vocab.txt tokenizer), which OnnxVla and `vlatune caption --engine onnx` still read. The same files pass Debian's ONNX 1.12 checker:
/// <c>/usr/bin/python3 tools/reference/check_onnx.py tests/VlaBias.Tests/Fixtures/onnx</c>.
/// </summary>
public class OnnxFixtureTests
{
    private const string Name = "clip-llama-tiny";
    private static string Fixture => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "onnx", Name);

    [Test]
    public void Committed_export_loads_and_reproduces_torch_logits()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var onnx = OnnxVla.Load(Fixture);
        var expected = SafeTensors.Load(Path.Combine(Fixture, "expected.safetensors"));
        using var batch = new Batch(expected["input_ids"], expected["attention_mask"], expected["pixel_values"]);
        var logits = onnx.Logits(batch);
        float diff = (logits - expected["logits"]).abs().max().item<float>();
        TestContext.Out.WriteLine($"{Name}: max |Δlogit| ONNX Runtime vs committed TorchSharp logits = {diff:E2}");
        Assert.That(diff, Is.LessThanOrEqualTo(1e-4f));
        foreach (var g in new[] { "vision_encoder.onnx", "embed_tokens.onnx", "decoder_model.onnx" })
        {
            var model = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(Fixture, g)));
            Assert.That((model.IrVersion, model.OpsetImport.Single().Version), Is.EqualTo((8L, 17L)), g);
        }
    }

    /// <summary>Rewrites the fixture in the source tree (run by hand after a deliberate change of the export format).</summary>
    [Test, Explicit("writes into the source tree")]
    public void Regenerate_fixture()
    {
        var tmp = TestPaths.NewTempDir("onnx-fixture");
        try
        {
            var model = RandomCheckpoint.Write(tmp, TestPaths.Words, seed: 5, std: 0.3,
                config: v => RandomCheckpoint.ClipLlama(v, visionHidden: 16, hidden: 32, intermediate: 64, heads: 4, kvHeads: 2, maxPositions: 128));
            var vla = Vla.Load(tmp);
            var outDir = Path.Combine(RepoPaths.Root, "tests", "VlaBias.Tests", "Fixtures", "onnx", Name);
            if (Directory.Exists(outDir)) Directory.Delete(outDir, true);
            OnnxExporter.Export(vla, outDir);
            using var _ = no_grad();
            manual_seed(1);
            using var batch = vla.Batch([vla.PromptIds("describe the image."), vla.PromptIds("is the person a chef ?")], [randn(3, 32, 32), randn(3, 32, 32)]);
            var logits = vla.Model.call(batch.Input()).Logits!;
            SafeTensors.Save(Path.Combine(outDir, "expected.safetensors"), new Dictionary<string, Tensor>
            {
                ["input_ids"] = batch.InputIds, ["attention_mask"] = batch.Mask, ["pixel_values"] = batch.Pixels!, ["logits"] = logits,
            });
        }
        finally { Directory.Delete(tmp, true); }
    }
}
