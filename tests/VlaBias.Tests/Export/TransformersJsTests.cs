using System.Diagnostics;
using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Adapters;
using VlaBias.Cli.Commands;
using VlaBias.Data;
using VlaBias.Export;
using VlaBias.Generation;
using VlaBias.Model;
using VlaBias.Tests.Cli;
using VlaBias.Tests.Data;
using static TorchSharp.torch;

namespace VlaBias.Tests.Export;

/// <summary>
/// The folder `vlatune export` writes, loaded as it is by Hugging Face Transformers.js 4.3.1 in Node
/// (tools/tfjs/caption.mjs: AutoProcessor + LlavaForConditionalGeneration, greedy): on 20 test images of the synthetic
/// world its prompt ids and caption token ids must be those of `vlatune caption` (TorchSharp, adapter applied) and of
/// the ONNX engine (`vlatune caption --engine onnx`). Once for tiny-base with a LoRA adapter whose B matrices are random (so it changes
/// the captions), once for a random SigLIP + Qwen2 checkpoint with such an adapter. The images are rendered at each
/// model's input size, so no resampling (sharp in Node, SkiaSharp here) enters the comparison.
/// </summary>
public class TransformersJsTests
{
    private const int Images = 20, MaxNewTokens = 24;
    private string dir = "";

    [OneTimeSetUp]
    public void Setup() => dir = TestPaths.NewTempDir("tfjs-export");

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    /// <summary>The first 20 test-split images of a small synthetic world rendered at <paramref name="size"/> pixels.</summary>
    private List<string> TestImages(int size)
    {
        var outDir = Path.Combine(dir, $"scenes{size}");
        var result = SceneSynth.Generate(RepoPaths.World, new SynthOptions { Pretrain = 0, TunePairs = 0, TuneUnclear = 0, ValPairs = 0, ValUnclear = 0, TestPairs = 10, TestUnclear = 4, ImageSize = size }, outDir);
        var images = result.Items.Where(i => i.Split == Split.Test).Take(Images).Select(i => Path.Combine(outDir, i.Image)).ToList();
        Assert.That(images, Has.Count.EqualTo(Images));
        return images;
    }

