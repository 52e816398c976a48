using NUnit.Framework;
using VlaBias.Export;
using VlaBias.Generation;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Export;

/// <summary>Export of tiny random models, the files Transformers.js reads, and their agreement with TorchSharp under ONNX Runtime.</summary>
public abstract class OnnxExportFixture
{
    protected string dir = "", exportDir = "";
    protected Vla vla = null!;

    protected abstract Func<int, LlavaConfig>? Config { get; }
    protected abstract string Name { get; }

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("onnx-" + Name);
        RandomCheckpoint.Write(Path.Combine(dir, "model"), TestPaths.Words, seed: 11, std: 0.3, config: Config);
        // Keys vlatune does not model must survive the export's config.json.
        var cfgPath = Path.Combine(dir, "model", "config.json");
        var cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(cfgPath))!.AsObject();
        cfg["_name_or_path"] = "test/source";
        cfg["text_config"]!["rope_scaling"] = null;
        cfg["text_config"]!["initializer_range"] = 0.02;
        File.WriteAllText(cfgPath, cfg.ToJsonString());
        vla = Vla.Load(Path.Combine(dir, "model"));
        // Random init leaves biases at 0 and norm weights at 1; perturb them so the export of each is really checked.
        using (no_grad())
        {
            manual_seed(12);
            foreach (var (name, p) in vla.Model.named_parameters())
                if (name.EndsWith(".bias") || name.Contains("norm") || name.EndsWith("layrnorm.weight")) p.add_(randn_like(p) * 0.1);
        }
        exportDir = Path.Combine(dir, "onnx");
        OnnxExporter.Export(vla, exportDir);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    protected static Tensor Image(int seed, int size = 32) { manual_seed(seed); return randn(3, size, size); }

    protected static void Report(string title, VerificationResult r)
    {
        TestContext.Out.WriteLine($"{title}: max |Δlogit| = {r.MaxAbsDiff:E2} (tolerance {r.Tolerance:E0}), tokens identical: {r.TokensIdentical}");
        foreach (var row in r.Rows)
            TestContext.Out.WriteLine($"  {row.Item,-12} prefill {row.PrefillMaxAbsDiff:E2}  decode({row.DecodeSteps}) {row.DecodeMaxAbsDiff:E2}  same tokens {row.TokensIdentical}  '{row.TorchCaption}' / '{row.OnnxCaption}'");
    }

    private System.Text.Json.Nodes.JsonNode Json(string file) => System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(exportDir, file)))!;

    [Test]
    public void Export_writes_the_layout_Transformers_js_loads()
    {
        foreach (var f in new[] { "onnx/vision_encoder.onnx", "onnx/embed_tokens.onnx", "onnx/decoder_model_merged.onnx", "vlatune_onnx.json", "config.json",
                     "preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "vocab.txt" })
            Assert.That(File.Exists(Path.Combine(exportDir, f)), f);
        Assert.That(File.Exists(Path.Combine(exportDir, "decoder_model.onnx")), Is.False);
        var model = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(exportDir, "onnx", "decoder_model_merged.onnx")));
        Assert.That(model.IrVersion, Is.EqualTo(8));
        Assert.That(model.OpsetImport.Single().Version, Is.EqualTo(17));
        var inputs = model.Graph.Input.Select(i => i.Name).ToList();
        Assert.That(inputs.Take(3), Is.EqualTo(new[] { "inputs_embeds", "attention_mask", "position_ids" }));
        Assert.That(inputs, Does.Contain("past_key_values.1.value"));
        Assert.That(model.Graph.Output.Select(o => o.Name), Is.EquivalentTo(new[] { "logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value" }));
        // Transformers.js builds the empty first-step past from this shape: batch_size → the batch, other names → 0.
        var past = model.Graph.Input.Single(i => i.Name == "past_key_values.0.key").Type.TensorType.Shape.Dim;
        Assert.That(past.Select(d => d.DimParam), Is.EqualTo(new[] { "batch_size", "", "past_sequence_length", "" }));
        Assert.That(past[1].DimValue, Is.EqualTo(vla.Config.Text.NumKeyValueHeads));
        foreach (var g in new[] { "vision_encoder", "embed_tokens", "decoder_model_merged" })
        {
            var graph = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(exportDir, "onnx", g + ".onnx"))).Graph;
            Assert.That(graph.Input.Concat(graph.Output).Select(v => v.Type.TensorType.Shape.Dim[0].DimParam).Distinct(), Is.EqualTo(new[] { "batch_size" }), g);
        }
        Assert.That(model.Graph.Node.Select(n => n.OpType).Distinct(), Does.Not.Contain("Attention").And.Not.Contain("RMSNormalization"));

        var config = Json("config.json");
        Assert.That(config["_name_or_path"]!.GetValue<string>(), Is.EqualTo("test/source"));
        Assert.That(config["text_config"]!.AsObject().ContainsKey("rope_scaling"));
        Assert.That(config["text_config"]!["initializer_range"]!.GetValue<double>(), Is.EqualTo(0.02));
        Assert.That(config["text_config"]!["num_hidden_layers"]!.GetValue<int>(), Is.EqualTo(vla.Config.Text.NumHiddenLayers));
        Assert.That(config.AsObject().ContainsKey("transformers.js_config"), Is.False, "no external data, nothing to declare");
        Assert.That(Json("preprocessor_config.json")["processor_class"]!.GetValue<string>(), Is.EqualTo("LlavaProcessor"));
        var processor = Json("processor_config.json");
        Assert.That(processor["image_token"]!.GetValue<string>(), Is.EqualTo("<image>"));
        int perSide = vla.Config.Vision.ImageSize / processor["patch_size"]!.GetValue<int>();
        Assert.That(perSide * perSide + processor["num_additional_image_tokens"]!.GetValue<int>(), Is.EqualTo(vla.Config.ImageSeqLength));
        var tc = Json("tokenizer_config.json");
        Assert.That(tc["padding_side"]!.GetValue<string>(), Is.EqualTo("left"));
        Assert.That(tc["chat_template"]!.GetValue<string>(), Does.Contain("add_generation_prompt"));
        var gen = Json("generation_config.json");
        Assert.That(gen["eos_token_id"]!.GetValue<int>(), Is.EqualTo(vla.Tokenizer.EosId));
        Assert.That(gen["suppress_tokens"]!.AsArray().Select(x => x!.GetValue<int>()),
            Is.EquivalentTo(new[] { vla.Tokenizer.ImageTokenId, vla.Tokenizer.PadId, vla.Tokenizer.BosId }.Where(t => t != vla.Tokenizer.EosId).Distinct()));
        using var onnx = OnnxVla.Load(exportDir);
        Assert.That(onnx.Info.ImageSeqLength, Is.EqualTo(vla.Config.ImageSeqLength));
        Assert.That(onnx.Tokenizer.TokenizerJson, Is.Not.Null, "the export's tokenizer is its tokenizer.json");
        Assert.That(onnx.Prompts.Ids("describe the image."), Is.EqualTo(vla.PromptIds("describe the image.")));
    }

    [Test]
    public void Onnx_logits_and_greedy_tokens_match_torch_per_image()
    {
        var r = ExportVerifier.Verify(vla, exportDir, [Image(1), Image(2), Image(3)], "describe the image.", decodeSteps: 12);
        Report($"{Name} per image", r);
        Assert.That(r.Rows, Has.Count.EqualTo(4));
        Assert.That(r.MaxAbsDiff, Is.LessThanOrEqualTo(1e-4));
        Assert.That(r.TokensIdentical);
        Assert.That(r.Passed);
    }

    [Test]
    public void Left_padded_batch_matches_torch()
    {
        // Prompts of different lengths: the shorter rows are left-padded, so masks and position ids matter.
        var r = ExportVerifier.Verify(vla, exportDir,
            [(Image(4), "describe the image."), (Image(5), "is the person a chef ?"), (Image(6), "image")], decodeSteps: 10);
        Report($"{Name} padded batch", r);
        var batchRow = r.Rows.Last();
        Assert.That(batchRow.Item, Does.StartWith("batch"));
        Assert.That(batchRow.MaxAbsDiff, Is.LessThanOrEqualTo(1e-4));
        Assert.That(r.Passed);
    }

    [Test]
    public void Beam_search_gives_the_same_sequences_as_TextGenerator()
    {
        using var _ = no_grad();
        using var onnx = OnnxVla.Load(exportDir);
        var ids = new List<int[]> { vla.PromptIds("describe the image."), vla.PromptIds("is the person a chef ?") };
        using var batch = vla.Batch(ids, [Image(7), Image(8)]);
        var options = new GenerationOptions(MaxNewTokens: 8, NumBeams: 3);
        var torchOut = new TextGenerator(vla).Generate(batch, options);
        var onnxOut = new TextGenerator(onnx).Generate(batch, options);
        for (int i = 0; i < 2; i++)
        {
            TestContext.Out.WriteLine($"beam row {i}: '{torchOut[i].Text}' / '{onnxOut[i].Text}'");
            Assert.That(onnxOut[i].Tokens, Is.EqualTo(torchOut[i].Tokens));
            Assert.That(onnxOut[i].LogProbs, Is.EqualTo(torchOut[i].LogProbs).Within(1e-4f));
        }
    }

    [Test]
    public void Caption_from_image_files_matches_torch()
    {
        var png = Path.Combine(dir, "scene.png");
        using (var bmp = new SkiaSharp.SKBitmap(48, 40))
        {
            for (int y = 0; y < 40; y++) for (int x = 0; x < 48; x++) bmp.SetPixel(x, y, new SkiaSharp.SKColor((byte)(x * 5), (byte)(y * 6), (byte)((x + y) * 2)));
            using var f = File.Create(png);
            bmp.Encode(f, SkiaSharp.SKEncodedImageFormat.Png, 100);
        }
        using var onnx = OnnxVla.Load(exportDir);
        var onnxOut = new Captioner(onnx, onnx.Images).CaptionFiles([png], null, GenerationOptions.Greedy(10)).Select(r => r.Caption!).ToList();
        using var batch = vla.Batch([vla.PromptIds(onnx.Prompts.CaptionPrompt)], [vla.Images.Load(png)]);
        var torchOut = new TextGenerator(vla).Generate(batch, GenerationOptions.Greedy(10));
        Assert.That(onnxOut.Single().Tokens, Is.EqualTo(torchOut.Single().Tokens));
        Assert.That(onnxOut.Single().Text, Is.EqualTo(torchOut.Single().Text));
    }
}

