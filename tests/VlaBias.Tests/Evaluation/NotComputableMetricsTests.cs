using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Evaluation;

namespace VlaBias.Tests.Evaluation;

/// <summary>A metric the samples cannot give is null with the reason, in metrics.json and the tables, not a crash.</summary>
public class NotComputableMetricsTests
{
    [Test]
    public void Lic_of_two_pairs_is_null_with_its_reason_and_the_other_metrics_are_computed()
    {
        // two counterfactual pairs: 2 clear captions per gender, too few for LIC's balanced train/test split
        var m = MetricsCalculator.Compute(SyntheticSamples.Make(pairs: 2, unclear: 1), SyntheticSamples.Words, resamples: 20, licSeeds: 2, seed: 1);
        Assert.That(m["lic"], Is.EqualTo(new MetricValue(null, null, 4,
            "LIC needs at least one train and one test caption per gender (smallest gender has 2, train fraction 0.8)")));
        Assert.That(m["caption_gender.error_rate"].Value, Is.Not.Null);
        Assert.That(m["role.accuracy_gap"].Value, Is.Not.Null);

        var json = m["lic"].ToJson();
        Assert.That(json["value"], Is.Null);
        Assert.That(json["not_computable"]!.GetValue<string>(), Does.StartWith("LIC needs at least one train"));
        Assert.That(Comparison.Cell(json), Is.EqualTo("– (not computable: LIC needs at least one train and one test caption per gender (smallest gender has 2, train fraction 0.8))"));
        // a computed metric carries no such field, so metrics.json of a full suite is as before
        Assert.That(m["caption_gender.error_rate"].ToJson().ContainsKey("not_computable"), Is.False);
    }

    [Test]
    public void Lic_of_three_pairs_is_computed()
    {
        var lic = MetricsCalculator.Compute(SyntheticSamples.Make(pairs: 3, unclear: 1), SyntheticSamples.Words, resamples: 20, licSeeds: 2, seed: 1)["lic"];
        Assert.That((lic.Value.HasValue, lic.NotComputable, lic.N), Is.EqualTo((true, (string?)null, 6)));
    }
}
