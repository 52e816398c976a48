// Human-readable outputs. In: metrics documents, samples, the suite (for where images live), a run's
// trainer_state.json. Out:
//   eval folder  — report.md (metric table, what it means, plot links), report.html (self-contained), plots/*.png
//   compare DIR  — comparison.md, comparison.html, plots/*.png for two or more eval folders
//   run folder   — report.html (+ report.md, plots/) for base vs tuned with training curves and both captions
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Serilog;

namespace VlaBias.Evaluation;

public static partial class Reports
{
    public const string PlotsDir = "plots";
    public const string AttributeBiasPlot = "attribute_bias.png", SummaryPlot = "metrics_summary.png", TrainingPlot = "training_curves.png";

    public static void WriteEvalReport(string outDir, JsonObject metricsDoc, IReadOnlyList<Sample> samples, Suite suite)
    {
        EvalFolder.WriteContext(outDir, suite);
        string title = $"Evaluation: {metricsDoc["model"]}{(metricsDoc["adapter"] is JsonNode a ? $" + {a}" : "")}";
        string meta = $"Suite `{suite.Name}`, split `{suite.Split}`, {metricsDoc["n_items"]} items, {samples.Count} samples.";
        string runName = metricsDoc["adapter"] is null ? "model" : "model + adapter";
        // The summary plot and the gallery need no per-attribute bias: they are drawn while it is computed (ScottPlot's
        // and Skia's first use is most of a report's time). A problem there shows when the HTML is written.
        var renderings = Task.Run(() =>
        {
            var folder = new EvalFolder(runName, outDir, metricsDoc, samples, Path.GetDirectoryName(Path.GetFullPath(suite.Manifest)));
            byte[] summaryPng = [];
            string gallery = "";
            Parallel.Invoke(() => summaryPng = ReportPlots.MetricsSummary([(runName, metricsDoc)]), () => gallery = ReportHtml.Gallery([folder]));
            return (summaryPng, gallery);
        });
        var gaps = AttributeBiasCalculator.Compute(samples, Math.Min(suite.Bootstrap, 1000), (int)suite.Seed);
        var explain = MetricInfo.Explain(metricsDoc, gaps);

        var sb = new StringBuilder();
        sb.AppendLine($"# {title}");
        sb.AppendLine();
        sb.AppendLine($"{meta} Values with bootstrap 95% confidence intervals.");
        sb.AppendLine();
        AppendExplanation(sb, "What this means", explain);
        sb.AppendLine("## Plots");
        sb.AppendLine();
        sb.AppendLine($"- [Group gap per probe attribute]({PlotsDir}/{AttributeBiasPlot})");
        sb.AppendLine($"- [Main metrics with CIs]({PlotsDir}/{SummaryPlot})");
        sb.AppendLine("- [Self-contained HTML report](report.html)");
        sb.AppendLine();
        sb.AppendLine("## Metrics");
        sb.AppendLine();
        sb.AppendLine("| metric | value | 95% CI | n |");
        sb.AppendLine("|---|---:|---|---:|");
        foreach (var (name, node) in metricsDoc["metrics"]!.AsObject())
        {
            var v = node!["value"];
            var ci = node["ci95"] as JsonArray;
            string value = v is null && Comparison.NotComputable(node) is string why ? $"– (not computable: {why})" : Fmt(v);
            sb.AppendLine($"| `{name}` | {value} | {(ci is null ? "–" : $"[{Fmt(ci[0])}, {Fmt(ci[1])}]")} | {node["n"]} |");
        }
        AtomicFile.WriteAllText(Path.Combine(outDir, "report.md"), sb.ToString());

        // The metrics are already on disk: a plot or image problem costs the HTML report, never the evaluation.
        try { WriteEvalHtml(outDir, metricsDoc, title, meta, runName, gaps, renderings, explain); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Log.Warning("report: could not write report.html/plots in {Dir}: {Message}", outDir, e.Message);
        }
    }

