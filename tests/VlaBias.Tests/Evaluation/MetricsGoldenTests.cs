using System.Globalization;
using NUnit.Framework;
using VlaBias.Evaluation;

namespace VlaBias.Tests.Evaluation;

/// <summary>
/// Every metric, CI and per-attribute bias of a synthetic evaluation equals, to the last bit, what the straightforward
/// implementation gave before the statistics were made fast (bootstraps that re-tokenized every caption per resample,
/// one permutation test at a time, one classifier training per resample with allocations). The expected file was
/// written by this test's Record method run against that implementation (commit f9d5d70); a change in any value, even
/// in the 17th digit, fails here.
/// </summary>
public class MetricsGoldenTests
{
    static string GoldenPath => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "metrics_golden", "synthetic.txt");

    internal static List<string> Values()
    {
        var samples = SyntheticSamples.Make();
        var metrics = MetricsCalculator.Compute(samples, SyntheticSamples.Words, resamples: 200, licSeeds: 2, seed: 3);
        var lines = metrics.Select(kv => $"{kv.Key} {R(kv.Value.Value)} {(kv.Value.Ci95 is null ? "-" : $"{R(kv.Value.Ci95[0])} {R(kv.Value.Ci95[1])}")} {kv.Value.N}").ToList();
        lines.AddRange(AttributeBiasCalculator.Compute(samples, resamples: 300, seed: 3)
            .Select(g => $"attribute {g.Attribute} {g.Split} {R(g.Gap)} {R(g.Low)} {R(g.High)} {g.Significant} {g.NWoman} {g.NMan}"));
        return lines;
    }

    static string R(double? v) => v is double d ? d.ToString("R", CultureInfo.InvariantCulture) : "null";

    [Test]
    public void Metrics_and_attribute_bias_are_bit_identical_to_the_reference_implementation()
    {
        var expected = File.ReadAllLines(GoldenPath).Where(l => !l.StartsWith('#')).ToList();
        var actual = Values();
        Assert.That(actual, Has.Count.EqualTo(expected.Count));
        for (int i = 0; i < expected.Count; i++) Assert.That(actual[i], Is.EqualTo(expected[i]), $"line {i + 1}");
    }

    [Test, Explicit("writes the expected file; run only against the reference implementation")]
    public void Record()
    {
        var path = Environment.GetEnvironmentVariable("GOLDEN_OUT") ?? GoldenPath;
        File.WriteAllLines(path, ["# MetricsCalculator.Compute + AttributeBiasCalculator.Compute on SyntheticSamples.Make(), full precision (see MetricsGoldenTests)", .. Values()]);
    }
}
