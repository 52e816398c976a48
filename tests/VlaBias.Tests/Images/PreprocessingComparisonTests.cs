using NUnit.Framework;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using SkiaSharp;
using VlaBias.Images;

namespace VlaBias.Tests.Images;

/// <summary>
/// Measures the candidate pipelines against the PIL fixtures (the table in docs/image-preprocessing.md) and checks
/// that the one vlatune uses is the closest on every case. Candidates: SkiaSharp as vlatune did before (Skia decode,
/// long edge rounded, Skia's Catmull-Rom cubic), SkiaSharp's cubic with Hugging Face's sizes, ImageSharp 2.1.13
/// (decode + its bicubic), and Pillow's resampling (PilResample) on Skia's and on ImageSharp's decoding.
/// </summary>
public class PreprocessingComparisonTests
{
    public static readonly string[] Pipelines = ["skia-before", "skia-cubic", "imagesharp-bicubic", "pil-on-imagesharp", "pil-on-skia (vlatune)"];

    private static RgbImage ImageSharpDecode(string path)
    {
        using var img = Image.Load<Rgb24>(path);
        var px = new byte[img.Width * img.Height * 3];
        img.CopyPixelDataTo(px);
        return new RgbImage(img.Width, img.Height, px);
    }

    private static RgbImage ImageSharpResize(RgbImage src, int w, int h)
    {
        using var img = Image.LoadPixelData<Rgb24>(src.Pixels, src.Width, src.Height);
        img.Mutate(x => x.Resize(new ResizeOptions { Size = new Size(w, h), Sampler = KnownResamplers.Bicubic, Mode = ResizeMode.Stretch }));
        var px = new byte[w * h * 3];
        img.CopyPixelDataTo(px);
        return new RgbImage(w, h, px);
    }

    private static RgbImage SkiaResize(RgbImage src, int w, int h)
    {
        using var bmp = new SKBitmap(new SKImageInfo(src.Width, src.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var rgba = new byte[src.Width * src.Height * 4];
        for (int i = 0, j = 0; j < src.Pixels.Length; i += 4, j += 3) { rgba[i] = src.Pixels[j]; rgba[i + 1] = src.Pixels[j + 1]; rgba[i + 2] = src.Pixels[j + 2]; rgba[i + 3] = 255; }
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bmp.GetPixels(), rgba.Length);
        using var resized = bmp.Resize(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque), new SKSamplingOptions(SKCubicResampler.CatmullRom));
        return RgbImage.FromBitmap(resized);
    }

    /// <summary>Pad, resize with <paramref name="resize"/>, crop; <paramref name="roundLongEdge"/> is the old size rule (Math.Round instead of int()).</summary>
    private static RgbImage Run(PreprocessorConfig c, RgbImage img, Func<RgbImage, int, int, RgbImage> resize, bool roundLongEdge = false)
    {
        if (c.DoPad && img.Width != img.Height) img = ImagePreprocessor.PadToSquare(img, c.Mean);
        var (w, h) = c.ResizeTarget(img.Width, img.Height);
        if (roundLongEdge && c.ShortestEdge is int se)
        {
            double scale = (double)se / Math.Min(img.Width, img.Height);
            (w, h) = img.Width <= img.Height ? (se, (int)Math.Round(img.Height * scale)) : ((int)Math.Round(img.Width * scale), se);
        }
        if (w != img.Width || h != img.Height) img = resize(img, w, h);
        return c.DoCenterCrop ? ImagePreprocessor.CenterCrop(img, c.CropWidth, c.CropHeight) : img;
    }

    public static RgbImage Pipeline(string name, HfCase c) => name switch
    {
        "skia-before" => Run(c.Config, ImagePreprocessor.Decode(c.Input), SkiaResize, roundLongEdge: true),
        "skia-cubic" => Run(c.Config, ImagePreprocessor.Decode(c.Input), SkiaResize),
        "imagesharp-bicubic" => Run(c.Config, ImageSharpDecode(c.Input), ImageSharpResize),
        "pil-on-imagesharp" => new ImagePreprocessor(c.Config).Pixels(ImageSharpDecode(c.Input)),
        "pil-on-skia (vlatune)" => new ImagePreprocessor(c.Config).Pixels(ImagePreprocessor.Decode(c.Input)),
        _ => throw new ArgumentException(name),
    };

    [Test]
    public void Pillow_resampling_on_Skia_decoding_is_the_closest_pipeline_on_every_fixture()
    {
        var table = new System.Text.StringBuilder();
        table.AppendLine("| case | input | " + string.Join(" | ", Pipelines) + " |");
        table.AppendLine("|---|---|" + string.Concat(Pipelines.Select(_ => "---:|")));
        var failures = new List<string>();
        foreach (var c in HfCase.All)
        {
            var cells = new List<string>();
            var means = new Dictionary<string, double>();
            foreach (var p in Pipelines)
            {
                var (mean, max) = HfCase.Diff(Pipeline(p, c), c.Expected);
                means[p] = mean;
                cells.Add($"{mean:F3} / {max}");
            }
            table.AppendLine($"| {c.Name} | {c.Format} {c.Mode} | {string.Join(" | ", cells)} |");
            double ours = means["pil-on-skia (vlatune)"];
            if (ours > 1.0) failures.Add($"{c.Name}: mean |Δ| {ours:F3} > 1");
            foreach (var (p, m) in means)
                if (m < ours - 1e-9) failures.Add($"{c.Name}: {p} ({m:F3}) is closer than vlatune's pipeline ({ours:F3})");
        }
        File.WriteAllText(Path.Combine(TestContext.CurrentContext.WorkDirectory, "image_preprocessing_table.md"), table.ToString());
        TestContext.Out.WriteLine("mean |Δ| / max |Δ| in 8-bit pixel values against the PIL fixtures\n" + table);
        Assert.That(failures, Is.Empty, table.ToString());
    }

    [TestCase("flower_320x213.png", 100)]
    [TestCase("china_448x299_q90.jpg", 20000)]
    [TestCase("grace_256x300_q85.webp", 8000)]
    public void Truncated_files_are_refused_whatever_ImageSharp_makes_of_them(string input, int keep)
    {
        var path = Path.Combine(TestPaths.NewTempDir("trunc-cmp"), "cut-" + input);
        File.WriteAllBytes(path, File.ReadAllBytes(Path.Combine(HfCase.Root, "inputs", input)).Take(keep).ToArray());
        string imageSharp;
        try { ImageSharpDecode(path); imageSharp = "decoded without an error"; }
        catch (Exception e) { imageSharp = $"{e.GetType().Name}: {e.Message}"; }
        TestContext.Out.WriteLine($"{input} cut to {keep} bytes: ImageSharp {imageSharp}");
        Assert.Throws<BadInputException>(() => ImagePreprocessor.Decode(path));
        Directory.Delete(Path.GetDirectoryName(path)!, true);
    }
}
