namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// Percentile bootstrap 95% confidence intervals, the <c>ci95: [low, high]</c> of every metric in metrics.json.
/// <para>
/// Draw <c>resamples</c> samples of the same size with replacement, evaluate the statistic on each, and return the
/// 2.5th and 97.5th percentiles of those values (linear interpolation between order statistics, numpy's default).
/// Resamples on which the statistic is NaN (e.g. a ratio with an empty denominator) are left out; if all are NaN
/// the interval is (NaN, NaN).
/// <see cref="Ci95Clustered{T, TKey}"/> resamples whole groups instead of items (a cluster bootstrap), for metrics
/// whose items are not independent, e.g. the two images of a counterfactual pair or the probes of one image.
/// </para>
/// Source: Efron &amp; Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13 (percentile interval); cluster
/// bootstrap: Field &amp; Welsh 2007.
/// </summary>
public static class Bootstrap
{
    /// <summary>Percentile 95% interval of <paramref name="statistic"/> over item-level resamples.</summary>
    public static (double Low, double High) Ci95<T>(IReadOnlyList<T> items, Func<IReadOnlyList<T>, double> statistic,
                                                    int resamples = 1000, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(statistic);
        if (resamples < 1) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "need at least one resample");
        if (items.Count == 0) return (double.NaN, double.NaN);

        var rng = new Random(seed);
        var values = new List<double>(resamples);
        var sample = new T[items.Count];
        for (int b = 0; b < resamples; b++)
        {
            for (int i = 0; i < sample.Length; i++) sample[i] = items[rng.Next(items.Count)];
            values.Add(statistic(sample));
        }
        return PercentileInterval(values);
    }

    /// <summary>
    /// Percentile 95% interval where the resampling unit is a group (all items sharing <paramref name="groupOf"/>,
    /// e.g. a counterfactual pair id): groups are drawn with replacement and their items concatenated.
    /// </summary>
    public static (double Low, double High) Ci95Clustered<T, TKey>(IReadOnlyList<T> items, Func<T, TKey> groupOf,
                                                                   Func<IReadOnlyList<T>, double> statistic,
                                                                   int resamples = 1000, int seed = 0)
        where TKey : notnull
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(groupOf);
        ArgumentNullException.ThrowIfNull(statistic);
        if (resamples < 1) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "need at least one resample");
        if (items.Count == 0) return (double.NaN, double.NaN);

        // Groups in first-seen order, so the result depends only on the items and the seed.
        var groups = items.GroupBy(groupOf).Select(g => g.ToArray()).ToArray();
        var rng = new Random(seed);
        var values = new List<double>(resamples);
        var sample = new List<T>(items.Count);
        for (int b = 0; b < resamples; b++)
        {
            sample.Clear();
            for (int g = 0; g < groups.Length; g++) sample.AddRange(groups[rng.Next(groups.Length)]);
            values.Add(statistic(sample));
        }
        return PercentileInterval(values);
    }

    static (double Low, double High) PercentileInterval(List<double> values)
    {
        var finite = values.Where(v => !double.IsNaN(v)).ToArray();
        if (finite.Length == 0) return (double.NaN, double.NaN);
        Array.Sort(finite);
        return (Percentile(finite, 2.5), Percentile(finite, 97.5));
    }

    /// <summary>The <paramref name="q"/>-th percentile (0..100) of sorted values, numpy's 'linear' method.</summary>
    internal static double Percentile(double[] sorted, double q)
    {
        double position = q / 100.0 * (sorted.Length - 1);
        int lower = (int)Math.Floor(position);
        int upper = Math.Min(lower + 1, sorted.Length - 1);
        double fraction = position - lower;
        return sorted[lower] + fraction * (sorted[upper] - sorted[lower]);
    }
}
