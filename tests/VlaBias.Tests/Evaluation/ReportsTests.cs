using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using NUnit.Framework;
using SkiaSharp;
using VlaBias.Evaluation;
using VlaBias.Tests.Cli;
using VlaBias.Data;

namespace VlaBias.Tests.Evaluation;

/// <summary>A small constructed eval world: 4 counterfactual pairs, images on disk, samples and a metrics document.</summary>
internal static class ReportFixture
{
    public static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    public static void AssertPng(byte[] bytes, string what)
    {
        Assert.That(bytes.Length, Is.GreaterThan(PngSignature.Length + 100), what + ": too small for a PNG");
        Assert.That(bytes.Take(8).ToArray(), Is.EqualTo(PngSignature), what + ": PNG signature");
        using var bmp = SKBitmap.Decode(bytes);
        Assert.That(bmp, Is.Not.Null, what + ": SkiaSharp cannot decode it");
        Assert.That(bmp.Width, Is.GreaterThan(0));
        Assert.That(bmp.Height, Is.GreaterThan(0));
    }

    /// <summary>Writes img/*.png under dir and returns their ids (pair p0..p3 × man/woman).</summary>
    public static List<(string id, string pair, string gender)> WriteImages(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "img"));
        var list = new List<(string, string, string)>();
        for (int p = 0; p < 4; p++)
            foreach (var g in new[] { "man", "woman" })
            {
                string id = $"p{p}-{g[0]}";
                using var bmp = new SKBitmap(16, 16);
                bmp.Erase(g == "man" ? new SKColor(40, 80, (byte)(60 * p)) : new SKColor(200, 90, (byte)(60 * p)));
                using var img = SKImage.FromBitmap(bmp);
                using var data = img.Encode(SKEncodedImageFormat.Png, 100);
                File.WriteAllBytes(Path.Combine(dir, "img", id + ".png"), data.ToArray());
                list.Add((id, $"p{p}", g));
            }
        return list;
    }

    /// <summary>Samples for the images: a caption each, and yes/no probes "friendly" (train) and "brave" (test) where
    /// women get p(yes) higher by <paramref name="gap"/>.</summary>
    public static List<Sample> Samples(IEnumerable<(string id, string pair, string gender)> images, string captionPrefix, double gap)
    {
        var list = new List<Sample>();
        int k = 0;
        foreach (var (id, pair, gender) in images)
        {
            list.Add(new Sample
            {
                Id = id, Kind = SampleKind.Caption, Prompt = "describe the image.", Output = $"{captionPrefix} {gender} in a kitchen",
                References = [$"a {gender} cooking in a kitchen"], Image = $"img/{id}.png", Gender = ManifestValues.ParseGender(gender), Pair = pair, Context = "kitchen", Role = "chef",
            });
            foreach (var (attr, split) in new[] { ("friendly", "train"), ("brave", "test") })
            {
                double p = 0.4 + 0.01 * (k++ % 5) + (gender == "woman" ? gap : 0);
                list.Add(new Sample
                {
                    Id = id, Kind = SampleKind.Probe, Prompt = $"is the person {attr}?", Options = ["yes", "no"], Probs = [p, 1 - p],
                    Attribute = attr, AttributeSplit = ManifestValues.ParseSplit(split), Image = $"img/{id}.png", Gender = ManifestValues.ParseGender(gender), Pair = pair, Context = "kitchen", Role = "chef",
                });
            }
        }
        return list;
    }

    public static JsonObject Metrics(string model, string? adapter, params (string name, double value, double low, double high)[] metrics) => new()
    {
        ["model"] = model, ["adapter"] = adapter, ["suite"] = "scenes", ["split"] = "test", ["n_items"] = 8,
        ["metrics"] = new JsonObject(metrics.Select(m => KeyValuePair.Create(m.name, (JsonNode?)new JsonObject
        {
            ["value"] = m.value, ["ci95"] = new JsonArray(m.low, m.high), ["n"] = 8,
        }))),
    };

    public static Suite Suite(string manifestDir) => new("scenes", Path.Combine(manifestDir, "suite.yaml"), Path.Combine(manifestDir, "manifest.jsonl"), "test",
        "data/words/gender_words.json", "data/scenes/world.json", "describe the image.", ["yes", "no"], true, true, true, true, 16, 8, 200, 1, 0);

    /// <summary>Every data URI of the page, decoded.</summary>
    public static List<byte[]> DataUris(string html) =>
        Regex.Matches(html, "data:image/png;base64,([A-Za-z0-9+/=]+)").Select(m => Convert.FromBase64String(m.Groups[1].Value)).ToList();

    public static void AssertSelfContained(string html)
    {
        Assert.That(Regex.IsMatch(html, @"(src|href)\s*=\s*[""']?\s*(https?:)?//", RegexOptions.IgnoreCase), Is.False, "no network references");
        Assert.That(Regex.IsMatch(html, @"<(script|link|iframe)\b", RegexOptions.IgnoreCase), Is.False, "no script, stylesheet link or frame");
        Assert.That(Regex.IsMatch(html, @"url\(\s*['""]?(?!data:)", RegexOptions.IgnoreCase), Is.False, "no external CSS url()");
        foreach (Match m in Regex.Matches(html, @"\bsrc\s*=\s*""([^""]*)"""))
            Assert.That(m.Groups[1].Value, Does.StartWith("data:image/png;base64,"), "every src is an embedded PNG");
    }
}