[TestFixture]
public class ClipLlamaOnnxExportTests : OnnxExportFixture
{
    protected override string Name => "clip-llama";
    protected override Func<int, LlavaConfig>? Config => null;   // RandomCheckpoint default: CLIP + Llama with GQA (4 heads, 2 kv heads)

    [Test]
    public void External_data_path_writes_one_data_file_and_gives_the_same_logits()
    {
        var ext = Path.Combine(dir, "onnx-external");
        var result = OnnxExporter.Export(vla, ext, externalThreshold: 4_000);
        Assert.That(result.ExternalData);
        var declared = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(ext, "config.json")))!["transformers.js_config"]!["use_external_data_format"]!.AsObject();
        foreach (var g in new[] { "vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx" })
        {
            // Transformers.js fetches "<graph>.onnx_data" for each graph config.json declares.
            Assert.That(File.Exists(Path.Combine(ext, "onnx", g + "_data")), g + "_data");
            Assert.That(declared[g]!.GetValue<int>(), Is.EqualTo(1), g);
            var model = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(ext, "onnx", g)));
            Assert.That(model.Graph.Initializer.Where(t => t.DataLocation == Onnx.TensorProto.Types.DataLocation.External)
                .Select(t => t.ExternalData.Single(e => e.Key == "location").Value).Distinct(), Is.EqualTo(new[] { g + "_data" }));
            Assert.That(new FileInfo(Path.Combine(ext, "onnx", g)).Length, Is.LessThan(new FileInfo(Path.Combine(exportDir, "onnx", g)).Length));
        }
        var r = ExportVerifier.Verify(vla, ext, [Image(9)], "describe the image.", decodeSteps: 4);
        Report("external data", r);
        Assert.That(r.Passed);
    }

    [Test]
    public void Graph_paths_outside_the_export_folder_are_refused()
    {
        var copy = Path.Combine(dir, "onnx-copy");
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(exportDir)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        var info = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(copy, OnnxExporter.InfoFile)))!;
        info["graphs"]!["decoder"] = "../elsewhere/decoder_model_merged.onnx";
        File.WriteAllText(Path.Combine(copy, OnnxExporter.InfoFile), info.ToJsonString());
        var e = Assert.Throws<BadInputException>(() => OnnxVla.Load(copy))!;
        Assert.That(e.Message, Does.Contain("graphs.decoder").And.Contain(OnnxExporter.InfoFile));
    }

    [Test]
    public void Verifier_fails_an_export_of_a_different_model()
    {
        // The check is not vacuous: the same architecture with other weights must miss the tolerance by far.
        var other = Path.Combine(dir, "other");
        RandomCheckpoint.Write(other, TestPaths.Words, seed: 99, std: 0.3);
        var r = ExportVerifier.Verify(Vla.Load(other), exportDir, [Image(10)], "describe the image.", decodeSteps: 3);
        TestContext.Out.WriteLine($"other weights: max |Δlogit| = {r.MaxAbsDiff:E2}");
        Assert.That(r.MaxAbsDiff, Is.GreaterThan(0.1));
        Assert.That(r.Passed, Is.False);
    }
}

