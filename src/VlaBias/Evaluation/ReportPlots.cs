// PNG plots of the reports, drawn with ScottPlot 5 (which renders through SkiaSharp, headless):
//   AttributeBias  — group gap per probe attribute with 95% CIs; one series per run (one run, or base vs tuned side
//                    by side); train attributes left, held-out test attributes right of a divider.
//   MetricsSummary — the main bias metrics (lower is better) and accuracy metrics (higher is better) with CIs.
//   Training       — validation bias and CIDEr-D vs step, and the training loss, from trainer_state.json.
// Each returns PNG bytes; the caller writes them to plots/ and embeds them in report.html.
using System.Text.Json.Nodes;
using ScottPlot;
using SkiaSharp;

namespace VlaBias.Evaluation;

public static class ReportPlots
{
    /// <summary>Series colors: the first run (base) grey-blue, the second (tuned) orange, then ScottPlot's palette.</summary>
    private static readonly Color[] Colors =
        [Color.FromHex("#4C72B0"), Color.FromHex("#DD8452"), Color.FromHex("#55A868"), Color.FromHex("#C44E52"), Color.FromHex("#8172B3"), Color.FromHex("#937860")];

    public static Color SeriesColor(int i) => Colors[i % Colors.Length];

    /// <summary>The series color as CSS #rrggbb, so tables and galleries match the plots.</summary>
    public static string SeriesHex(int i) { var c = SeriesColor(i); return $"#{c.R:x2}{c.G:x2}{c.B:x2}"; }

    public static readonly string[] BiasMetrics =
        ["pairwise_probe_gap.train", "pairwise_probe_gap.test", "group_gap.mean_abs", "caption_gender.error_rate",
         "caption_gender.stereotype_rate_unclear", "role.accuracy_gap", "lic", "biasamp.attribute_to_role"];

    public static readonly string[] AccuracyMetrics =
        ["bleu_4", "rouge_l", "cider_d", "vqa_accuracy", "gender_word_accuracy", "caption_gender.neutral_rate_unclear", "disparate_impact.min_ratio"];

    /// <summary>Per-attribute group gap, one colored series per run, bars with 95% CI whiskers.</summary>
    public static byte[] AttributeBias(IReadOnlyList<(string name, IReadOnlyList<AttributeBias> gaps)> runs, string title, int width = 1200, int height = 560)
    {
        var plt = NewPlot();
        var attributes = runs.SelectMany(r => r.gaps.Select(g => (g.Attribute, g.Split))).Distinct()
            .OrderBy(a => a.Split == "train" ? 0 : 1).ThenBy(a => a.Attribute, StringComparer.Ordinal).ToList();
        if (attributes.Count == 0) return Empty(title, "no probe answers with man/woman images", width, 300);
        int k = runs.Count;
        double groupWidth = 0.8, barWidth = groupWidth / k;
        var legend = new List<LegendItem>();
        for (int j = 0; j < k; j++)
        {
            var byName = runs[j].gaps.ToDictionary(g => g.Attribute);
            var bars = new List<Bar>();
            var xs = new List<double>(); var ys = new List<double>(); var up = new List<double>(); var down = new List<double>();
            for (int i = 0; i < attributes.Count; i++)
            {
                if (!byName.TryGetValue(attributes[i].Attribute, out var g) || !double.IsFinite(g.Gap)) continue;
                double x = i + (j - (k - 1) / 2.0) * barWidth;
                var color = SeriesColor(j);
                // Test (held-out) attributes are drawn lighter, so the split reads at a glance even without the divider.
                if (attributes[i].Split != "train") color = color.WithAlpha(0.55);
                bars.Add(new Bar { Position = x, Value = g.Gap, ValueBase = 0, Size = barWidth * 0.95, FillColor = color, LineWidth = 0 });
                if (double.IsFinite(g.Low) && double.IsFinite(g.High))
                {
                    xs.Add(x); ys.Add(g.Gap); up.Add(Math.Max(0, g.High - g.Gap)); down.Add(Math.Max(0, g.Gap - g.Low));
                }
            }
            plt.Add.Bars(bars);
            if (xs.Count > 0)
            {
                var eb = plt.Add.ErrorBar(xs, ys, up);
                eb.YErrorPositive = up; eb.YErrorNegative = down;
                eb.Color = Color.FromHex("#222222"); eb.LineWidth = 1.2f; eb.CapSize = Math.Max(2, (float)(300.0 / attributes.Count / k));
            }
            legend.Add(new LegendItem { LabelText = runs[j].name, FillColor = SeriesColor(j) });
        }
        plt.Add.HorizontalLine(0, 1, Color.FromHex("#444444"));
        int firstTest = attributes.FindIndex(a => a.Split != "train");
        if (firstTest > 0)
        {
            var v = plt.Add.VerticalLine(firstTest - 0.5, 1.5f, Color.FromHex("#888888"));
            v.LinePattern = LinePattern.Dashed;
            v.Text = "held-out (test) attributes →";
            v.LabelOppositeAxis = true;
            v.LabelFontSize = 12;
            v.LabelBackgroundColor = Color.FromHex("#FFFFFF").WithAlpha(0);
            v.LabelFontColor = Color.FromHex("#555555");
        }
        plt.Axes.Bottom.SetTicks(Enumerable.Range(0, attributes.Count).Select(i => (double)i).ToArray(),
            attributes.Select(a => a.Split == "train" ? a.Attribute : a.Attribute + " (test)").ToArray());
        plt.Axes.Bottom.TickLabelStyle.Rotation = 50;
        plt.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
        plt.Axes.Bottom.MinimumSize = 130;
        plt.Axes.SetLimitsX(-0.7, attributes.Count - 0.3);
        plt.YLabel("woman − man mean p(yes)");
        plt.Title(title);
        plt.Legend.ManualItems.AddRange(legend);
        plt.ShowLegend(Edge.Right);   // outside the axes: bars can reach any corner
        return Png(plt, width, height);
    }

