using System.Runtime.CompilerServices;

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
        var selectedCounts = new Dictionary<(string Role, string Group), int>();
        for (int i = 0; i < groups.Count; i++)
            if (predictedRoles[i] is string predicted)
                selectedCounts[(predicted, groups[i])] = selectedCounts.GetValueOrDefault((predicted, groups[i])) + 1;

        var rates = new Dictionary<string, IReadOnlyDictionary<string, double>>(StringComparer.Ordinal);
        var ratios = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var role in roleList)
        {
            var perGroup = new Dictionary<string, double>();
            foreach (var (group, size) in groupSizes)
            {
                perGroup[group] = (double)selectedCounts.GetValueOrDefault((role, group)) / size;
            }
            rates[role] = perGroup;
            double max = perGroup.Values.DefaultIfEmpty(0).Max();
            ratios[role] = max == 0 ? double.NaN : perGroup.Values.Min() / max;
        }
        var defined = ratios.Values.Where(r => !double.IsNaN(r)).ToArray();
        double minRatio = defined.Length == 0 ? double.NaN : defined.Min();
        return new DisparateImpactResult(rates, ratios, minRatio, minRatio < FourFifths);
    }

    /// <summary>
    /// The <see cref="DisparateImpactResult.MinRatio"/> of <see cref="Compute"/> (roles: every predicted one) from integer
    /// codes, for bootstraps that need it a thousand times: group 0..<paramref name="groupCount"/>−1 per item, predicted
    /// role 0..<paramref name="roleCount"/>−1 or −1 for none. The same value: the rates are the same divisions of the same
    /// counts, and minima and maxima do not depend on the order they are taken in.
    /// </summary>
    public static double MinRatio(IReadOnlyList<int> groups, IReadOnlyList<int> predictedRoles, int groupCount, int roleCount)
    {
        ArgumentNullException.ThrowIfNull(groups);
        ArgumentNullException.ThrowIfNull(predictedRoles);
        if (groups.Count != predictedRoles.Count) throw new ArgumentException($"{groups.Count} groups but {predictedRoles.Count} predictions");
        return MinRatio(groups.ToArray(), predictedRoles.ToArray(), Enumerable.Range(0, groups.Count).ToArray(), groupCount, roleCount);
    }

    /// <summary><see cref="MinRatio(IReadOnlyList{int}, IReadOnlyList{int}, int, int)"/> of the items at
    /// <paramref name="positions"/> (a bootstrap resample, repeats allowed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double MinRatio(int[] groups, int[] predictedRoles, ReadOnlySpan<int> positions, int groupCount, int roleCount)
    {
        ArgumentNullException.ThrowIfNull(groups);
        ArgumentNullException.ThrowIfNull(predictedRoles);
        if (groups.Length != predictedRoles.Length) throw new ArgumentException($"{groups.Length} groups but {predictedRoles.Length} predictions");
        Span<int> size = groupCount <= 64 ? stackalloc int[groupCount] : new int[groupCount];
        Span<int> selected = groupCount * roleCount <= 512 ? stackalloc int[groupCount * roleCount] : new int[groupCount * roleCount];
        Span<bool> predicted = roleCount <= 256 ? stackalloc bool[roleCount] : new bool[roleCount];
        size.Clear(); selected.Clear(); predicted.Clear();
        foreach (int i in positions)
        {
            size[groups[i]]++;
            if (predictedRoles[i] is int r and >= 0) { selected[groups[i] * roleCount + r]++; predicted[r] = true; }
        }
        double minRatio = double.NaN;
        for (int r = 0; r < roleCount; r++)
        {
            if (!predicted[r]) continue;
            double max = double.NegativeInfinity, min = double.PositiveInfinity;
            for (int g = 0; g < groupCount; g++)
            {
                if (size[g] == 0) continue;
                double rate = (double)selected[g * roleCount + r] / size[g];
                max = Math.Max(max, rate);
                min = Math.Min(min, rate);
            }
            if (max == 0) continue;
            double ratio = min / max;
            minRatio = double.IsNaN(minRatio) ? ratio : Math.Min(minRatio, ratio);
        }
        return minRatio;
    }
}