    /// <summary>A LoRA adapter on every default target with random B (std <paramref name="std"/>), saved in PEFT's format.</summary>
    private string TunedAdapter(string model, string name, double std)
    {
        var vla = Vla.Load(model);
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(R: 4, Alpha: 8, BaseModelNameOrPath: model), seed: 7);
        using (no_grad())
        {
            var gen = new Generator(8);
            foreach (var m in adapter.Modules.Values) m.LoraB.weight.normal_(0, std, generator: gen);
        }
        var path = Path.Combine(dir, name);
        adapter.Save(path);
        return path;
    }

    private static List<int[]> CaptionIds(CliRunner.Result r, int expected)
    {
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(expected));
        return lines.Select(l => JsonNode.Parse(l)!["tokens"]!.AsArray().Select(t => t!["id"]!.GetValue<int>()).ToArray()).ToList();
    }

    private void ExportAndCompare(string name, string model, string adapter, List<string> images)
    {
        var sw = Stopwatch.StartNew();
        string export = Path.Combine(dir, name + "-onnx");
        var ex = CliRunner.Run(dir, "export", "--model", model, "--adapter", adapter, "--out", export);
        Assert.That(ex.ExitCode, Is.EqualTo(0), ex.Stderr);
        foreach (var f in new[] { "onnx/vision_encoder.onnx", "onnx/embed_tokens.onnx", "onnx/decoder_model_merged.onnx", "config.json", "tokenizer.json",
                     "tokenizer_config.json", "preprocessor_config.json", "processor_config.json", "generation_config.json" })
            Assert.That(File.Exists(Path.Combine(export, f)), f);

        var vla = Vla.Load(model);
        string prompt = vla.Prompts.CaptionPrompt;
        string[] common = ["--json", "--max-new-tokens", MaxNewTokens.ToString()];
        var tuned = CaptionIds(CliRunner.Run(dir, ["caption", "--model", model, "--adapter", adapter, .. common, .. images]), images.Count);
        // The ONNX engine and the base model without the adapter run in this process: the same code as the CLI's.
        List<int[]> onnx, untuned;
        using (var ort = OnnxVla.Load(export))
            onnx = new Captioner(ort, ort.Images).CaptionFiles(images, prompt, GenerationOptions.Greedy(MaxNewTokens), images.Count).Select(r => r.Caption!.Tokens).ToList();
        using (no_grad())
        using (var batch = vla.Batch(images.Select(_ => vla.PromptIds(prompt)).ToList(), images.Select(vla.Images.Load).ToList()))
            untuned = new TextGenerator(vla).Generate(batch, GenerationOptions.Greedy(MaxNewTokens)).Select(g => g.Tokens).ToList();

        var input = Path.Combine(dir, name + "-images.json");
        var output = Path.Combine(dir, name + "-tfjs.json");
        File.WriteAllText(input, new JsonArray(images.Select(i => (JsonNode)i).ToArray()).ToJsonString());
        Tfjs.Run("caption.mjs", export, input, output, prompt, MaxNewTokens.ToString());
        var js = JsonNode.Parse(File.ReadAllText(output))!;
        var items = js["items"]!.AsArray();
        Assert.That(items, Has.Count.EqualTo(images.Count));

        // The prompt as Transformers.js builds it (chat_template, <image> expanded by the processor, tokenizer.json)
        // is vlatune's prompt, token for token.
        var promptIds = vla.PromptIds(prompt);
        int sameTorch = 0, sameOnnx = 0, changed = 0;
        for (int i = 0; i < images.Count; i++)
        {
            var it = items[i]!;
            Assert.That(it["input_ids"]!.AsArray().Select(x => x!.GetValue<int>()), Is.EqualTo(promptIds), $"prompt ids, {images[i]}");
            var ids = it["generated_ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
            if (ids.SequenceEqual(tuned[i])) sameTorch++;
            if (ids.SequenceEqual(onnx[i])) sameOnnx++;
            if (!tuned[i].SequenceEqual(untuned[i])) changed++;
            if (i < 3) TestContext.Out.WriteLine($"  {Path.GetFileName(images[i])}: Transformers.js '{it["caption"]}' [{string.Join(",", ids)}]");
        }
        TestContext.Out.WriteLine($"{name}: prompt '{js["prompt"]}' ({promptIds.Length} ids) identical on {images.Count}/{images.Count}; " +
            $"caption ids identical to `vlatune caption` (TorchSharp + adapter) on {sameTorch}/{images.Count}, to the ONNX engine (`vlatune caption --engine onnx`) on {sameOnnx}/{images.Count}; " +
            $"the adapter changed {changed}/{images.Count} captions; {sw.Elapsed.TotalSeconds:F1} s");
        Assert.That(sameTorch, Is.EqualTo(images.Count));
        Assert.That(sameOnnx, Is.EqualTo(images.Count));
        Assert.That(changed, Is.GreaterThan(0), "the adapter must change some captions, or the test would not see it merged");
    }

    [Test]
    public void Tiny_base_with_a_tuned_adapter_captions_the_same_in_Transformers_js()
    {
        string model = Path.Combine(RepoPaths.Root, "checkpoints", "tiny-base");
        ExportAndCompare("tiny-base", model, TunedAdapter(model, "tiny-adapter", std: 0.3), TestImages(48));
    }

    [Test]
    public void An_export_with_external_data_loads_in_Transformers_js()
    {
        // Weights past the threshold go to onnx/<graph>.onnx_data, declared in config.json's transformers.js_config.
        var vla = Vla.Load(Path.Combine(RepoPaths.Root, "checkpoints", "tiny-base"));
        string export = Path.Combine(dir, "external-onnx");
        Assert.That(OnnxExporter.Export(vla, export, externalThreshold: 100_000).ExternalData);
        var images = TestImages(48).Take(3).ToList();
        string prompt = vla.Prompts.CaptionPrompt;
        var input = Path.Combine(dir, "external-images.json");
        var output = Path.Combine(dir, "external-tfjs.json");
        File.WriteAllText(input, new JsonArray(images.Select(i => (JsonNode)i).ToArray()).ToJsonString());
        Tfjs.Run("caption.mjs", export, input, output, prompt, MaxNewTokens.ToString());
        var js = JsonNode.Parse(File.ReadAllText(output))!["items"]!.AsArray()
            .Select(it => it!["generated_ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray()).ToList();
        using var _ = no_grad();
        using var batch = vla.Batch(images.Select(_ => vla.PromptIds(prompt)).ToList(), images.Select(vla.Images.Load).ToList());
        var torch = new TextGenerator(vla).Generate(batch, GenerationOptions.Greedy(MaxNewTokens)).Select(g => g.Tokens).ToList();
        Assert.That(js, Is.EqualTo(torch));
    }

    [Test]
    public void Random_siglip_qwen2_with_a_tuned_adapter_captions_the_same_in_Transformers_js()
    {
        string model = Path.Combine(dir, "siglip-qwen2");
        RandomCheckpoint.WriteQwen2Siglip(model, TestPaths.Words, seed: 11, std: 0.3);
        ExportAndCompare("siglip-qwen2", model, TunedAdapter(model, "qwen-adapter", std: 0.1), TestImages(32));
    }
}
