// Self-contained HTML for report.html and comparison.html: inline CSS, plots and image thumbnails as
// base64 PNG data URIs, no script, no network, no external file. Readable offline in any browser.
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using SkiaSharp;
using VlaBias.Data;

namespace VlaBias.Evaluation;

public static class ReportHtml
{
    /// <summary>Thumbnails are scaled so their longer side is at most this (pixels); small images are shown enlarged.</summary>
    public const int ThumbnailSize = 160;

    /// <summary>At most this many images in a gallery (counterfactual pairs kept together).</summary>
    public const int MaxGalleryImages = 48;

    private const string Css = """
        body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45}
        main{max-width:1280px;margin:0 auto;padding:24px 32px 48px}
        h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:28px 0 10px;border-bottom:2px solid #dfe3ea;padding-bottom:4px}
        .meta{color:#5a6475;font-size:14px;margin:0 0 12px}
        .note{background:#fff;border-left:4px solid #4C72B0;padding:10px 16px;border-radius:4px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
        .note p{margin:6px 0}
        figure{margin:12px 0 20px;background:#fff;padding:8px;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
        figure img{max-width:100%;height:auto;display:block;margin:0 auto}
        figcaption{font-size:13px;color:#5a6475;padding:6px 4px 0}
        table{border-collapse:collapse;background:#fff;font-size:13px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
        th,td{border:1px solid #dfe3ea;padding:4px 8px;text-align:left;vertical-align:top}
        th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
        td code{font-size:12px}tr:nth-child(even) td{background:#fafbfc}
        .better{color:#1a7f37;font-weight:600}.worse{color:#b42318;font-weight:600}.ci{color:#6b7280}
        .gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:12px}
        .card{background:#fff;border-radius:6px;padding:10px;box-shadow:0 1px 3px rgba(0,0,0,.1);font-size:13px}
        .card img{width:160px;height:160px;object-fit:contain;image-rendering:pixelated;display:block;margin:0 auto 6px;background:#eee;border-radius:4px}
        .card .missing{width:160px;height:160px;margin:0 auto 6px;background:#eee;color:#888;display:flex;align-items:center;justify-content:center;text-align:center;font-size:12px;border-radius:4px}
        .tags{color:#5a6475;font-size:12px;margin-bottom:4px}.tags b{color:#1d2330}
        .cap{display:grid;grid-template-columns:58px 1fr;gap:4px;margin:3px 0}.cap .who{font-weight:600}
        .refs{color:#5a6475;margin:4px 0 0;padding-left:18px}
        .legend-swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}
        """;

    public static string E(string? s) => WebUtility.HtmlEncode(s ?? "");

    public static string Page(string title, string body) =>
        $"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">" +
        $"<title>{E(title)}</title><style>{Css}</style></head>\n<body><main>\n{body}\n</main></body></html>\n";

    public static string DataUri(byte[] png) => "data:image/png;base64," + Convert.ToBase64String(png);

    public static string Figure(byte[] png, string alt, string caption) =>
        $"<figure><img src=\"{DataUri(png)}\" alt=\"{E(alt)}\"><figcaption>{caption}</figcaption></figure>\n";

    private static string F(double? v) => v is double d ? d.ToString("0.000", CultureInfo.InvariantCulture) : "–";

    /// <summary>One run's metrics: name (with its meaning on hover), value, 95% CI, n.</summary>
    public static string MetricsTable(JsonObject metricsDoc)
    {
        var sb = new StringBuilder("<table><tr><th>metric</th><th>value</th><th>95% CI</th><th>n</th><th>what it measures</th></tr>\n");
        foreach (var (name, node) in metricsDoc["metrics"]!.AsObject())
        {
            var ci = node?["ci95"] as JsonArray;
            string ciText = ci is null || ci[0] is null ? "–" : $"[{F(ci[0]!.GetValue<double>())}, {F(ci[1]!.GetValue<double>())}]";
            string value = Comparison.V(node) is null && Comparison.NotComputable(node) is string why ? $"– (not computable: {E(why)})" : F(Comparison.V(node));
            sb.Append($"<tr><td><code>{E(name)}</code></td><td class=\"num\">{value}</td><td class=\"num ci\">{ciText}</td>" +
                      $"<td class=\"num\">{E(node?["n"]?.ToString())}</td><td>{E(MetricInfo.Describe(name))}</td></tr>\n");
        }
        return sb.Append("</table>\n").ToString();
    }

