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
}
