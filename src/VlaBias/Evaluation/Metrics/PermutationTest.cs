using System.Numerics;
using System.Runtime.CompilerServices;

namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// Two-sided two-sample permutation test for a difference in means (used per attribute by <see cref="GroupGap"/>).
/// <para>
/// Observed statistic T = |mean(a) − mean(b)|. The pooled values are shuffled <c>permutations</c> times
/// (Fisher–Yates, seeded) and split back into groups of the original sizes; count = the number of shuffles with
/// |mean(a*) − mean(b*)| ≥ T (with a relative tolerance of 1e-12 so ties from rounding count). p = (count + 1) /
/// (permutations + 1), which is never 0 and is a valid p-value for a Monte Carlo test.
/// </para>
/// Source: Phipson &amp; Smyth 2010, "Permutation P-values Should Never Be Zero"; Good 2005, "Permutation, Parametric
/// and Bootstrap Tests of Hypotheses".
/// </summary>
public static class PermutationTest
{
    /// <summary>Two-sided p-value of the difference in means between <paramref name="a"/> and <paramref name="b"/>.</summary>
    public static double TwoSample(double[] a, double[] b, int permutations = 10000, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Length == 0 || b.Length == 0) throw new ArgumentException("both groups need at least one value");
        if (permutations < 1) throw new ArgumentOutOfRangeException(nameof(permutations), permutations, "need at least one permutation");

        var pooled = a.Concat(b).ToArray();
        double total = pooled.Sum();
        double observed = Math.Abs(a.Average() - b.Average());
        double tolerance = 1e-12 * Math.Max(1.0, Math.Abs(observed));
        var rng = new Random(seed);
        int count = 0;
        for (int p = 0; p < permutations; p++)
        {
            // Only the first a.Length slots need to be random: a partial Fisher–Yates shuffle.
            double sumA = 0;
            for (int i = 0; i < a.Length; i++)
            {
                int j = rng.Next(i, pooled.Length);
                (pooled[i], pooled[j]) = (pooled[j], pooled[i]);
                sumA += pooled[i];
            }
            double diff = Math.Abs(sumA / a.Length - (total - sumA) / b.Length);
            if (diff >= observed - tolerance) count++;
        }
        return (count + 1.0) / (permutations + 1.0);
    }

    /// <summary>
    /// <see cref="TwoSample"/> for many pairs of groups with the same permutations and seed: element i equals
    /// <c>TwoSample(tests[i].A, tests[i].B, permutations, seed)</c> exactly. The shuffle moves positions, never looks
    /// at values, so tests whose groups have the same sizes share one random stream: its swaps are drawn once and
    /// applied to all of them together, each test adding its values in the order <see cref="TwoSample"/> does (a
    /// bootstrap of a group gap runs the same tests on many resamples).
    /// </summary>
    public static double[] TwoSampleMany(IReadOnlyList<(double[] A, double[] B)> tests, int permutations = 10000, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(tests);
        if (permutations < 1) throw new ArgumentOutOfRangeException(nameof(permutations), permutations, "need at least one permutation");
        foreach (var (a, b) in tests)
        {
            ArgumentNullException.ThrowIfNull(a);
            ArgumentNullException.ThrowIfNull(b);
            if (a.Length == 0 || b.Length == 0) throw new ArgumentException("both groups need at least one value");
        }
        var pValues = new double[tests.Count];
        foreach (var sameSizes in Enumerable.Range(0, tests.Count).GroupBy(i => (tests[i].A.Length, tests[i].B.Length)))
        {
            var members = sameSizes.ToArray();
            var counts = CountExtreme(members.Select(i => tests[i]).ToArray(), permutations, seed);
            for (int m = 0; m < members.Length; m++) pValues[members[m]] = (counts[m] + 1.0) / (permutations + 1.0);
        }
        return pValues;
    }

    // For tests whose groups all have the sizes of tests[0]: how many permutations reach each test's observed difference.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int[] CountExtreme((double[] A, double[] B)[] tests, int permutations, int seed)
    {
        if (tests.Length == 1) return [CountExtreme(tests[0].A, tests[0].B, permutations, seed)];
        int na = tests[0].A.Length, nb = tests[0].B.Length, n = na + nb, lanes = tests.Length;
        // values[slot][t]: the pooled value of test t that starts at slot, so one slot of all tests is contiguous
        // (rows, not one n × lanes block: large arrays cost full collections).
        var values = new double[n][];
        for (int i = 0; i < n; i++) values[i] = new double[lanes];
        var total = new double[lanes];
        var threshold = new double[lanes];
        for (int t = 0; t < lanes; t++)
        {
            var (a, b) = tests[t];
            var pooled = a.Concat(b).ToArray();
            for (int i = 0; i < n; i++) values[i][t] = pooled[i];
            total[t] = pooled.Sum();
            double observed = Math.Abs(a.Average() - b.Average());
            threshold[t] = observed - 1e-12 * Math.Max(1.0, Math.Abs(observed));
        }
        var position = new int[n];   // position[i]: the starting slot of the value now at slot i
        for (int i = 0; i < n; i++) position[i] = i;
        var sumA = new double[lanes];
        var counts = new int[lanes];
        var rng = new SubtractiveRandom(seed);
        int width = Vector<double>.Count, vectorEnd = Vector.IsHardwareAccelerated ? lanes - lanes % width : 0;
        for (int p = 0; p < permutations; p++)
        {
            Array.Clear(sumA);
            for (int i = 0; i < na; i++)
            {
                int j = rng.Next(i, n);
                (position[i], position[j]) = (position[j], position[i]);
                var row = values[position[i]];
                int t = 0;
                for (; t < vectorEnd; t += width)
                    (new Vector<double>(sumA, t) + new Vector<double>(row, t)).CopyTo(sumA, t);
                for (; t < lanes; t++) sumA[t] += row[t];
            }
            for (int t = 0; t < lanes; t++)
                if (Math.Abs(sumA[t] / na - (total[t] - sumA[t]) / nb) >= threshold[t]) counts[t]++;
        }
        return counts;
    }

    // One test: TwoSample's loop, on the same random stream without Random's virtual calls.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int CountExtreme(double[] a, double[] b, int permutations, int seed)
    {
        var pooled = a.Concat(b).ToArray();
        double total = pooled.Sum();
        double observed = Math.Abs(a.Average() - b.Average());
        double threshold = observed - 1e-12 * Math.Max(1.0, Math.Abs(observed));
        var rng = new SubtractiveRandom(seed);
        int count = 0, n = pooled.Length, na = a.Length, nb = b.Length;
        for (int p = 0; p < permutations; p++)
        {
            double sumA = 0;
            for (int i = 0; i < na; i++)
            {
                int j = rng.Next(i, n);
                (pooled[i], pooled[j]) = (pooled[j], pooled[i]);
                sumA += pooled[i];
            }
            if (Math.Abs(sumA / na - (total - sumA) / nb) >= threshold) count++;
        }
        return count;
    }
}