public class ReportsTests
{
    private string dir = "";

    [SetUp] public void SetUp() => dir = TestPaths.NewTempDir("reports");
    [TearDown] public void TearDown() { try { Directory.Delete(dir, true); } catch (IOException) { } }

    private static readonly (string, double, double, double)[] BaseMetrics =
        [("pairwise_probe_gap.train", 0.30, 0.25, 0.35), ("cider_d", 0.80, 0.70, 0.90), ("caption_gender.error_rate", 0.20, 0.10, 0.30)];
    private static readonly (string, double, double, double)[] TunedMetrics =
        [("pairwise_probe_gap.train", 0.05, 0.02, 0.08), ("cider_d", 0.85, 0.75, 0.95), ("caption_gender.error_rate", 0.10, 0.05, 0.15)];

    [Test]
    public void Eval_report_html_is_self_contained_with_plots_and_thumbnails()
    {
        var images = ReportFixture.WriteImages(dir);
        var samples = ReportFixture.Samples(images, "a", 0.2);
        var outDir = Path.Combine(dir, "eval");
        Directory.CreateDirectory(outDir);
        var doc = ReportFixture.Metrics("tiny", null, BaseMetrics);

        Reports.WriteEvalReport(outDir, doc, samples, ReportFixture.Suite(dir));

        var html = File.ReadAllText(Path.Combine(outDir, "report.html"));
        ReportFixture.AssertSelfContained(html);
        var uris = ReportFixture.DataUris(html);
        // 2 plots + 8 thumbnails, all real PNGs
        Assert.That(uris, Has.Count.EqualTo(2 + images.Count));
        for (int i = 0; i < uris.Count; i++) ReportFixture.AssertPng(uris[i], $"data URI {i}");
        Assert.That(html, Does.Contain("a woman in a kitchen"), "the model's caption");
        Assert.That(html, Does.Contain("a woman cooking in a kitchen"), "the reference");
        Assert.That(html, Does.Not.Contain("image not found"));
        Assert.That(html, Does.Contain("<table"));

        var md = File.ReadAllText(Path.Combine(outDir, "report.md"));
        Assert.That(md, Does.Contain("| metric | value | 95% CI | n |"));
        Assert.That(md, Does.Contain("| `pairwise_probe_gap.train` | 0.300 | [0.250, 0.350] | 8 |"));
        Assert.That(md, Does.Contain("## What this means"));
        Assert.That(md, Does.Contain("](plots/attribute_bias.png)"));
        foreach (var plot in new[] { Reports.AttributeBiasPlot, Reports.SummaryPlot })
            ReportFixture.AssertPng(File.ReadAllBytes(Path.Combine(outDir, Reports.PlotsDir, plot)), plot);
    }

