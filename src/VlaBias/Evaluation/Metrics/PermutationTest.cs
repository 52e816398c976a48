using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
    // Per permutation the shuffle's swaps are drawn first; the value each slot ends with is fixed once its swap is made
    // (later swaps only touch later slots), so the rows of the slots are known before any adding. Each test's sum then
    // adds its values in slot order from 0, as TwoSample does, with the tests side by side (RowSums).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int[] CountExtreme((double[] A, double[] B)[] tests, int permutations, int seed)
    {
        if (tests.Length == 1) return [CountExtreme(tests[0].A, tests[0].B, permutations, seed)];
        int na = tests[0].A.Length, nb = tests[0].B.Length, n = na + nb, lanes = tests.Length;
        int stride = RowSums.Stride(lanes);
        // values[slot · stride + t]: the pooled value of test t that starts at slot, zeros past the last test. Rented:
        // an array this large would otherwise be a large-object allocation per call, and those cost full collections.
        var values = ArrayPool<double>.Shared.Rent(n * stride);
        try
        {
            Array.Clear(values, 0, n * stride);
            var total = new double[lanes];
            var threshold = new double[lanes];
            for (int t = 0; t < lanes; t++)
            {
                var (a, b) = tests[t];
                var pooled = a.Concat(b).ToArray();
                for (int i = 0; i < n; i++) values[i * stride + t] = pooled[i];
                total[t] = pooled.Sum();
                double observed = Math.Abs(a.Average() - b.Average());
                threshold[t] = observed - 1e-12 * Math.Max(1.0, Math.Abs(observed));
            }
            var position = new int[n];   // position[i]: the starting slot of the value now at slot i
            for (int i = 0; i < n; i++) position[i] = i;
            var swaps = new int[na];
            var rows = new int[na];      // rows[i]: where the values slot i ends with start
            var sumA = new double[stride];
            var counts = new int[lanes];
            var rng = new SubtractiveRandom(seed);
            for (int p = 0; p < permutations; p++)
            {
                rng.NextRising(swaps, n);
                for (int i = 0; i < na; i++)
                {
                    int j = swaps[i];
                    (position[i], position[j]) = (position[j], position[i]);
                    rows[i] = position[i] * stride;
                }
                RowSums.Add(values, rows, sumA, stride);
                for (int t = 0; t < lanes; t++)
                    if (Math.Abs(sumA[t] / na - (total[t] - sumA[t]) / nb) >= threshold[t]) counts[t]++;
            }
            return counts;
        }
        finally { ArrayPool<double>.Shared.Return(values); }
    }

    // One test: TwoSample's loop, on the same random stream without Random's virtual calls, the swaps of a
    // permutation drawn together.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int CountExtreme(double[] a, double[] b, int permutations, int seed)
    {
        var pooled = a.Concat(b).ToArray();
        double total = pooled.Sum();
        double observed = Math.Abs(a.Average() - b.Average());
        double threshold = observed - 1e-12 * Math.Max(1.0, Math.Abs(observed));
        var rng = new SubtractiveRandom(seed);
        int count = 0, n = pooled.Length, na = a.Length, nb = b.Length;
        var swaps = new int[na];
        for (int p = 0; p < permutations; p++)
        {
            rng.NextRising(swaps, n);
            double sumA = 0;
            for (int i = 0; i < swaps.Length; i++)
            {
                int j = swaps[i];
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
/// to int.MaxValue, without the virtual calls, for loops that draw millions of them; <see cref="NextBelow"/> and
/// <see cref="NextRising"/> draw a batch at once (the permutation tests' swaps, a bootstrap's units). Tested against
/// System.Random.
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

    /// <summary>Fills <paramref name="draws"/> with <c>Next(i, maxValue)</c> for i = 0, 1, …: the swap partners of a
    /// partial Fisher–Yates shuffle of <paramref name="maxValue"/> items, as that many calls draw them.</summary>
    public void NextRising(Span<int> draws, int maxValue)
    {
        if (draws.Length > maxValue) throw new ArgumentOutOfRangeException(nameof(draws), "more draws than values to shuffle");
        Fill(draws, maxValue, 1);
    }

    /// <summary>Fills <paramref name="draws"/> with <c>Next(0, maxValue)</c>, as that many calls draw them.</summary>
    public void NextBelow(Span<int> draws, int maxValue)
    {
        if (maxValue < 0) throw new ArgumentOutOfRangeException(nameof(maxValue));
        Fill(draws, maxValue, 0);
    }

    // draws[i] = Next(i · rise, maxValue).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void Fill(Span<int> draws, int maxValue, int rise)
    {
        if (draws.Length < 64) { FillOneByOne(draws, maxValue, rise); return; }
        // The generator is x(t) = x(t − 55) − x(t − 34) (then folded into 0..int.MaxValue − 1): no value depends on the
        // 33 before it, so a vector of them is computed at once. Laid out in draw order, linear[j] for j < 55 is what the
        // slot the (j + 1)-th draw uses holds now, and linear[55 + m] is the m-th new value.
        int count = draws.Length;
        if (_linear.Length < 55 + count) _linear = new int[55 + count];
        var linear = _linear;
        // The slots in draw order are a rotation of 1..55: from _next + 1 to 55, then from 1.
        _state.AsSpan(_next + 1, 55 - _next).CopyTo(linear);
        _state.AsSpan(1, _next).CopyTo(linear.AsSpan(55 - _next));
        int width = Vector<int>.Count, m = 0;
        var fold = new Vector<int>(int.MaxValue);
        for (; m + width <= count; m += width)
        {
            var value = new Vector<int>(linear, m) - new Vector<int>(linear, m + 21);
            value += Vector.Equals(value, fold);                                  // == int.MaxValue: one less (−1 lanes)
            value += Vector.ShiftRightArithmetic(value, 31) & fold;               // < 0: + int.MaxValue
            value.CopyTo(linear, 55 + m);
        }
        for (; m < count; m++)
        {
            int value = linear[m] - linear[m + 21];
            if (value == int.MaxValue) value--;
            if (value < 0) value += int.MaxValue;
            linear[55 + m] = value;
        }
        // The state after the draws: the last 55 new values (count ≥ 55), oldest first, from the slot after the new _next.
        _next = Advance(_next, count);
        _nextP = Advance(_nextP, count);
        linear.AsSpan(count, 55 - _next).CopyTo(_state.AsSpan(_next + 1));
        linear.AsSpan(count + 55 - _next, _next).CopyTo(_state.AsSpan(1));
        m = 0;
        if (Avx.IsSupported)
        {
            // Four draws at a time: the same products of the same doubles (values and ranges are exact in a double),
            // truncated as the cast does for the in-range results they are. One at a time, each conversion to double
            // waited for the previous draw's register.
            var scale = Vector256.Create(1.0 / int.MaxValue);
            var riseSteps = Vector256.Create(0.0, rise, 2.0 * rise, 3.0 * rise);
            var minSteps = Vector128.Create(0, rise, 2 * rise, 3 * rise);
            ref int first = ref MemoryMarshal.GetArrayDataReference(linear);
            ref int output = ref MemoryMarshal.GetReference(draws);
            for (; m + 4 <= count; m += 4)
            {
                var value = Avx.ConvertToVector256Double(Vector128.LoadUnsafe(ref first, (nuint)(55 + m)));
                var range = Vector256.Create((double)((long)maxValue - m * rise)) - riseSteps;
                var drawn = Avx.ConvertToVector128Int32WithTruncation(value * scale * range);
                (drawn + Vector128.Create(m * rise) + minSteps).StoreUnsafe(ref output, (nuint)m);
            }
        }
        for (; m < count; m++)
        {
            int min = m * rise;
            long range = (long)maxValue - min;
            draws[m] = (int)(linear[55 + m] * (1.0 / int.MaxValue) * range) + min;
        }
    }

    int[] _linear = [];

    // The slot index (1..55) steps after `index` (0..55).
    static int Advance(int index, int steps) => (index + steps - 1) % 55 + 1;

    // draws[i] = Next(i · rise, maxValue), one draw after the other.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void FillOneByOne(Span<int> draws, int maxValue, int rise)
    {
        // The state in locals (fields would be stored and reloaded on every draw); indices stay in 1..55.
        ref int state = ref MemoryMarshal.GetArrayDataReference(_state);
        int next = _next, nextP = _nextP;
        for (int i = 0; i < draws.Length; i++)
        {
            if (++next >= 56) next = 1;
            if (++nextP >= 56) nextP = 1;
            int value = Unsafe.Add(ref state, next) - Unsafe.Add(ref state, nextP);
            if (value == int.MaxValue) value--;
            value += (value >> 31) & int.MaxValue;   // value < 0 ? value + int.MaxValue : value, without a branch to mispredict
            Unsafe.Add(ref state, next) = value;
            int min = i * rise;
            long range = (long)maxValue - min;
            draws[i] = (int)(value * (1.0 / int.MaxValue) * range) + min;
        }
        _next = next;
        _nextP = nextP;
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