    private static void WriteEvalHtml(string outDir, JsonObject metricsDoc, string title, string meta, string runName, IReadOnlyList<AttributeBias> gaps,
                                      Task<(byte[] SummaryPng, string Gallery)> renderings, IReadOnlyList<string> explain)
    {
        var biasPng = ReportPlots.AttributeBias([(runName, gaps)], "Group gap per probe attribute (woman − man mean p(yes), 95% CI)");
        var (summaryPng, gallery) = renderings.GetAwaiter().GetResult();
        WritePlot(outDir, AttributeBiasPlot, biasPng);
        WritePlot(outDir, SummaryPlot, summaryPng);

        var html = new StringBuilder();
        html.Append($"<h1>{ReportHtml.E(title)}</h1>\n<p class=\"meta\">{ReportHtml.E(meta.Replace("`", ""))} Generated {DateTime.Now:yyyy-MM-dd HH:mm}.</p>\n");
        html.Append(HtmlExplanation("What this means", explain));
        html.Append("<h2 id=\"bias-per-attribute\">Bias per attribute</h2>\n").Append(ReportHtml.Figure(biasPng, "group gap per attribute",
            "Each bar: mean p(yes) on images of women minus on images of men for one probe attribute, with a bootstrap 95% CI over counterfactual pairs. " +
            "Bars above 0: the model ascribes the attribute to women more often. Lighter bars right of the divider: held-out (test) attributes."));
        html.Append("<h2 id=\"main-metrics\">Main metrics</h2>\n").Append(ReportHtml.Figure(summaryPng, "main metrics", "Main bias and accuracy metrics with bootstrap 95% CIs."));
        html.Append("<h2 id=\"all-metrics\">All metrics</h2>\n").Append(ReportHtml.MetricsTable(metricsDoc));
        html.Append("<h2 id=\"gallery\">Gallery</h2>\n<p class=\"meta\">Evaluated images with the model's caption and the reference captions; counterfactual pairs side by side.</p>\n")
            .Append(gallery);
        AtomicFile.WriteAllText(Path.Combine(outDir, "report.html"), ReportHtml.Page(title, html.ToString()));
    }

    /// <summary>Rewrites the reports of an existing eval folder from its metrics.json and samples.jsonl (`vlatune eval
    /// report`). The suite is the one given, else the one recorded in report_context.json.</summary>
    public static void RebuildEvalReport(string dir, string? suitePath = null)
    {
        var folder = EvalFolder.Load(dir);
        if (suitePath is null)
        {
            var ctx = Path.Combine(dir, EvalFolder.ContextFile);
            suitePath = File.Exists(ctx) ? JsonNode.Parse(File.ReadAllText(ctx))?["suite"]?.GetValue<string>() : null;
            if (suitePath is null) throw new BadInputException($"{dir}: no {EvalFolder.ContextFile}; name the suite the folder was evaluated with (--suite FILE)");
        }
        var suite = Suite.Load(suitePath);
        if (folder.Metrics["split"]?.GetValue<string>() is string split) suite = suite with { Split = split };
        WriteEvalReport(dir, folder.Metrics, folder.Samples, suite with { Bootstrap = Math.Min(suite.Bootstrap, 1000) });
    }

    /// <summary>compare --out: comparison.md, comparison.html and the plots for two or more eval folders (the first is the reference).</summary>
    public static void WriteComparison(string outDir, IReadOnlyList<EvalFolder> runs, string title = "Comparison")
    {
        Directory.CreateDirectory(outDir);
        var docs = runs.Select(r => (r.Name, r.Metrics)).ToList();
        Comparison.Write(Path.Combine(outDir, "comparison.md"), docs);
        var body = ComparisonBody(outDir, runs, title, null, null);
        AtomicFile.WriteAllText(Path.Combine(outDir, "comparison.html"), ReportHtml.Page(title, body));
    }

    /// <summary>
    /// The report of a debiasing run folder (Training/RunFolder.cs): report.html at the run folder's root with base vs tuned
    /// (table with deltas and significance, per-attribute bias before/after, training curves, both captions per
    /// image), plus report.md and plots/. Needs eval/base and eval/tuned; trainer_state.json is optional.
    /// </summary>
    public static void WriteRunReport(string runDir)
    {
        var runs = new List<EvalFolder>
        {
            EvalFolder.Load(Path.Combine(runDir, "eval", "base"), "base"),
            EvalFolder.Load(Path.Combine(runDir, "eval", "tuned"), "tuned"),
        };
        var curves = TrainingCurves.Load(runDir);
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(runDir)));
        string title = $"Debiasing run {name}: base vs tuned";
        string? state = curves is null ? null
            : $"Stopped: {curves.StopReason ?? "?"}; best adapter from step {curves.BestStep?.ToString(CultureInfo.InvariantCulture) ?? "?"}; " +
              $"{curves.Points.Count} validation points{(curves.Threshold is double t ? $", threshold {t.ToString("0.###", CultureInfo.InvariantCulture)}" : "")}.";
        if (ResidualBias.ForRun(runDir) is { } residual) state = (state is null ? "" : state + " ") + residual.Verdict;
        var body = ComparisonBody(runDir, runs, title, curves, state);
        AtomicFile.WriteAllText(Path.Combine(runDir, "report.html"), ReportHtml.Page(title, body));

        var md = new StringBuilder($"# {title}\n\n");
        if (state is not null) md.AppendLine(state).AppendLine();
        AppendExplanation(md, "What changed", MetricInfo.ExplainChanges(runs.Select(r => (r.Name, r.Metrics)).ToList()));
        md.AppendLine("## Plots\n");
        md.AppendLine($"- [Group gap per attribute, base vs tuned]({PlotsDir}/{AttributeBiasPlot})");
        md.AppendLine($"- [Main metrics, base vs tuned]({PlotsDir}/{SummaryPlot})");
        if (curves is not null) md.AppendLine($"- [Training curves]({PlotsDir}/{TrainingPlot})");
        md.AppendLine("- [Self-contained HTML report](report.html)\n");
        md.AppendLine("## Metrics\n").Append(Comparison.Table(runs.Select(r => (r.Name, r.Metrics)).ToList()));
        AtomicFile.WriteAllText(Path.Combine(runDir, "report.md"), md.ToString());
    }