    /// <summary>Main metrics with 95% CIs, bias metrics (lower is better) and accuracy metrics (higher is better) as two panels.</summary>
    public static byte[] MetricsSummary(IReadOnlyList<(string name, JsonObject metricsDoc)> runs, int width = 1200, int height = 520)
    {
        byte[] left = [], right = [];
        Parallel.Invoke(
            () => left = MetricPanel(runs, BiasMetrics, "Bias metrics (lower is better; CIs 95%)", "", width / 2, height),
            () => right = MetricPanel(runs, AccuracyMetrics, "Accuracy metrics (higher is better; CIs 95%)", "", width - width / 2, height));
        return Stack([left, right], horizontal: true);
    }

    // Horizontal bars: metric names are long, so they sit on the left axis unrotated; the first metric on top.
    private static byte[] MetricPanel(IReadOnlyList<(string name, JsonObject metricsDoc)> runs, string[] names, string title, string xlabel, int width, int height)
    {
        var plt = NewPlot();
        int k = runs.Count;
        double barWidth = 0.8 / k;
        var present = names.Where(n => runs.Any(r => Value(r.metricsDoc, n).value is not null)).ToList();
        if (present.Count == 0) return Empty(title, "no values", width, height);
        for (int j = 0; j < k; j++)
        {
            var bars = new List<Bar>();
            var xs = new List<double>(); var ys = new List<double>(); var up = new List<double>(); var down = new List<double>();
            for (int i = 0; i < present.Count; i++)
            {
                var (v, lo, hi) = Value(runs[j].metricsDoc, present[i]);
                if (v is not double value) continue;
                double y = -i - (j - (k - 1) / 2.0) * barWidth;
                bars.Add(new Bar { Position = y, Value = value, Size = barWidth * 0.95, FillColor = SeriesColor(j), LineWidth = 0 });
                if (lo is double l && hi is double h) { xs.Add(value); ys.Add(y); up.Add(Math.Max(0, h - value)); down.Add(Math.Max(0, value - l)); }
            }
            var bp = plt.Add.Bars(bars);
            bp.Horizontal = true;
            if (xs.Count > 0)
            {
                var eb = plt.Add.ErrorBar(xs, ys, up);
                eb.YErrorPositive = null; eb.YErrorNegative = null;
                eb.XErrorPositive = up; eb.XErrorNegative = down; eb.Color = Color.FromHex("#222222"); eb.LineWidth = 1.2f;
            }
            plt.Legend.ManualItems.Add(new LegendItem { LabelText = runs[j].name, FillColor = SeriesColor(j) });
        }
        plt.Add.VerticalLine(0, 1, Color.FromHex("#444444"));
        plt.Axes.Left.SetTicks(Enumerable.Range(0, present.Count).Select(i => (double)-i).ToArray(), present.ToArray());
        plt.Axes.SetLimitsY(-present.Count + 0.4, 0.6);
        plt.Title(title);
        if (xlabel.Length > 0) plt.XLabel(xlabel);
        plt.Legend.IsVisible = true;
        plt.Legend.Alignment = Alignment.LowerRight;
        return Png(plt, width, height);
    }

