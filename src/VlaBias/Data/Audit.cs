// Audit of a manifest (`vlatune data audit`): how protected attributes co-occur with contexts and roles in
// the data a model learns from. In: manifest items (optionally one split). Out: an AuditReport with
//   counts      attribute (gender, tone) × context and × role
//   skew        per context / role, over clearly presented figures (man, woman): the majority gender and its share,
//               and log((n_woman + ½) / (n_man + ½)) (> 0 leans woman; the ½ is the Haldane–Anscombe correction, so a
//               context with no women still has a finite value)
//   disparate   of roles across genders (man, woman) and across tones: per role, each group's selection rate
//   impact      P(role | group) and min/max ratio, flagged under 0.8 (four-fifths rule; Evaluation/Metrics/DisparateImpact)
// and its JSON form.
using System.Text.Json;
using System.Text.Json.Nodes;
using VlaBias.Evaluation.Metrics;

namespace VlaBias.Data;

/// <summary>Skew of one context or role over clearly presented figures.</summary>
/// <param name="Majority">man | woman | tie (none when there are no clear figures)</param>
/// <param name="MajorityShare">share of the majority gender among man + woman figures</param>
/// <param name="LogRatio">ln((n_woman + ½) / (n_man + ½)); &gt; 0 leans woman</param>
public sealed record Skew(string Key, int NMan, int NWoman, string Majority, double MajorityShare, double LogRatio);

/// <summary>The result of an audit.</summary>
/// <param name="Counts">attribute (gender | tone) → by (context | role) → key → attribute value → count</param>
/// <param name="Skews">by (context | role) → skews, in key order</param>
/// <param name="DisparateImpact">attribute (gender | tone) → disparate impact of roles across its groups; null when no item has a role</param>
public sealed record AuditReport(
    string Manifest, string? Split, int NItems,
    IReadOnlyDictionary<string, IReadOnlyDictionary<string, SortedDictionary<string, SortedDictionary<string, int>>>> Counts,
    IReadOnlyDictionary<string, IReadOnlyList<Skew>> Skews,
    IReadOnlyDictionary<string, DisparateImpactResult?> DisparateImpact)
{
    public JsonObject ToJson()
    {
        static JsonNode? N(double v) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 6)) : null;
        var counts = new JsonObject();
        foreach (var (attr, byAxis) in Counts)
        {
            var a = new JsonObject();
            foreach (var (axis, table) in byAxis)
                a[axis] = new JsonObject(table.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)new JsonObject(kv.Value.Select(c => KeyValuePair.Create(c.Key, (JsonNode?)c.Value))))));
            counts[attr] = a;
        }
        var skew = new JsonObject();
        foreach (var (axis, list) in Skews)
            skew[axis] = new JsonObject(list.Select(s => KeyValuePair.Create(s.Key, (JsonNode?)new JsonObject
            {
                ["man"] = s.NMan, ["woman"] = s.NWoman, ["majority"] = s.Majority, ["majority_share"] = N(s.MajorityShare), ["log_ratio"] = N(s.LogRatio),
            })));
        var di = new JsonObject();
        foreach (var (attr, r) in DisparateImpact)
            di[attr] = r is null ? null : new JsonObject
            {
                ["selection_rates"] = new JsonObject(r.SelectionRates.Select(kv => KeyValuePair.Create(kv.Key,
                    (JsonNode?)new JsonObject(kv.Value.OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => KeyValuePair.Create(g.Key, N(g.Value))))))),
                ["ratio_per_role"] = new JsonObject(r.RatioPerRole.Select(kv => KeyValuePair.Create(kv.Key, N(kv.Value)))),
                ["min_ratio"] = N(r.MinRatio),
                ["fails_four_fifths"] = r.FailsFourFifthsRule,
            };
        return new JsonObject
        {
            ["manifest"] = Manifest, ["split"] = Split, ["n_items"] = NItems,
            ["counts"] = counts, ["skew"] = skew, ["disparate_impact"] = di,
        };
    }

    public string ToJsonString() => ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}

public static class Audit
{
    public static readonly string[] Axes = ["context", "role"];

    /// <summary>Loads a manifest (images need not exist: an audit reads annotations only) and audits it.</summary>
    public static AuditReport Run(string manifestPath, string? split = null)
    {
        if (split is not null && !Manifest.Splits.Contains(split))
            throw new BadInputException($"--split: unknown value '{split}' (expected {string.Join('|', Manifest.Splits)})");
        var items = Manifest.Load(manifestPath, checkImages: false);
        return Compute(items, manifestPath, split);
    }

    public static AuditReport Compute(IReadOnlyList<ManifestItem> all, string manifest = "", string? split = null)
    {
        var items = split is null ? all : all.Where(i => i.Split?.Name() == split).ToList();
        if (items.Count == 0) throw new BadInputException($"{manifest}: no items{(split is null ? "" : $" with split '{split}'")} to audit");

        string? AxisOf(ManifestItem i, string axis) => axis == "context" ? i.Context : i.Role;
        string? AttrOf(ManifestItem i, string attr) => attr == "gender" ? i.Attributes.Gender.Name() : i.Attributes.Tone;

        var counts = new Dictionary<string, IReadOnlyDictionary<string, SortedDictionary<string, SortedDictionary<string, int>>>>();
        foreach (var attr in new[] { "gender", "tone" })
        {
            var byAxis = new Dictionary<string, SortedDictionary<string, SortedDictionary<string, int>>>();
            foreach (var axis in Axes)
            {
                var table = new SortedDictionary<string, SortedDictionary<string, int>>(StringComparer.Ordinal);
                foreach (var i in items)
                {
                    if (AxisOf(i, axis) is not string key || AttrOf(i, attr) is not string value) continue;
                    if (!table.TryGetValue(key, out var row)) table[key] = row = new SortedDictionary<string, int>(StringComparer.Ordinal);
                    row[value] = row.GetValueOrDefault(value) + 1;
                }
                byAxis[axis] = table;
            }
            counts[attr] = byAxis;
        }

        var skews = new Dictionary<string, IReadOnlyList<Skew>>();
        foreach (var axis in Axes)
            skews[axis] = counts["gender"][axis].Select(kv => SkewOf(kv.Key, kv.Value.GetValueOrDefault("man"), kv.Value.GetValueOrDefault("woman"))).ToList();

        var di = new Dictionary<string, DisparateImpactResult?>();
        foreach (var attr in new[] { "gender", "tone" })
        {
            // Groups: clearly presented genders only (unclear is not a demographic group); tones as annotated.
            var withGroup = items.Where(i => AttrOf(i, attr) is string g && (attr != "gender" || g is "man" or "woman")).ToList();
            bool anyRole = withGroup.Any(i => i.Role is not null);
            di[attr] = !anyRole || withGroup.Select(i => AttrOf(i, attr)).Distinct().Count() < 2 ? null
                : Evaluation.Metrics.DisparateImpact.Compute(withGroup.Select(i => AttrOf(i, attr)!).ToList(), withGroup.Select(i => i.Role).ToList());
        }
        return new AuditReport(manifest, split, items.Count, counts, skews, di);
    }

    public static Skew SkewOf(string key, int man, int woman)
    {
        int n = man + woman;
        string majority = n == 0 ? "none" : man > woman ? "man" : woman > man ? "woman" : "tie";
        double share = n == 0 ? double.NaN : (double)Math.Max(man, woman) / n;
        return new Skew(key, man, woman, majority, share, Math.Log((woman + 0.5) / (man + 0.5)));
    }
}