    // The HTML body shared by compare and run reports; writes the plots into dir/plots.
    private static string ComparisonBody(string dir, IReadOnlyList<EvalFolder> runs, string title, TrainingCurves? curves, string? state)
    {
        var docs = runs.Select(r => (r.Name, r.Metrics)).ToList();
        var gaps = runs.Select(r => (r.Name, (IReadOnlyList<AttributeBias>)AttributeBiasCalculator.Compute(r.Samples, BootstrapOf(r), SeedOf(r)))).ToList();
        byte[] biasPng = [], summaryPng = [];
        byte[]? curvesPng = null;
        string gallery = "";
        Parallel.Invoke(
            () => biasPng = ReportPlots.AttributeBias(gaps, $"Group gap per probe attribute: {string.Join(" vs ", runs.Select(r => r.Name))} (95% CI)"),
            () => summaryPng = ReportPlots.MetricsSummary(docs),
            () => curvesPng = curves is null ? null : ReportPlots.Training(curves),
            () => gallery = ReportHtml.Gallery(runs));
        WritePlot(dir, AttributeBiasPlot, biasPng);
        WritePlot(dir, SummaryPlot, summaryPng);
        if (curvesPng is not null) WritePlot(dir, TrainingPlot, curvesPng);

        var h = new StringBuilder($"<h1>{ReportHtml.E(title)}</h1>\n<p class=\"meta\">");
        h.Append(string.Join("<br>", runs.Select(r => $"<b>{ReportHtml.E(r.Name)}</b>: model <code>{ReportHtml.E(r.Metrics["model"]?.ToString())}</code>, adapter " +
            $"<code>{ReportHtml.E(r.Metrics["adapter"]?.ToString() ?? "none")}</code>, suite <code>{ReportHtml.E(r.Metrics["suite"]?.ToString())}</code>, split " +
            $"<code>{ReportHtml.E(r.Metrics["split"]?.ToString())}</code>, {ReportHtml.E(r.Metrics["n_items"]?.ToString())} items")));
        h.Append($"<br>Generated {DateTime.Now:yyyy-MM-dd HH:mm}.</p>\n");
        if (state is not null) h.Append($"<p>{ReportHtml.E(state)}</p>\n");
        var explain = MetricInfo.ExplainChanges(docs);
        var last = runs[^1];
        explain.AddRange(MetricInfo.Explain(last.Metrics, gaps[^1].Item2).Select(s => $"{last.Name}: {s}"));
        h.Append(HtmlExplanation("What this means", explain));
        h.Append("<h2 id=\"metrics\">Metrics</h2>\n").Append(ReportHtml.ComparisonTable(docs));
        h.Append("<h2 id=\"bias-per-attribute-before-and-after\">Bias per attribute, before and after</h2>\n").Append(ReportHtml.Figure(biasPng, "group gap per attribute per run",
            "Per probe attribute, mean p(yes) on images of women minus on men, one bar per run side by side, with bootstrap 95% CIs over counterfactual pairs. " +
            "Closer to 0 is less biased. Lighter bars right of the divider: held-out (test) attributes the tuning never saw."));
        h.Append("<h2 id=\"main-metrics\">Main metrics</h2>\n").Append(ReportHtml.Figure(summaryPng, "main metrics per run", "Main bias and accuracy metrics of each run with bootstrap 95% CIs."));
        if (curvesPng is not null)
            h.Append("<h2 id=\"training-curves\">Training curves</h2>\n").Append(ReportHtml.Figure(curvesPng, "training curves",
                "Validation bias (the early-stopping metric) and CIDEr-D (the caption guard) at each evaluation, with the base model's values dashed; training loss at the same steps."));
        h.Append("<h2 id=\"gallery\">Gallery</h2>\n<p class=\"meta\">The same images captioned by each run, with the reference captions; counterfactual pairs side by side.</p>\n")
            .Append(gallery);
        return h.ToString();
    }