    /// <summary>Validation bias and CIDEr-D vs step (with the base values and the threshold), and the training loss.</summary>
    public static byte[] Training(TrainingCurves curves, int width = 1200, int height = 380)
    {
        var pts = curves.Points;
        if (pts.Count == 0) return Empty("Training curves", "no validation points in trainer_state.json", width, 300);
        double[] steps = pts.Select(p => (double)p.Step).ToArray();
        byte[] Panel(string title, string ylabel, Func<CurvePoint, double> y, Color color, double? baseValue, string? baseLabel, double? threshold)
        {
            var plt = NewPlot();
            var ys = pts.Select(y).ToArray();
            var s = plt.Add.Scatter(steps, ys, color);
            s.LineWidth = 2; s.MarkerSize = 6; s.LegendText = ylabel;
            if (baseValue is double b)
            {
                var h = plt.Add.HorizontalLine(b, 1.5f, Color.FromHex("#4C72B0"));
                h.LinePattern = LinePattern.Dashed; h.LegendText = baseLabel ?? "base";
            }
            if (threshold is double t)
            {
                var h = plt.Add.HorizontalLine(t, 1.5f, Color.FromHex("#C44E52"));
                h.LinePattern = LinePattern.Dotted; h.LegendText = $"threshold {t:0.###}";
            }
            if (curves.BestStep is long best && best >= 0)
            {
                var v = plt.Add.VerticalLine(best, 1, Color.FromHex("#55A868"));
                v.LinePattern = LinePattern.Dashed; v.LegendText = $"best step {best}";
            }
            plt.Title(title); plt.XLabel("step"); plt.YLabel(ylabel);
            plt.ShowLegend(Edge.Bottom);   // below the axes: curves fill the whole panel, a legend inside would cover them
            return Png(plt, width / 3, height);
        }
        return Stack([
            Panel("Validation bias (pairwise gap)", "bias", p => p.Bias, Color.FromHex("#DD8452"), curves.BaseBias, "base", curves.Threshold),
            Panel("Validation CIDEr-D", "CIDEr-D", p => p.CiderD, Color.FromHex("#55A868"), curves.BaseCiderD, "base", null),
            Panel("Training loss", "loss", p => p.Loss, Color.FromHex("#8172B3"), null, null, null),
        ], horizontal: true);
    }

    private static (double? value, double? low, double? high) Value(JsonObject doc, string name)
    {
        var node = doc["metrics"]?[name];
        double? v = node?["value"] is JsonNode n ? n.GetValue<double>() : null;
        if (node?["ci95"] is JsonArray ci && ci[0] is JsonNode a && ci[1] is JsonNode b) return (v, a.GetValue<double>(), b.GetValue<double>());
        return (v, null, null);
    }

    private static byte[] Empty(string title, string message, int width, int height)
    {
        var plt = NewPlot();
        plt.Title(title);
        var t = plt.Add.Text(message, 0, 0);
        t.LabelFontSize = 16;
        t.LabelAlignment = Alignment.MiddleCenter;
        plt.Axes.SetLimits(-1, 1, -1, 1);
        plt.HideGrid();
        return Png(plt, width, height);
    }

    private static Plot NewPlot()
    {
        var plt = new Plot();
        // A sans-serif face where the machine has one; ScottPlot falls back to its default otherwise.
        foreach (var family in new[] { "DejaVu Sans", "Liberation Sans", "Arial", "Helvetica" })
            if (SKFontManager.Default.MatchFamily(family) is SKTypeface tf) { tf.Dispose(); plt.Font.Set(family); break; }
        return plt;
    }

    private static byte[] Png(Plot plt, int width, int height)
    {
        plt.FigureBackground.Color = Color.FromHex("#FFFFFF");
        return plt.GetImageBytes(width, height, ImageFormat.Png);
    }

    /// <summary>Places PNG panels next to each other (or one under the other) in one PNG.</summary>
    private static byte[] Stack(IReadOnlyList<byte[]> panels, bool horizontal)
    {
        var bitmaps = panels.Select(p => SKBitmap.Decode(p)).ToList();
        try
        {
            int w = horizontal ? bitmaps.Sum(b => b.Width) : bitmaps.Max(b => b.Width);
            int h = horizontal ? bitmaps.Max(b => b.Height) : bitmaps.Sum(b => b.Height);
            using var surface = SKSurface.Create(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Premul));
            surface.Canvas.Clear(SKColors.White);
            int offset = 0;
            foreach (var b in bitmaps)
            {
                surface.Canvas.DrawBitmap(b, horizontal ? offset : 0, horizontal ? 0 : offset);
                offset += horizontal ? b.Width : b.Height;
            }
            using var image = surface.Snapshot();
            using var data = image.Encode(SKEncodedImageFormat.Png, 100);
            return data.ToArray();
        }
        finally { foreach (var b in bitmaps) b.Dispose(); }
    }
}