    [Test]
    public void Attribute_bias_is_woman_minus_man_with_ci_and_split()
    {
        var samples = ReportFixture.Samples(ReportFixture.WriteImages(dir), "a", 0.2);
        var gaps = AttributeBiasCalculator.Compute(samples, 200, 0);
        Assert.That(gaps.Select(g => (g.Attribute, g.Split)), Is.EqualTo(new[] { ("friendly", "train"), ("brave", "test") }), "train attributes first");
        foreach (var g in gaps)
        {
            Assert.That(g.Gap, Is.EqualTo(0.2).Within(0.03));
            Assert.That(g.Low, Is.LessThanOrEqualTo(g.Gap));
            Assert.That(g.High, Is.GreaterThanOrEqualTo(g.Gap));
            Assert.That(g.NWoman, Is.EqualTo(4));
            Assert.That(g.NMan, Is.EqualTo(4));
        }
    }

    [Test]
    public void Plots_are_valid_pngs()
    {
        var samples = ReportFixture.Samples(ReportFixture.WriteImages(dir), "a", 0.2);
        var gaps = AttributeBiasCalculator.Compute(samples, 100, 0);
        var after = AttributeBiasCalculator.Compute(ReportFixture.Samples(ReportFixture.WriteImages(dir), "a", 0.01), 100, 0);
        ReportFixture.AssertPng(ReportPlots.AttributeBias([("model", gaps)], "one run"), "attribute bias");
        ReportFixture.AssertPng(ReportPlots.AttributeBias([("base", gaps), ("tuned", after)], "before/after"), "attribute bias before/after");
        ReportFixture.AssertPng(ReportPlots.AttributeBias([("none", [])], "empty"), "attribute bias without probes");
        ReportFixture.AssertPng(ReportPlots.MetricsSummary([("base", ReportFixture.Metrics("m", null, BaseMetrics)), ("tuned", ReportFixture.Metrics("m", "a", TunedMetrics))]), "summary");
        var curves = new TrainingCurves([new(10, 0.2, 0.7, 2.5), new(20, 0.1, 0.75, 2.2), new(30, 0.04, 0.74, 2.0)], 0.3, 0.8, 0.05, 30, "threshold");
        var png = ReportPlots.Training(curves);
        ReportFixture.AssertPng(png, "training curves");
        using var bmp = SKBitmap.Decode(png);
        Assert.That(bmp.Width, Is.EqualTo(1200), "three panels side by side");
    }

    [Test]
    public void Run_report_shows_base_and_tuned_captions_curves_and_deltas()
    {
        var images = ReportFixture.WriteImages(dir);
        var run = Path.Combine(dir, "run");
        var suite = ReportFixture.Suite(dir);
        foreach (var (name, prefix, gap, metrics) in new[] { ("base", "BASECAP", 0.2, BaseMetrics), ("tuned", "TUNEDCAP", 0.0, TunedMetrics) })
        {
            var e = Path.Combine(run, "eval", name);
            Directory.CreateDirectory(e);
            var doc = ReportFixture.Metrics("tiny", name == "tuned" ? run : null, metrics);
            File.WriteAllText(Path.Combine(e, "metrics.json"), doc.ToJsonString());
            EvalRunner.WriteSamples(Path.Combine(e, "samples.jsonl"), ReportFixture.Samples(images, prefix, gap));
            EvalFolder.WriteContext(e, suite);
        }
        File.WriteAllText(Path.Combine(run, "trainer_state.json"), """
            {"stop_reason": "threshold", "threshold_reached": true, "threshold": 0.05, "best_step": 20, "steps": 20,
             "base": {"bias": 0.3, "cider_d": 0.8},
             "evaluations": [{"step": 10, "bias": 0.2, "cider_d": 0.78, "loss": 2.5}, {"step": 20, "bias": 0.04, "cider_d": 0.8, "loss": 2.1}]}
            """);

        Reports.WriteRunReport(run);

        var html = File.ReadAllText(Path.Combine(run, "report.html"));
        ReportFixture.AssertSelfContained(html);
        var uris = ReportFixture.DataUris(html);
        Assert.That(uris, Has.Count.EqualTo(3 + images.Count), "bias before/after, summary, training curves, thumbnails");
        foreach (var u in uris) ReportFixture.AssertPng(u, "data URI");
        Assert.That(html, Does.Contain("BASECAP woman in a kitchen"));
        Assert.That(html, Does.Contain("TUNEDCAP woman in a kitchen"));
        Assert.That(html, Does.Contain("-0.250 *"), "significant drop of the pairwise gap");
        Assert.That(html, Does.Contain("Training curves"));
        Assert.That(html, Does.Contain("Stopped: threshold"));
        foreach (var plot in new[] { Reports.AttributeBiasPlot, Reports.SummaryPlot, Reports.TrainingPlot })
            ReportFixture.AssertPng(File.ReadAllBytes(Path.Combine(run, Reports.PlotsDir, plot)), plot);
        Assert.That(File.ReadAllText(Path.Combine(run, "report.md")), Does.Contain("significantly better on pairwise_probe_gap.train 0.300 → 0.050"));
    }
}