/// <summary>
/// The generator behind <c>new System.Random(seed)</c> (Knuth's subtractive generator, which .NET keeps unchanged for
/// seeded instances so that their sequences stay reproducible): the same numbers as <c>Next(min, max)</c> for ranges up
/// to int.MaxValue, without the virtual calls, for loops that draw millions of them. Tested against System.Random.
/// </summary>
internal sealed class SubtractiveRandom
{
    readonly int[] _state = new int[56];
    int _next, _nextP = 21;

    public SubtractiveRandom(int seed)
    {
        int subtraction = seed == int.MinValue ? int.MaxValue : Math.Abs(seed);
        int mj = 161803398 - subtraction;
        _state[55] = mj;
        int mk = 1, ii = 0;
        for (int i = 1; i < 55; i++)
        {
            if ((ii += 21) >= 55) ii -= 55;
            _state[ii] = mk;
            mk = mj - mk;
            if (mk < 0) mk += int.MaxValue;
            mj = _state[ii];
        }
        for (int k = 1; k < 5; k++)
            for (int i = 1; i < 56; i++)
            {
                int n = i + 30;
                if (n >= 55) n -= 55;
                _state[i] -= _state[1 + n];
                if (_state[i] < 0) _state[i] += int.MaxValue;
            }
    }

    /// <summary>As <c>System.Random.Next(minValue, maxValue)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Next(int minValue, int maxValue)
    {
        long range = (long)maxValue - minValue;
        if (range > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(maxValue), "range above int.MaxValue is not supported");
        return (int)(Sample() * range) + minValue;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    double Sample()
    {
        int next = _next + 1, nextP = _nextP + 1;
        if (next >= 56) next = 1;
        if (nextP >= 56) nextP = 1;
        int value = _state[next] - _state[nextP];
        if (value == int.MaxValue) value--;
        if (value < 0) value += int.MaxValue;
        _state[next] = value;
        _next = next;
        _nextP = nextP;
        return value * (1.0 / int.MaxValue);
    }
}
