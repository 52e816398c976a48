using System.Text.Json.Nodes;
using NUnit.Framework;
using SkiaSharp;
using TorchSharp;
using VlaBias.Images;

namespace VlaBias.Tests.Images;

/// <summary>The preprocessing real checkpoints declare, on constructed images: sizes and a few pixel values.</summary>
public class PreprocessingTests
{
    private static PreprocessorConfig Config(string json)
    {
        var path = Path.Combine(Path.GetTempPath(), $"pre-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        try { return PreprocessorConfig.Load(path, 0); }
        finally { File.Delete(path); }
    }

    // llava-hf/llava-1.5-7b-hf's preprocessor_config.json, with LLaVA-1.5's pad-to-square (do_pad).
    private const string Llava15 = """
        {"image_processor_type": "CLIPImageProcessor", "do_resize": true, "size": {"shortest_edge": 336}, "resample": 3,
         "do_center_crop": true, "crop_size": {"height": 336, "width": 336}, "do_rescale": true, "rescale_factor": 0.00392156862745098,
         "do_normalize": true, "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711], "do_pad": true}
        """;

    // llava-interleave-qwen's SigLIP processor: resize to 384×384, no crop, mean = std = 0.5.
    private const string Siglip = """
        {"image_processor_type": "SiglipImageProcessor", "do_resize": true, "size": {"height": 384, "width": 384}, "resample": 3,
         "do_rescale": true, "rescale_factor": 0.00392156862745098, "do_normalize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
        """;

    private static SKBitmap Solid(int w, int h, SKColor c)
    {
        var b = new SKBitmap(w, h, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var canvas = new SKCanvas(b);
        canvas.Clear(c);
        return b;
    }

    [Test]
    public void Llava15_pads_a_wide_image_to_a_square_with_the_mean_colour_then_resizes_and_crops_to_336()
    {
        var cfg = Config(Llava15);
        Assert.That(cfg.DoPad && cfg.DoCenterCrop && cfg.ShortestEdge == 336, Is.True);
        using var img = Solid(200, 100, new SKColor(255, 0, 0));                 // wide red image
        using var t = new ImagePreprocessor(cfg).Process(img);
        Assert.That(t.shape, Is.EqualTo(new long[] { 3, 336, 336 }));
        // centre: red
        Assert.That(t[0, 168, 168].ToSingle(), Is.EqualTo((1.0 - 0.48145466) / 0.26862954).Within(1e-3));
        Assert.That(t[1, 168, 168].ToSingle(), Is.EqualTo((0.0 - 0.4578275) / 0.26130258).Within(1e-3));
        // top and bottom bands are padding in the mean colour: int(mean·255)/255 normalized, i.e. ≈ 0
        foreach (var y in new[] { 2, 333 })
            for (int ch = 0; ch < 3; ch++)
            {
                double mean = PreprocessorConfig.ClipMean[ch], std = PreprocessorConfig.ClipStd[ch];
                Assert.That(t[ch, y, 168].ToSingle(), Is.EqualTo(((int)(mean * 255) / 255.0 - mean) / std).Within(1e-3), $"channel {ch} row {y}");
            }
    }

    [Test]
    public void Clip_resize_keeps_the_aspect_ratio_and_center_crops()
    {
        var cfg = Config(Llava15.Replace("\"do_pad\": true", "\"do_pad\": false"));
        using var img = new SKBitmap(100, 50, SKColorType.Rgba8888, SKAlphaType.Premul);
        using (var c = new SKCanvas(img))
        {
            c.Clear(new SKColor(0, 0, 255));
            using var p = new SKPaint { Color = new SKColor(0, 255, 0) };
            c.DrawRect(0, 0, 10, 50, p);                                           // green stripe at the left edge: cropped away
        }
        using var t = new ImagePreprocessor(cfg).Process(img);
        Assert.That(t.shape, Is.EqualTo(new long[] { 3, 336, 336 }));
        // 100×50 → 672×336, crop x 168..504: the 10-px stripe (67 px after resize) is gone, the left column is blue
        Assert.That(t[1, 168, 0].ToSingle(), Is.EqualTo((0 - 0.4578275) / 0.26130258).Within(1e-2));
        Assert.That(t[2, 168, 0].ToSingle(), Is.EqualTo((1 - 0.40821073) / 0.27577711).Within(1e-2));
    }

    [Test]
    public void Siglip_resizes_to_384_square_without_crop_and_normalizes_with_half()
    {
        var cfg = Config(Siglip);
        Assert.That(cfg.DoCenterCrop, Is.False);
        using var img = Solid(120, 40, new SKColor(255, 128, 0));
        using var t = new ImagePreprocessor(cfg).Process(img);
        Assert.That(t.shape, Is.EqualTo(new long[] { 3, 384, 384 }));
        Assert.That(t[0, 0, 0].ToSingle(), Is.EqualTo(1.0).Within(1e-3));
        Assert.That(t[1, 200, 300].ToSingle(), Is.EqualTo((128 / 255.0 - 0.5) / 0.5).Within(1e-3));
        Assert.That(t[2, 383, 383].ToSingle(), Is.EqualTo(-1.0).Within(1e-3));
    }
}
