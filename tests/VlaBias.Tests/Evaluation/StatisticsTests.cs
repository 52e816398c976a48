using NUnit.Framework;
using VlaBias.Evaluation.Metrics;

namespace VlaBias.Tests.Evaluation;

public class BootstrapTests
{
    static double Mean(IReadOnlyList<double> xs) => xs.Average();

    static double[] Normal(int n, double mean, double sd, int seed)
    {
        var rng = new Random(seed);
        var xs = new double[n];
        for (int i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            xs[i] = mean + sd * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        }
        return xs;
    }

    [Test]
    public void Ci_of_a_constant_is_that_constant()
    {
        var (low, high) = Bootstrap.Ci95(Enumerable.Repeat(3.5, 50).ToArray(), Mean);
        Assert.That(low, Is.EqualTo(3.5));
        Assert.That(high, Is.EqualTo(3.5));
    }

    [Test]
    public void Ci_of_the_mean_of_a_normal_sample_covers_the_mean_with_width_near_2_x_1_96_sigma_over_sqrt_n()
    {
        const int n = 2000;
        const double sigma = 2.0;
        var xs = Normal(n, 5.0, sigma, seed: 7);
        var (low, high) = Bootstrap.Ci95(xs, Mean, resamples: 2000, seed: 1);
        double expectedWidth = 2 * 1.96 * sigma / Math.Sqrt(n); // 0.1753
        Assert.That(low, Is.LessThan(xs.Average()));
        Assert.That(high, Is.GreaterThan(xs.Average()));
        Assert.That(low, Is.LessThan(5.0));
        Assert.That(high, Is.GreaterThan(5.0));
        Assert.That(high - low, Is.EqualTo(expectedWidth).Within(0.15 * expectedWidth));
    }

    [Test]
    public void Same_seed_gives_the_same_interval()
    {
        var xs = Normal(100, 0, 1, seed: 3);
        Assert.That(Bootstrap.Ci95(xs, Mean, seed: 11), Is.EqualTo(Bootstrap.Ci95(xs, Mean, seed: 11)));
    }

    [Test]
    public void Clustered_ci_is_wider_when_items_of_a_group_are_identical()
    {
        // 20 groups of 10 identical values: the effective sample size is 20, not 200, so resampling items
        // understates the spread by about sqrt(10).
        var groupValues = Normal(20, 0, 1, seed: 5);
        var items = Enumerable.Range(0, 200).Select(i => (Group: i / 10, Value: groupValues[i / 10])).ToArray();
        double Statistic(IReadOnlyList<(int Group, double Value)> s) => s.Average(x => x.Value);
        var (il, ih) = Bootstrap.Ci95(items, Statistic, seed: 2);
        var (cl, ch) = Bootstrap.Ci95Clustered(items, x => x.Group, Statistic, seed: 2);
        Assert.That(ch - cl, Is.GreaterThan(2 * (ih - il)));
        double expected = 2 * 1.96 * 1.0 / Math.Sqrt(20);
        Assert.That(ch - cl, Is.EqualTo(expected).Within(0.35 * expected));
    }

    [Test]
    public void Clustered_ci_of_a_constant_is_that_constant()
    {
        var items = Enumerable.Range(0, 30).Select(i => (Pair: i / 2, Gap: 0.25)).ToArray();
        var ci = Bootstrap.Ci95Clustered(items, x => x.Pair, s => s.Average(x => x.Gap));
        Assert.That(ci, Is.EqualTo((0.25, 0.25)));
    }

    [Test]
    public void Nan_statistics_are_left_out_and_all_nan_gives_nan()
    {
        var ci = Bootstrap.Ci95(new[] { 1.0, 2.0 }, _ => double.NaN, resamples: 10);
        Assert.That(double.IsNaN(ci.Low) && double.IsNaN(ci.High));
    }

    [Test]
    public void Percentile_interpolates_linearly_like_numpy()
    {
        double[] sorted = [1, 2, 3, 4, 5];
        Assert.That(Bootstrap.Percentile(sorted, 2.5), Is.EqualTo(1.1).Within(1e-12));
        Assert.That(Bootstrap.Percentile(sorted, 97.5), Is.EqualTo(4.9).Within(1e-12));
        Assert.That(Bootstrap.Percentile(sorted, 50), Is.EqualTo(3.0));
    }
}

public class PermutationTestTests
{
    [Test]
    public void Identical_groups_give_p_of_one()
    {
        double[] a = [1, 2, 3, 4, 5];
        Assert.That(PermutationTest.TwoSample(a, (double[])a.Clone(), 999, seed: 0), Is.EqualTo(1.0));
    }

    [Test]
    public void Clearly_separated_groups_give_the_smallest_possible_p()
    {
        var a = Enumerable.Range(0, 12).Select(i => 0.1 * i).ToArray();
        var b = Enumerable.Range(0, 12).Select(i => 100 + 0.1 * i).ToArray();
        Assert.That(PermutationTest.TwoSample(a, b, 999, seed: 0), Is.EqualTo(1.0 / 1000));
    }

    [Test]
    public void Small_example_matches_the_exact_permutation_p_value()
    {
        // a = {1,2,3}, b = {4,5,6}: of the C(6,3) = 20 equally likely splits only the two extreme ones reach
        // |mean difference| >= 3, so the exact two-sided p is 2/20 = 0.1.
        double p = PermutationTest.TwoSample([1, 2, 3], [4, 5, 6], 20000, seed: 3);
        Assert.That(p, Is.EqualTo(0.1).Within(0.01));
    }
}

public class HolmTests
{
    [Test]
    public void Hand_computed_example()
    {
        // Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06 by monotonicity).
        var adjusted = Holm.Adjust([0.01, 0.04, 0.03, 0.005]);
        Assert.That(adjusted, Is.EqualTo(new[] { 0.03, 0.06, 0.06, 0.02 }).Within(1e-12));
    }

    [Test]
    public void Adjusted_values_are_capped_at_one_and_nan_is_kept()
    {
        var adjusted = Holm.Adjust([0.5, double.NaN, 0.6]);
        Assert.That(adjusted[0], Is.EqualTo(1.0));
        Assert.That(adjusted[1], Is.NaN);
        Assert.That(adjusted[2], Is.EqualTo(1.0));
    }
}
