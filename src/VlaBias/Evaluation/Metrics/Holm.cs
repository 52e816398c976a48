namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// Holm–Bonferroni step-down adjustment of p-values (used for <c>group_gap.significant_count</c>).
/// <para>
/// Sort the m p-values ascending, p_(1) ≤ … ≤ p_(m); adjusted p_(i) = min(1, max_{j ≤ i} (m − j + 1)·p_(j)), which is
/// monotone in i; results are returned in the input order. A hypothesis is rejected at level α when its adjusted
/// p-value is ≤ α, which is the same decision as Holm's sequential procedure. NaN p-values are left NaN and not
/// counted in m.
/// </para>
/// Source: Holm 1979, "A Simple Sequentially Rejective Multiple Test Procedure"; matches R's p.adjust(method="holm")
/// and statsmodels multipletests(method="holm").
/// </summary>
public static class Holm
{
    /// <summary>Holm-adjusted p-values in the same order as <paramref name="pValues"/>.</summary>
    public static double[] Adjust(double[] pValues)
    {
        ArgumentNullException.ThrowIfNull(pValues);
        var adjusted = Enumerable.Repeat(double.NaN, pValues.Length).ToArray();
        var order = Enumerable.Range(0, pValues.Length).Where(i => !double.IsNaN(pValues[i]))
                              .OrderBy(i => pValues[i]).ToArray();
        int m = order.Length;
        double running = 0;
        for (int rank = 0; rank < m; rank++)
        {
            int i = order[rank];
            running = Math.Max(running, Math.Min(1.0, (m - rank) * pValues[i]));
            adjusted[i] = running;
        }
        return adjusted;
    }
}
