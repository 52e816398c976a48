// Comparison of evaluation runs (`vlatune compare`): one table with each run's value and CI, the delta
// against the first run, and a significance mark when the two 95% intervals do not overlap (a conservative test).
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace VlaBias.Evaluation;

public static class Comparison
{
    public static string Table(IReadOnlyList<(string name, JsonObject metrics)> runs)
    {
        var names = runs.SelectMany(r => r.metrics["metrics"]!.AsObject().Select(kv => kv.Key)).Distinct().Order(StringComparer.Ordinal).ToList();
        var sb = new StringBuilder();
        sb.Append("| metric |");
        foreach (var (n, _) in runs) sb.Append($" {n} |");
        for (int i = 1; i < runs.Count; i++) sb.Append($" Δ {runs[i].name} − {runs[0].name} |");
        sb.AppendLine();
        sb.Append("|---|").Append(string.Concat(Enumerable.Repeat("---|", runs.Count + runs.Count - 1))).AppendLine();
        foreach (var name in names)
        {
            sb.Append($"| `{name}` |");
            var cells = runs.Select(r => r.metrics["metrics"]![name]).ToList();
            foreach (var c in cells) sb.Append($" {Cell(c)} |");
            for (int i = 1; i < runs.Count; i++)
            {
                double? a = V(cells[0]), b = V(cells[i]);
                string mark = Significant(cells[0], cells[i]) ? " *" : "";
                sb.Append(a is null || b is null ? " – |" : $" {(b.Value - a.Value).ToString("+0.000;-0.000;0.000", CultureInfo.InvariantCulture)}{mark} |");
            }
            sb.AppendLine();
        }
        sb.AppendLine();
        sb.AppendLine("Values with bootstrap 95% CIs in brackets. `*`: the two runs' 95% intervals do not overlap.");
        return sb.ToString();
    }

    public static void Write(string path, IReadOnlyList<(string name, JsonObject metrics)> runs)
    {
        var sb = new StringBuilder("# Comparison\n\n");
        foreach (var (n, m) in runs) sb.AppendLine($"- **{n}**: model `{m["model"]}`, adapter `{m["adapter"]?.ToString() ?? "none"}`, suite `{m["suite"]}`, split `{m["split"]}`, {m["n_items"]} items");
        sb.AppendLine().Append(Table(runs));
        AtomicFile.WriteAllText(path, sb.ToString());
    }

    public static double? V(JsonNode? c) => c?["value"] is JsonNode v ? v.GetValue<double>() : null;

    /// <summary>True when both cells have CIs and the two 95% intervals do not overlap.</summary>
    public static bool Significant(JsonNode? a, JsonNode? b)
    {
        if (a?["ci95"] is not JsonArray ca || b?["ci95"] is not JsonArray cb || ca[0] is null || cb[0] is null) return false;
        double al = ca[0]!.GetValue<double>(), ah = ca[1]!.GetValue<double>(), bl = cb[0]!.GetValue<double>(), bh = cb[1]!.GetValue<double>();
        return ah < bl || bh < al;
    }

    /// <summary>Why a metric has no value (metrics.json <c>not_computable</c>), or null.</summary>
    public static string? NotComputable(JsonNode? c) => c?["not_computable"]?.GetValue<string>();

    public static string Cell(JsonNode? c)
    {
        if (c?["value"] is not JsonNode v) return NotComputable(c) is string why ? $"– (not computable: {why})" : "–";
        string s = v.GetValue<double>().ToString("0.000", CultureInfo.InvariantCulture);
        if (c["ci95"] is JsonArray ci && ci[0] is not null) s += $" [{ci[0]!.GetValue<double>().ToString("0.000", CultureInfo.InvariantCulture)}, {ci[1]!.GetValue<double>().ToString("0.000", CultureInfo.InvariantCulture)}]";
        return s;
    }
}
