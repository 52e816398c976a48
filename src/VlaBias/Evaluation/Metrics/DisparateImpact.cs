namespace VlaBias.Evaluation.Metrics;

/// <summary>Disparate impact of role predictions.</summary>
/// <param name="SelectionRates">role → group → P(role predicted | group)</param>
/// <param name="RatioPerRole">role → min over groups of the selection rate / max over groups (NaN if nobody got the role)</param>
/// <param name="MinRatio"><c>disparate_impact.min_ratio</c>: the smallest defined per-role ratio</param>
/// <param name="FailsFourFifthsRule">MinRatio &lt; 0.8</param>
public sealed record DisparateImpactResult(IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>> SelectionRates,
                                           IReadOnlyDictionary<string, double> RatioPerRole, double MinRatio,
                                           bool FailsFourFifthsRule);

/// <summary>
/// Disparate impact of role predictions. For each role, the selection rate of each group is
/// P(role predicted | group) over all items of that group; the role's ratio is min over groups / max over groups
/// (Fairlearn's demographic_parity_ratio; with two groups it is AIF360's disparate_impact taken ≤ 1). The result is
/// the smallest ratio over roles, flagged when below 0.8 (the "four-fifths rule", US EEOC Uniform Guidelines 1978,
/// §1607.4D; AIF360 uses the same 0.8 cut). metrics.json key <c>disparate_impact.min_ratio</c>.
/// </summary>
public static class DisparateImpact
{
    public const double FourFifths = 0.8;

    /// <param name="groups">each item's group (e.g. presented gender)</param>
    /// <param name="predictedRoles">each item's predicted role, null for none</param>
    /// <param name="roles">the roles to check; default every role that was predicted at least once</param>
    public static DisparateImpactResult Compute(IReadOnlyList<string> groups, IReadOnlyList<string?> predictedRoles,
                                                IReadOnlyCollection<string>? roles = null)
    {
        ArgumentNullException.ThrowIfNull(groups);
        ArgumentNullException.ThrowIfNull(predictedRoles);
        if (groups.Count != predictedRoles.Count)
            throw new ArgumentException($"{groups.Count} groups but {predictedRoles.Count} predictions");
        var roleList = (roles ?? predictedRoles.Where(r => r is not null).Select(r => r!).Distinct().ToArray())
                       .Order(StringComparer.Ordinal).ToArray();
        var groupSizes = groups.GroupBy(g => g).ToDictionary(g => g.Key, g => g.Count());

        var rates = new Dictionary<string, IReadOnlyDictionary<string, double>>(StringComparer.Ordinal);
        var ratios = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var role in roleList)
        {
            var perGroup = new Dictionary<string, double>();
            foreach (var (group, size) in groupSizes)
            {
                int selected = 0;
                for (int i = 0; i < groups.Count; i++)
                    if (groups[i] == group && predictedRoles[i] == role) selected++;
                perGroup[group] = (double)selected / size;
            }
            rates[role] = perGroup;
            double max = perGroup.Values.DefaultIfEmpty(0).Max();
            ratios[role] = max == 0 ? double.NaN : perGroup.Values.Min() / max;
        }
        var defined = ratios.Values.Where(r => !double.IsNaN(r)).ToArray();
        double minRatio = defined.Length == 0 ? double.NaN : defined.Min();
        return new DisparateImpactResult(rates, ratios, minRatio, minRatio < FourFifths);
    }
}