    private static int BootstrapOf(EvalFolder f)
    {
        try
        {
            var ctx = Path.Combine(f.Dir, EvalFolder.ContextFile);
            if (File.Exists(ctx) && JsonNode.Parse(File.ReadAllText(ctx))?["bootstrap"]?.GetValue<int>() is int b) return Math.Clamp(b, 1, 1000);
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException) { }
        return 1000;
    }

    private static int SeedOf(EvalFolder f)
    {
        try
        {
            var ctx = Path.Combine(f.Dir, EvalFolder.ContextFile);
            if (File.Exists(ctx) && JsonNode.Parse(File.ReadAllText(ctx))?["seed"]?.GetValue<long>() is long s) return (int)s;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException) { }
        return 0;
    }

    private static void WritePlot(string dir, string name, byte[] png) =>
        AtomicFile.Write(Path.Combine(dir, PlotsDir, name), s => s.Write(png));

    private static void AppendExplanation(StringBuilder sb, string heading, IReadOnlyList<string> lines)
    {
        if (lines.Count == 0) return;
        sb.AppendLine($"## {heading}").AppendLine().AppendLine(string.Join(" ", lines)).AppendLine();
    }

    private static string HtmlExplanation(string heading, IReadOnlyList<string> lines) => lines.Count == 0 ? ""
        : $"<h2 id=\"summary\">{ReportHtml.E(heading)}</h2>\n<div class=\"note\">{string.Concat(lines.Select(l => $"<p>{ReportHtml.E(l)}</p>"))}</div>\n";

    public static string Fmt(JsonNode? v) => v is null ? "–" : v.GetValue<double>().ToString("0.000", CultureInfo.InvariantCulture);
}