[TestFixture]
public class SiglipQwen2OnnxExportTests : OnnxExportFixture
{
    protected override string Name => "siglip-qwen2";

    /// <summary>Like Fixtures/golden/siglip-qwen2: SigLIP tower (no CLS, tanh gelu, last layer, "full"), Qwen2 with q/k/v biases, tied embeddings, GQA.</summary>
    protected override Func<int, LlavaConfig>? Config => vocab => new LlavaConfig(
        new VisionConfig("siglip_vision_model", 32, 64, 2, 4, 32, 8, 3, "gelu_pytorch_tanh", 1e-6),
        new TextConfig("qwen2", 64, 128, 2, 4, 2, 16, vocab, 128, 1e-6, 10000.0, "silu", TieWordEmbeddings: true, AttentionBias: true, 2, 3, 0),
        4, "gelu", -1, "full", true, "float32");

    [Test]
    public void Qwen2_biases_are_exported()
    {
        var model = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(exportDir, "onnx", "decoder_model_merged.onnx")));
        Assert.That(model.Graph.Initializer.Select(t => t.Name), Does.Contain("language_model.model.layers.0.self_attn.q_proj.bias"));
        // SigLIP with "full": every patch is an image token (no CLS to drop).
        Assert.That(vla.Config.ImageSeqLength, Is.EqualTo(16));
    }
}