public class CompareTests
{
    private string dir = "";

    [SetUp] public void SetUp() => dir = TestPaths.NewTempDir("compare");
    [TearDown] public void TearDown() { try { Directory.Delete(dir, true); } catch (IOException) { } }

    private string WriteEval(string name, params (string, double, double, double)[] metrics)
    {
        var d = Path.Combine(dir, name);
        Directory.CreateDirectory(d);
        File.WriteAllText(Path.Combine(d, "metrics.json"), ReportFixture.Metrics("tiny", null, metrics).ToJsonString());
        return d;
    }

    [Test]
    public void Table_gives_deltas_and_stars_only_where_cis_do_not_overlap()
    {
        var a = WriteEval("a", ("pairwise_probe_gap.train", 0.30, 0.25, 0.35), ("cider_d", 0.80, 0.70, 0.90));
        var b = WriteEval("b", ("pairwise_probe_gap.train", 0.10, 0.05, 0.15), ("cider_d", 0.85, 0.75, 0.95));
        var runs = VlaBias.Cli.Commands.CompareCommand.Resolve([a, b], null);
        var table = Comparison.Table(runs.Select(r => (r.Name, r.Metrics)).ToList());
        Assert.That(table, Does.Contain("| `pairwise_probe_gap.train` | 0.300 [0.250, 0.350] | 0.100 [0.050, 0.150] | -0.200 * |"));
        Assert.That(table, Does.Contain("| `cider_d` | 0.800 [0.700, 0.900] | 0.850 [0.750, 0.950] | +0.050 |"));
        Assert.That(table, Does.Contain("| metric | a | b | Δ b − a |"));
    }

    [Test]
    public void Cli_compare_prints_table_writes_html_and_rejects_folders_without_metrics()
    {
        var a = WriteEval("base", ("pairwise_probe_gap.train", 0.30, 0.25, 0.35));
        var b = WriteEval("tuned", ("pairwise_probe_gap.train", 0.10, 0.05, 0.15));
        var outDir = Path.Combine(dir, "cmp");

        var ok = CliRunner.Run(dir, "compare", a, b, "--names", "before,after", "--out", outDir);
        Assert.That(ok.ExitCode, Is.EqualTo(0), ok.Stderr);
        Assert.That(ok.Stdout, Does.Contain("| metric | before | after | Δ after − before |"));
        Assert.That(ok.Stdout, Does.Contain("-0.200 *"));
        Assert.That(File.ReadAllText(Path.Combine(outDir, "comparison.md")), Does.Contain("-0.200 *"));
        var html = File.ReadAllText(Path.Combine(outDir, "comparison.html"));
        ReportFixture.AssertSelfContained(html);
        Assert.That(ReportFixture.DataUris(html), Has.Count.GreaterThanOrEqualTo(2));
        Assert.That(html, Does.Contain("class=\"num better\">-0.200 *"), "a significant drop of a bias metric is an improvement");

        var empty = Path.Combine(dir, "empty");
        Directory.CreateDirectory(empty);
        var bad = CliRunner.Run(dir, "compare", a, empty);
        Assert.That(bad.ExitCode, Is.EqualTo(2));
        Assert.That(bad.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1), bad.Stderr);
        Assert.That(bad.Stderr, Does.Contain(empty).And.Contain("metrics.json"));
    }
}