    /// <summary>Several runs side by side with deltas against the first; significant deltas (CIs do not overlap)
    /// are starred and colored by whether they are an improvement.</summary>
    public static string ComparisonTable(IReadOnlyList<(string name, JsonObject metrics)> runs)
    {
        var names = runs.SelectMany(r => r.metrics["metrics"]!.AsObject().Select(kv => kv.Key)).Distinct().Order(StringComparer.Ordinal).ToList();
        var sb = new StringBuilder("<table><tr><th>metric</th>");
        for (int j = 0; j < runs.Count; j++)
            sb.Append($"<th><span class=\"legend-swatch\" style=\"background:{ReportPlots.SeriesHex(j)}\"></span>{E(runs[j].name)}</th>");
        for (int j = 1; j < runs.Count; j++) sb.Append($"<th>Δ {E(runs[j].name)} − {E(runs[0].name)}</th>");
        sb.Append("</tr>\n");
        foreach (var name in names)
        {
            var cells = runs.Select(r => r.metrics["metrics"]![name]).ToList();
            sb.Append($"<tr><td><code title=\"{E(MetricInfo.Describe(name))}\">{E(name)}</code></td>");
            foreach (var c in cells)
            {
                var ci = c?["ci95"] as JsonArray;
                sb.Append($"<td class=\"num\">{F(Comparison.V(c))}{(ci is null || ci[0] is null ? "" : $" <span class=\"ci\">[{F(ci[0]!.GetValue<double>())}, {F(ci[1]!.GetValue<double>())}]</span>")}</td>");
            }
            for (int j = 1; j < runs.Count; j++)
            {
                double? a = Comparison.V(cells[0]), b = Comparison.V(cells[j]);
                if (a is null || b is null) { sb.Append("<td class=\"num\">–</td>"); continue; }
                bool sig = Comparison.Significant(cells[0], cells[j]);
                string cls = !sig ? "" : MetricInfo.IsImprovement(name, a.Value, b.Value, runs[j].metrics, runs[0].metrics) switch { true => "better", false => "worse", null => "" };
                string d = (b.Value - a.Value).ToString("+0.000;-0.000;0.000", CultureInfo.InvariantCulture) + (sig ? " *" : "");
                sb.Append($"<td class=\"num {cls}\">{d}</td>");
            }
            sb.Append("</tr>\n");
        }
        sb.Append("</table>\n<p class=\"meta\">Values with bootstrap 95% CIs in brackets. <code>*</code>: the two runs' 95% intervals do not overlap " +
                  "(green: an improvement, red: a regression, by the metric's direction).</p>\n");
        return sb.ToString();
    }

    /// <summary>A gallery of the evaluated images with each run's caption and the references. Counterfactual pairs
    /// sit next to each other (ordered by pair, then man, woman, unclear).</summary>
    public static string Gallery(IReadOnlyList<EvalFolder> runs, int maxImages = MaxGalleryImages)
    {
        var first = runs[0];
        var captionsByRun = runs.Select(r => r.Samples.Where(s => s.Kind == SampleKind.Caption).GroupBy(s => s.Id).ToDictionary(g => g.Key, g => g.First())).ToList();
        var items = first.Samples.GroupBy(s => s.Id).Select(g => g.First())
            .OrderBy(s => s.Pair ?? s.Id, StringComparer.Ordinal).ThenBy(s => s.Gender switch { Gender.Man => 0, Gender.Woman => 1, _ => 2 }).ThenBy(s => s.Id, StringComparer.Ordinal)
            .Take(maxImages).ToList();
        if (items.Count == 0) return "<p class=\"meta\">No samples to show.</p>\n";
        string? dir = runs.Select(r => r.ManifestDir).FirstOrDefault(d => d is not null);
        string? PathOf(Sample item) => dir is not null && item.Image.Length > 0 ? Path.GetFullPath(Path.Combine(dir, item.Image)) : null;
        // Decoding, scaling and encoding the thumbnails is most of the gallery's time: one image per worker.
        var paths = items.Select(PathOf).OfType<string>().Distinct().ToArray();
        var uris = new string?[paths.Length];
        Parallel.For(0, paths.Length, i => uris[i] = Thumbnail(paths[i]) is byte[] png ? DataUri(png) : null);
        var thumbs = paths.Select((p, i) => (p, i)).ToDictionary(x => x.p, x => uris[x.i]);
        var sb = new StringBuilder("<div class=\"gallery\">\n");
        foreach (var item in items)
        {
            string? uri = PathOf(item) is string path ? thumbs[path] : null;
            sb.Append("<div class=\"card\">");
            sb.Append(uri is not null ? $"<img src=\"{uri}\" alt=\"{E(item.Id)}\">"
                                      : $"<div class=\"missing\">image not found<br>{E(item.Image)}</div>");
            sb.Append($"<div class=\"tags\"><b>{E(item.Id)}</b> · {E(item.Gender.Name())}{(item.Tone is null ? "" : $", tone {E(item.Tone)}")}" +
                      $"{(item.Context is null ? "" : $" · {E(item.Context)}")}{(item.Role is null ? "" : $" · {E(item.Role)}")}</div>");
            IReadOnlyList<string>? refs = null;
            for (int j = 0; j < runs.Count; j++)
            {
                captionsByRun[j].TryGetValue(item.Id, out var c);
                refs ??= c?.References;
                sb.Append($"<div class=\"cap\"><span class=\"who\" style=\"color:{ReportPlots.SeriesHex(j)}\">{E(runs[j].Name)}</span><span>{E(c?.Output ?? "–")}</span></div>");
            }
            if (refs is { Count: > 0 })
                sb.Append("<ul class=\"refs\">").Append(string.Concat(refs.Take(3).Select(r => $"<li>{E(r)}</li>"))).Append("</ul>");
            sb.Append("</div>\n");
        }
        sb.Append("</div>\n");
        int total = first.Samples.Select(s => s.Id).Distinct().Count();
        if (total > items.Count) sb.Append($"<p class=\"meta\">Showing {items.Count} of {total} images.</p>\n");
        return sb.ToString();
    }

    /// <summary>The image as a PNG whose longer side is at most <see cref="ThumbnailSize"/>; null if it cannot be read.</summary>
    public static byte[]? Thumbnail(string path)
    {
        if (!File.Exists(path)) return null;
        using var bmp = SKBitmap.Decode(path);
        if (bmp is null) return null;
        SKBitmap target = bmp;
        SKBitmap? scaled = null;
        int longer = Math.Max(bmp.Width, bmp.Height);
        if (longer > ThumbnailSize)
        {
            double f = (double)ThumbnailSize / longer;
            scaled = bmp.Resize(new SKImageInfo(Math.Max(1, (int)(bmp.Width * f)), Math.Max(1, (int)(bmp.Height * f))), new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear));
            if (scaled is not null) target = scaled;
        }
        try
        {
            using var image = SKImage.FromBitmap(target);
            using var data = image.Encode(SKEncodedImageFormat.Png, 100);
            return data?.ToArray();
        }
        finally { scaled?.Dispose(); }
    }
}
