using NUnit.Framework;
using TorchSharp;
using VlaBias.Export;
using VlaBias.Generation;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Generation;

/// <summary>The one decoder over its three engines: TorchSharp with a KV cache, TorchSharp recomputing, ONNX Runtime.</summary>
public class EngineTests
{
    private string dir = "";
    private Vla vla = null!;
    private OnnxVla onnx = null!;

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("engines");
        RandomCheckpoint.Write(Path.Combine(dir, "model"), TestPaths.Words, seed: 13, std: 0.3);
        vla = Vla.Load(Path.Combine(dir, "model"));
        OnnxExporter.Export(vla, Path.Combine(dir, "onnx"));
        onnx = OnnxVla.Load(Path.Combine(dir, "onnx"));
    }

    [OneTimeTearDown]
    public void Clean()
    {
        onnx.Dispose();
        Directory.Delete(dir, true);
    }

    /// <summary>Three prompts of different lengths (left padding) with one image each.</summary>
    private Batch PaddedBatch(IEngine engine)
    {
        manual_seed(31);
        var prompts = new[] { "describe the image.", "is the person a chef ?", "image" };
        var batch = engine.Batch(prompts.Select(p => engine.Prompts.Ids(p)).ToList(), prompts.Select(_ => randn(3, 32, 32)).ToList());
        Assert.That(batch.Mask.min().ToInt64(), Is.EqualTo(0), "rows are padded");
        return batch;
    }

    private static void AssertSame(IReadOnlyList<Generated> expected, IReadOnlyList<Generated> actual, float tolerance, string what)
    {
        Assert.That(actual, Has.Count.EqualTo(expected.Count));
        for (int r = 0; r < expected.Count; r++)
        {
            TestContext.Out.WriteLine($"{what} row {r}: '{expected[r].Text}' / '{actual[r].Text}'");
            Assert.That(actual[r].Tokens, Is.EqualTo(expected[r].Tokens), $"{what} row {r}");
            Assert.That(actual[r].LogProbs, Is.EqualTo(expected[r].LogProbs).Within(tolerance), $"{what} row {r}");
        }
        Assert.That(expected.Sum(g => g.Tokens.Length), Is.GreaterThan(0), "something was generated");
    }

    [Test]
    public void Torch_and_onnx_engines_give_the_same_greedy_and_beam_tokens_through_the_one_decoder()
    {
        using var torchBatch = PaddedBatch(new TorchEngine(vla));
        using var onnxBatch = PaddedBatch(onnx);
        Assert.That(onnxBatch.InputIds.data<long>().ToArray(), Is.EqualTo(torchBatch.InputIds.data<long>().ToArray()), "both engines build the same prompts");
        foreach (var options in new[] { GenerationOptions.Greedy(10), new GenerationOptions(8, NumBeams: 3) })
        {
            var torchOut = new TextGenerator(new TorchEngine(vla)).Generate(torchBatch, options);
            var onnxOut = new TextGenerator(onnx).Generate(onnxBatch, options);
            AssertSame(torchOut, onnxOut, 1e-4f, options.NumBeams > 1 ? "beam" : "greedy");
        }
    }

    [Test]
    public void Recompute_engine_equals_the_cached_engine_in_greedy_and_beam()
    {
        using var batch = PaddedBatch(new TorchEngine(vla));
        foreach (var options in new[] { GenerationOptions.Greedy(10), new GenerationOptions(8, NumBeams: 3), new GenerationOptions(6, NumBeams: 2, MinNewTokens: 6) })
        {
            var cached = new TextGenerator(new TorchEngine(vla)).Generate(batch, options);
            var recomputed = new TextGenerator(new RecomputeEngine(vla)).Generate(batch, options);
            AssertSame(cached, recomputed, 1e-5f, $"beams {options.NumBeams}");
        }
    }

    [Test]
    public void Option_scores_agree_across_engines()
    {
        using var torchBatch = PaddedBatch(new TorchEngine(vla));
        using var onnxBatch = PaddedBatch(onnx);
        var torchP = new TextGenerator(vla).ScoreOptions(torchBatch, ["yes", "no"]);
        var recomputeP = new TextGenerator(new RecomputeEngine(vla)).ScoreOptions(torchBatch, ["yes", "no"]);
        var onnxP = new TextGenerator(onnx).ScoreOptions(onnxBatch, ["yes", "no"]);
        for (int r = 0; r < torchP.Length; r++)
        {
            Assert.That(recomputeP[r], Is.EqualTo(torchP[r]));
            Assert.That(onnxP[r], Is.EqualTo(torchP[r]).Within(1e-5f));
        }
    }

    [Test]
    public void The_cached_engine_owns_decode_mode_while_its_decoding_lasts()
    {
        using var batch = PaddedBatch(new TorchEngine(vla));
        var kernels = vla.Model.Kernels;
        var choice = kernels.Choice;
        kernels.Choice = KernelChoice.SmallRows; // the engine's ownership of the scope, not Auto's measurement, is under test
        try
        {
            bool expected = kernels.SmallRows && get_num_threads() > 1;
            using (no_grad())
            using (new TorchEngine(vla).Prefill(batch, 4, out _))
                Assert.That(kernels.InDecodeMode, Is.EqualTo(expected));
            Assert.That(kernels.InDecodeMode, Is.False);
            new TextGenerator(vla).Generate(batch, GenerationOptions.Greedy(4));
            Assert.That(kernels.InDecodeMode, Is.False, "a generation ends its decode mode");
        }
        finally { kernels.Choice = choice; }
    }

    [Test]
    public void Captioner_captions_files_with_either_engine_and_reports_a_bad_file()
    {
        var png = Path.Combine(dir, "scene.png");
        using (var bmp = new SkiaSharp.SKBitmap(40, 40))
        {
            for (int y = 0; y < 40; y++) for (int x = 0; x < 40; x++) bmp.SetPixel(x, y, new SkiaSharp.SKColor((byte)(x * 6), (byte)(y * 5), 90));
            using var f = File.Create(png);
            bmp.Encode(f, SkiaSharp.SKEncodedImageFormat.Png, 100);
        }
        var missing = Path.Combine(dir, "missing.png");
        var files = new[] { png, missing, png };
        var torch = new Captioner(new TorchEngine(vla), vla.Images).CaptionFiles(files, null, GenerationOptions.Greedy(8), batchSize: 2).ToList();
        var ort = new Captioner(onnx, onnx.Images).CaptionFiles(files, null, GenerationOptions.Greedy(8), batchSize: 2).ToList();
        Assert.That(torch.Select(r => r.File), Is.EqualTo(files));
        Assert.That(torch[1].Caption, Is.Null);
        Assert.That(torch[1].Error, Does.Contain("missing.png"));
        Assert.That(torch[0].Caption!.Tokens, Is.EqualTo(torch[2].Caption!.Tokens), "one image, one caption, whichever batch it is in");
        for (int i = 0; i < files.Length; i += 2) Assert.That(ort[i].Caption!.Tokens, Is.EqualTo(torch[i].Caption!.Tokens));
    }
}
