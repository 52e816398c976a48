using NUnit.Framework;
using VlaBias.Images;

namespace VlaBias.Tests.Images;

/// <summary>Golden tests against the PIL fixtures: the pixels and values a model gets are Hugging Face's.</summary>
public class HfPreprocessingTests
{
    private static IEnumerable<HfCase> Cases => HfCase.All;

    [TestCaseSource(nameof(Cases))]
    public void Pixels_after_resize_and_crop_match_the_PIL_fixture(HfCase c)
    {
        var pre = new ImagePreprocessor(c.Config);
        var ours = pre.Pixels(ImagePreprocessor.Decode(c.Input));
        var (mean, max) = HfCase.Diff(ours, c.Expected);
        TestContext.Out.WriteLine($"{c.Name}: mean |Δ| {mean:F4}/255, max {max}/255");
        Assert.That(mean, Is.LessThanOrEqualTo(1.0), "mean |Δ| within 1/255 of the [0, 1] scale");
        // Skia's libjpeg-turbo and libwebp decode as Pillow's do, and PilResample is Pillow's arithmetic: identical.
        Assert.That(max, Is.EqualTo(0), "every pixel identical to Pillow's");
    }

    [TestCaseSource(nameof(Cases))]
    public void Normalized_values_match_the_PIL_fixture_window(HfCase c)
    {
        var pre = new ImagePreprocessor(c.Config);
        var pixels = pre.Pixels(ImagePreprocessor.Decode(c.Input));
        using var t = pre.Normalize(pixels);
        var values = t.data<float>().ToArray();
        int h = (int)t.shape[1], w = (int)t.shape[2], n = c.CenterSize;
        int exactWhereEqual = 0, equalPixels = 0;
        double maxErr = 0;
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < n; y++)
                for (int x = 0; x < n; x++)
                {
                    float ours = values[(ch * h + y + c.CenterY) * w + x + c.CenterX], theirs = c.Center[(ch * n + y) * n + x];
                    if (pixels[x + c.CenterX, y + c.CenterY, ch] == c.Expected[x + c.CenterX, y + c.CenterY, ch])
                    {
                        equalPixels++;
                        if (ours == theirs) exactWhereEqual++;
                    }
                    maxErr = Math.Max(maxErr, Math.Abs(ours - theirs));
                }
        Assert.That(exactWhereEqual, Is.EqualTo(equalPixels), "where the 8-bit pixel agrees, rescale and normalize give the same float32 bits as numpy");
        Assert.That(maxErr, Is.EqualTo(0), "pixel values identical, so the float32 model input is identical");
    }

    [TestCase("flower_320x213.png", 100, TestName = "Truncated_png_is_refused_naming_the_file")]
    [TestCase("china_448x299_q90.jpg", 20000, TestName = "Truncated_jpeg_is_refused_naming_the_file")]
    [TestCase("grace_256x300_q85.webp", 8000, TestName = "Truncated_webp_is_refused_naming_the_file")]
    [TestCase("china_300x200_lossless.webp", 40000, TestName = "Truncated_lossless_webp_is_refused_naming_the_file")]
    public void Truncated(string input, int keep)
    {
        var dir = TestPaths.NewTempDir("trunc");
        try
        {
            var path = Path.Combine(dir, "cut-" + input);
            File.WriteAllBytes(path, File.ReadAllBytes(Path.Combine(HfCase.Root, "inputs", input)).Take(keep).ToArray());
            var e = Assert.Throws<BadInputException>(() => ImagePreprocessor.Decode(path))!;
            Assert.That(e.Message, Does.StartWith(path + ":"));
            Assert.That(e.Message, Does.Contain("truncated"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void Whole_files_of_every_fixture_decode()
    {
        foreach (var c in HfCase.All) Assert.DoesNotThrow(() => ImagePreprocessor.Decode(c.Input), c.Input);
    }
}
