// Human-readable outputs of an evaluation folder (SPEC §7.3): report.md (a table of every metric with its CI).
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace VlaBias.Evaluation;

public static partial class Reports
{
    public static void WriteEvalReport(string outDir, JsonObject metricsDoc, IReadOnlyList<Sample> samples, Suite suite)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# Evaluation: {metricsDoc["model"]}{(metricsDoc["adapter"] is JsonNode a ? $" + {a}" : "")}");
        sb.AppendLine();
        sb.AppendLine($"Suite `{suite.Name}`, split `{suite.Split}`, {metricsDoc["n_items"]} items, {samples.Count} samples. Values with bootstrap 95% confidence intervals.");
        sb.AppendLine();
        sb.AppendLine("| metric | value | 95% CI | n |");
        sb.AppendLine("|---|---:|---|---:|");
        foreach (var (name, node) in metricsDoc["metrics"]!.AsObject())
        {
            var v = node!["value"];
            var ci = node["ci95"] as JsonArray;
            sb.AppendLine($"| `{name}` | {Fmt(v)} | {(ci is null ? "–" : $"[{Fmt(ci[0])}, {Fmt(ci[1])}]")} | {node["n"]} |");
        }
        AtomicFile.WriteAllText(Path.Combine(outDir, "report.md"), sb.ToString());
    }

    public static string Fmt(JsonNode? v) => v is null ? "–" : v.GetValue<double>().ToString("0.000", CultureInfo.InvariantCulture);
}
