using NUnit.Framework;
using VlaBias.Bench;
using static TorchSharp.torch;

namespace VlaBias.Tests.Bench;

/// <summary>
/// The roof is the fastest of the matmul sizes measured; a stop rule (bf16 running far under fp32, as where the CPU has
/// no native bf16) leaves the larger sizes out, and the answer comes from the sizes measured.
/// </summary>
public class MatmulRoofTests
{
    [Test]
    public void Every_size_is_measured_without_a_stop_rule()
    {
        var (n, gflops, medians) = MatmulRoof.Best([16, 32, 48], ScalarType.Float32, 0, 3);
        Assert.That(medians.Keys, Is.EquivalentTo(new[] { 16, 32, 48 }));
        Assert.That(medians[n], Is.EqualTo(medians.Values.Max()));
        Assert.That(gflops.Median, Is.EqualTo(medians[n]));
        Assert.That(medians.Values, Has.All.GreaterThan(0));
    }

    [Test]
    public void Sizes_after_the_stop_rule_answers_true_are_not_measured()
    {
        var asked = new List<(int n, double gflops)>();
        var (n, _, medians) = MatmulRoof.Best([16, 32, 48, 64], ScalarType.Float32, 0, 3, (size, g) =>
        {
            asked.Add((size, g));
            return size == 32;
        });
        Assert.That(asked.Select(a => a.n), Is.EqualTo(new[] { 16, 32 }));
        Assert.That(medians.Keys, Is.EquivalentTo(new[] { 16, 32 }));
        Assert.That(asked.Select(a => a.gflops), Is.EqualTo(new[] { medians[16], medians[32] }), "the rule sees each size's median");
        Assert.That(n, Is.AnyOf(16, 32));
    }
}
