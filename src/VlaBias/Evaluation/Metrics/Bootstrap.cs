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
    /// <param name="threads">workers evaluating resamples at once; the draws are made first, in order, and each value
    /// is stored at its resample's index, so the interval is the same for any thread count (the statistic must then be
    /// safe to call from several threads)</param>
    public static (double Low, double High) Ci95Clustered<T, TKey>(IReadOnlyList<T> items, Func<T, TKey> groupOf,
                                                                   Func<IReadOnlyList<T>, double> statistic,
                                                                   int resamples = 1000, int seed = 0, int threads = 1)
        where TKey : notnull
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(groupOf);
        ArgumentNullException.ThrowIfNull(statistic);
        if (resamples < 1) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "need at least one resample");
        if (items.Count == 0) return (double.NaN, double.NaN);
        var values = new double[resamples];
        ForEachClusteredResample(items, groupOf, resamples, seed, threads, (b, sample) => values[b] = statistic(sample));
        return PercentileInterval(values);
    }

    /// <summary>
    /// <see cref="Ci95Clustered{T, TKey}"/> of several statistics on the same resamples: element j is the interval
    /// <c>Ci95Clustered(items, groupOf, x =&gt; statistics(x)[j], resamples, seed)</c> gives (the draws depend only on
    /// the items and the seed), with one pass over the resamples instead of one per statistic.
    /// </summary>
    public static (double Low, double High)[] Ci95ClusteredMany<T, TKey>(IReadOnlyList<T> items, Func<T, TKey> groupOf,
                                                                         Func<IReadOnlyList<T>, double[]> statistics, int count,
                                                                         int resamples = 1000, int seed = 0, int threads = 1)
        where TKey : notnull
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(statistics);
        if (resamples < 1) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "need at least one resample");
        if (items.Count == 0) return Enumerable.Repeat((double.NaN, double.NaN), count).ToArray();
        var values = new double[count][];
        for (int j = 0; j < count; j++) values[j] = new double[resamples];
        ForEachClusteredResample(items, groupOf, resamples, seed, threads, (b, sample) =>
        {
            var v = statistics(sample);
            if (v.Length != count) throw new ArgumentException($"the statistics gave {v.Length} values, expected {count}");
            for (int j = 0; j < count; j++) values[j][b] = v[j];
        });
        return values.Select(v => PercentileInterval(v)).ToArray();
    }

    /// <summary>
    /// The resamples <see cref="Ci95Clustered{T, TKey}"/> draws with the same seed, each as the concatenated items of its
    /// drawn groups, for statistics that are cheaper computed for many resamples at once (e.g. permutation tests that
    /// share one random stream). Feed the values to <see cref="Interval"/>.
    /// </summary>
    public static List<T[]> ClusteredResamples<T, TKey>(IReadOnlyList<T> items, Func<T, TKey> groupOf, int resamples = 1000, int seed = 0)
        where TKey : notnull
    {
        if (resamples < 1) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "need at least one resample");
        var list = new T[resamples][];
        ForEachClusteredResample(items, groupOf, resamples, seed, 1, (b, sample) => list[b] = [.. sample]);
        return [.. list];
    }

    /// <summary>The percentile 95% interval of bootstrap values (NaN values left out; all NaN gives (NaN, NaN)).</summary>
    public static (double Low, double High) Interval(IEnumerable<double> values) => PercentileInterval(values);

    /// <summary>
    /// Calls <paramref name="body"/>(resample index, items) for every cluster resample. Groups are taken in first-seen
    /// order and drawn with <c>new Random(seed)</c>, one draw per group slot, so the resamples depend only on the items
    /// and the seed. The item list passed in is reused: copy it to keep it.
    /// </summary>
    internal static void ForEachClusteredResample<T, TKey>(IReadOnlyList<T> items, Func<T, TKey> groupOf, int resamples, int seed, int threads,
                                                           Action<int, IReadOnlyList<T>> body)
        where TKey : notnull
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(groupOf);
        if (resamples < 1) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "need at least one resample");
        if (items.Count == 0) return;

        // Groups in first-seen order, so the result depends only on the items and the seed.
        var groups = items.GroupBy(groupOf).Select(g => g.ToArray()).ToArray();
        var rng = new Random(seed);
        if (threads <= 1 || resamples == 1)
        {
            var sample = new List<T>(items.Count);
            for (int b = 0; b < resamples; b++)
            {
                sample.Clear();
                for (int g = 0; g < groups.Length; g++) sample.AddRange(groups[rng.Next(groups.Length)]);
                body(b, sample);
            }
            return;
        }
        // One small array of draws per resample (not one large one: large arrays cost full collections).
        var draws = new int[resamples][];
        for (int b = 0; b < resamples; b++)
        {
            draws[b] = new int[groups.Length];
            for (int g = 0; g < groups.Length; g++) draws[b][g] = rng.Next(groups.Length);
        }
        Parallel.For(0, resamples, new ParallelOptions { MaxDegreeOfParallelism = threads }, () => new List<T>(items.Count),
            (b, _, sample) =>
            {
                sample.Clear();
                foreach (int g in draws[b]) sample.AddRange(groups[g]);
                body(b, sample);
                return sample;
            }, _ => { });
    }

    static (double Low, double High) PercentileInterval(IEnumerable<double> values)
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
