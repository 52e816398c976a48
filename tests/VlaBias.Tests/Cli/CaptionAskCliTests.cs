using System.Text.Json.Nodes;
using NUnit.Framework;
using SkiaSharp;
using VlaBias.Model;

namespace VlaBias.Tests.Cli;

public class CaptionAskCliTests
{
    private string dir = "", model = "", image = "";

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("cli");
        model = Path.Combine(dir, "tiny");
        RandomCheckpoint.Write(model, TestPaths.Words, seed: 3, std: 0.3);
        image = Path.Combine(dir, "img.png");
        using var bmp = new SKBitmap(40, 30);
        using (var c = new SKCanvas(bmp)) { c.Clear(SKColors.SkyBlue); c.DrawRect(5, 5, 10, 20, new SKPaint { Color = SKColors.Red }); }
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(image, data.ToArray());
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private static string CopyModel(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        return to;
    }

    [Test]
    public void Caption_json_prints_a_caption_with_token_logprobs()
    {
        var r = CliRunner.Run(dir, "caption", "--model", model, image, "--json", "--max-new-tokens", "6");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        var o = JsonNode.Parse(r.Stdout.Trim())!;
        Assert.That(o["image"]!.GetValue<string>(), Is.EqualTo(image));
        var tokens = o["tokens"]!.AsArray();
        Assert.That(tokens.Count, Is.GreaterThan(0));
        Assert.That(tokens.All(t => t!["logprob"]!.GetValue<double>() <= 0));
        Assert.That(o["caption"]!.GetValue<string>(), Is.Not.Empty);
    }

    [Test]
    public void Ask_with_options_prints_probabilities_that_sum_to_one()
    {
        var r = CliRunner.Run(dir, "ask", "--model", model, image, "-q", "is the person friendly ?", "--options", "yes,no", "--json");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        var probs = JsonNode.Parse(r.Stdout.Trim())!["probabilities"]!.AsObject();
        Assert.That(probs.Count, Is.EqualTo(2));
        Assert.That(probs["yes"]!.GetValue<double>() + probs["no"]!.GetValue<double>(), Is.EqualTo(1.0).Within(1e-5));
    }

    [Test]
    public void Corrupt_png_is_a_one_line_error_with_exit_code_2()
    {
        var bad = Path.Combine(dir, "corrupt.png");
        File.WriteAllBytes(bad, File.ReadAllBytes(image).Take(40).ToArray());
        var r = CliRunner.Run(dir, "caption", "--model", model, bad);
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain("corrupt.png"));
    }

    [Test]
    public void Missing_config_is_a_one_line_error_with_exit_code_2()
    {
        var copy = CopyModel(model, Path.Combine(dir, "noconfig"));
        File.Delete(Path.Combine(copy, "config.json"));
        var r = CliRunner.Run(dir, "caption", "--model", copy, image);
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain("config.json"));
    }

    [Test]
    public void Truncated_weights_are_a_one_line_error_with_exit_code_2()
    {
        var copy = CopyModel(model, Path.Combine(dir, "truncated"));
        var w = Path.Combine(copy, "model.safetensors");
        var bytes = File.ReadAllBytes(w);
        File.WriteAllBytes(w, bytes.Take(bytes.Length - 100).ToArray());
        var r = CliRunner.Run(dir, "caption", "--model", copy, image);
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain("model.safetensors"));
    }
}

/// <summary>An image that does not decode completely is bad input for `caption`: one line naming it, exit 2.</summary>
public class TruncatedImageCliTests
{
    private string dir = "", model = "";

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("cli-trunc");
        model = Path.Combine(dir, "tiny");
        RandomCheckpoint.Write(model, TestPaths.Words, seed: 3, std: 0.3);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    [TestCase("flower_320x213.png", 100, TestName = "Caption_of_a_png_cut_after_100_bytes_exits_2")]
    [TestCase("china_448x299_q90.jpg", 24000, TestName = "Caption_of_a_truncated_jpeg_exits_2")]
    [TestCase("grace_256x300_q85.webp", 8000, TestName = "Caption_of_a_truncated_webp_exits_2")]
    public void Truncated(string input, int keep)
    {
        var path = Path.Combine(dir, "cut-" + input);
        File.WriteAllBytes(path, File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", "images", "inputs", input)).Take(keep).ToArray());
        var r = CliRunner.Run(dir, "caption", "--model", model, path);
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr + r.Stdout);
        Assert.That(r.Stdout, Is.Empty, "no caption for a truncated image");
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(r.Stderr, Does.Contain(path).And.Contain("truncated"));
    }

    [Test]
    public void One_truncated_image_among_good_ones_is_reported_and_the_rest_captioned()
    {
        var good = Path.Combine(AppContext.BaseDirectory, "Fixtures", "images", "inputs", "grace_171x200_grey.png");
        var bad = Path.Combine(dir, "cut2.png");
        File.WriteAllBytes(bad, File.ReadAllBytes(good).Take(300).ToArray());
        var r = CliRunner.Run(dir, "caption", "--model", model, good, bad, "--max-new-tokens", "3");
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stdout, Does.Contain(good).And.Not.Contain(bad));
        Assert.That(r.Stderr, Does.Contain(bad));
    }
}
