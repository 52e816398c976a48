using System.Runtime.CompilerServices;

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
/// The overloads on <see cref="Clusters"/> hand the statistic each resample as positions into the caller's arrays
/// (the same draws, so the same intervals), which is what a statistic evaluated a thousand times should read.
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

    /// <summary>The positions of each resample <see cref="Ci95Clustered(Clusters, PositionStatistic, int, int, int)"/> draws with
    /// the same seed, for statistics computed for many resamples at once (feed their values to <see cref="Interval"/>).</summary>
    public static int[][] Resamples(Clusters clusters, int resamples = 1000, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(clusters);
        var list = new int[resamples][];
        ForEachResample(clusters, resamples, seed, 1, () => 0, (b, positions, _) => list[b] = positions.ToArray());
        return list;
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
        var clusters = Clusters.Of(items, groupOf);
        ForEachResample(clusters, resamples, seed, threads, () => new List<T>(items.Count), (b, positions, sample) =>
        {
            sample.Clear();
            foreach (int p in positions) sample.Add(items[p]);
            body(b, sample);
        });
    }

    /// <summary>
    /// <see cref="Ci95Clustered{T, TKey}"/> with the resamples given to the statistic as positions into the clustered
    /// items (in draw order, repeats allowed): the same draws, so the same interval as the statistic on those items
    /// gives, without building item lists.
    /// </summary>
    public static (double Low, double High) Ci95Clustered(Clusters clusters, PositionStatistic statistic, int resamples = 1000, int seed = 0, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(clusters);
        ArgumentNullException.ThrowIfNull(statistic);
        if (resamples < 1) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "need at least one resample");
        if (clusters.Count == 0) return (double.NaN, double.NaN);
        var values = new double[resamples];
        ForEachResample(clusters, resamples, seed, threads, () => 0, (b, positions, _) => values[b] = statistic(positions));
        return PercentileInterval(values);
    }

    /// <summary><see cref="Ci95ClusteredMany{T, TKey}"/> on positions (see <see cref="Ci95Clustered(Clusters, PositionStatistic, int, int, int)"/>):
    /// <paramref name="statistics"/> writes the <paramref name="count"/> values of one resample.</summary>
    public static (double Low, double High)[] Ci95ClusteredMany(Clusters clusters, PositionStatistics statistics, int count,
                                                                int resamples = 1000, int seed = 0, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(clusters);
        ArgumentNullException.ThrowIfNull(statistics);
        if (resamples < 1) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "need at least one resample");
        if (clusters.Count == 0) return Enumerable.Repeat((double.NaN, double.NaN), count).ToArray();
        var values = new double[count][];
        for (int j = 0; j < count; j++) values[j] = new double[resamples];
        ForEachResample(clusters, resamples, seed, threads, () => new double[count], (b, positions, v) =>
        {
            statistics(positions, v);
            for (int j = 0; j < count; j++) values[j][b] = v[j];
        });
        return values.Select(v => PercentileInterval(v)).ToArray();
    }

    /// <summary>The body of <see cref="ForEachResample{TLocal}"/>: resample index, its positions, the worker's own state.</summary>
    internal delegate void ResampleBody<TLocal>(int resample, ReadOnlySpan<int> positions, TLocal local);

    /// <summary>
    /// Calls <paramref name="body"/> for every cluster resample with its positions: <paramref name="clusters"/>' groups
    /// drawn with <c>new Random(seed)</c> (the same stream from <see cref="SubtractiveRandom"/>), one draw per group slot,
    /// the drawn groups' positions concatenated. With several threads the draws are made first, in order, so each
    /// resample is the same for any thread count; <paramref name="local"/> makes each worker's state.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ForEachResample<TLocal>(Clusters clusters, int resamples, int seed, int threads, Func<TLocal> local, ResampleBody<TLocal> body)
    {
        if (resamples < 1) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "need at least one resample");
        int groups = clusters.GroupCount;
        if (groups == 0) return;
        var rng = new SubtractiveRandom(seed);
        if (threads <= 1 || resamples == 1)
        {
            var state = local();
            var buffer = new int[clusters.Count];
            var draws = new int[groups];
            for (int b = 0; b < resamples; b++)
            {
                rng.NextBelow(draws, groups);
                body(b, clusters.Concatenate(draws, ref buffer), state);
            }
            return;
        }
        // One small array of draws per resample (not one large one: large arrays cost full collections).
        var all = new int[resamples][];
        for (int b = 0; b < resamples; b++)
        {
            all[b] = new int[groups];
            rng.NextBelow(all[b], groups);
        }
        Parallel.For(0, resamples, new ParallelOptions { MaxDegreeOfParallelism = threads }, () => (Buffer: new int[clusters.Count], State: local()),
            (b, _, worker) =>
            {
                var buffer = worker.Buffer;
                body(b, clusters.Concatenate(all[b], ref buffer), worker.State);
                return (buffer, worker.State);
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

/// <summary>A statistic of one resample given as positions into the caller's arrays (in draw order, repeats allowed).</summary>
public delegate double PositionStatistic(ReadOnlySpan<int> sample);

/// <summary>Several statistics of one resample (positions as for <see cref="PositionStatistic"/>), written into <c>values</c>.</summary>
public delegate void PositionStatistics(ReadOnlySpan<int> sample, Span<double> values);

/// <summary>
/// The positions 0..Count−1 of a list of items grouped into resampling units: groups in first-seen order, each with its
/// positions in list order (the groups <c>items.GroupBy(unitOf)</c> gives), for bootstraps that resample positions.
/// </summary>
public sealed class Clusters
{
    readonly int[] _positions;   // the groups' positions one group after another
    readonly int[] _start;       // group g at _start[g].._start[g + 1]

    Clusters(int[] positions, int[] start) { _positions = positions; _start = start; }

    /// <summary>The number of items.</summary>
    public int Count => _positions.Length;

    /// <summary>The number of groups (resampling units).</summary>
    public int GroupCount => _start.Length - 1;

    /// <summary>The items' positions grouped by <paramref name="unitOf"/> (default equality, as GroupBy).</summary>
    public static Clusters Of<T, TKey>(IReadOnlyList<T> items, Func<T, TKey> unitOf) where TKey : notnull
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(unitOf);
        var group = new int[items.Count];
        var index = new Dictionary<TKey, int>();
        for (int i = 0; i < items.Count; i++)
        {
            var key = unitOf(items[i]);
            if (!index.TryGetValue(key, out int g)) index[key] = g = index.Count;
            group[i] = g;
        }
        return FromGroups(group, index.Count);
    }

    /// <summary>One group per item: cluster resamples of these are item-level resamples (one draw per item).</summary>
    public static Clusters Items(int count) => FromGroups(Enumerable.Range(0, count).ToArray(), count);

    static Clusters FromGroups(int[] group, int groupCount)
    {
        var start = new int[groupCount + 1];
        foreach (int g in group) start[g + 1]++;
        for (int g = 0; g < groupCount; g++) start[g + 1] += start[g];
        var at = start[..^1];
        var positions = new int[group.Length];
        for (int i = 0; i < group.Length; i++) positions[at[group[i]]++] = i;
        return new Clusters(positions, start);
    }

    /// <summary>The positions of the drawn groups one after another, in <paramref name="buffer"/> (grown when short).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal ReadOnlySpan<int> Concatenate(int[] draws, ref int[] buffer)
    {
        int n = 0;
        foreach (int g in draws)
        {
            int from = _start[g], length = _start[g + 1] - from;
            if (n + length > buffer.Length) Array.Resize(ref buffer, Math.Max(2 * buffer.Length, n + length));
            if (length > 16) _positions.AsSpan(from, length).CopyTo(buffer.AsSpan(n));
            else for (int i = 0; i < length; i++) buffer[n + i] = _positions[from + i];   // most units are a pair or a few items
            n += length;
        }
        return buffer.AsSpan(0, n);
    }
}
