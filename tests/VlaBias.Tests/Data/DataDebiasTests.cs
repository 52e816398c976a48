using NUnit.Framework;
using VlaBias.Data;

namespace VlaBias.Tests.Data;

public class DataDebiasTests
{
    private static ManifestItem Item(string id, string gender, string context, string role, string split = "pretrain", params string[] captions) => new()
    {
        Id = id, Image = $"img/{id}.png", Split = ManifestValues.ParseSplit(split), Attributes = new ItemAttributes { Gender = ManifestValues.ParseGender(gender) }, Context = context, Role = role,
        Captions = captions,
    };

    private static List<ManifestItem> Skewed() =>
    [
        Item("k1", "woman", "kitchen", "chef"), Item("k2", "woman", "kitchen", "chef"), Item("k3", "woman", "kitchen", "chef"), Item("k4", "man", "kitchen", "chef"),
        Item("g1", "man", "garage", "mechanic"), Item("g2", "man", "garage", "mechanic"), Item("g3", "woman", "garage", "mechanic"),
        Item("t1", "man", "garage", "mechanic", "test"),
    ];

    [Test]
    public void Oversampling_equalizes_every_gender_context_role_cell()
    {
        var (items, report) = Rebalance.Run(Skewed(), "pretrain", seed: 1);
        var counts = Rebalance.Counts(items, "pretrain");
        Assert.That(counts["kitchen/chef"]["man"], Is.EqualTo(3));
        Assert.That(counts["kitchen/chef"]["woman"], Is.EqualTo(3));
        Assert.That(counts["garage/mechanic"]["man"], Is.EqualTo(2));
        Assert.That(counts["garage/mechanic"]["woman"], Is.EqualTo(2));
        Assert.That(items.Select(i => i.Id).Distinct().Count(), Is.EqualTo(items.Count), "ids stay unique");
        Assert.That(items.Where(i => i.Id.Contains("~r")).All(i => i.Image == $"img/{i.Id.Split('~')[0]}.png"), Is.True, "copies reuse the image");
        Assert.That(items.Count(i => i.Split?.Name() == "test"), Is.EqualTo(1), "other splits pass through");
        Assert.That(report.Before, Is.EqualTo(7));
        Assert.That(report.After, Is.EqualTo(10));
        Assert.That(Rebalance.Run(Skewed(), "pretrain", seed: 1).items.Select(i => i.Id), Is.EqualTo(items.Select(i => i.Id)), "deterministic");
    }

    [Test]
    public void Undersampling_keeps_the_smallest_count_and_missing_genders_are_reported()
    {
        var (items, _) = Rebalance.Run(Skewed(), "pretrain", undersample: true);
        var counts = Rebalance.Counts(items, "pretrain");
        Assert.That(counts.Values.SelectMany(c => c.Values), Is.All.EqualTo(1));
        var lonely = Skewed().Append(Item("o1", "man", "office", "manager")).ToList();
        Assert.That(Rebalance.Run(lonely, "pretrain").report.MissingGenders, Is.EqualTo(new[] { "office/manager: no 'woman' items" }));
    }

    [Test]
    public void Augmentation_adds_neutral_and_swapped_captions_for_unclear_figures_only()
    {
        var items = new List<ManifestItem>
        {
            Item("u1", "unclear", "kitchen", "chef", "pretrain", "a woman chef holding a pan in the kitchen"),
            Item("u2", "unclear", "garage", "mechanic", "pretrain", "a person mechanic with a wrench in the garage"),
            Item("m1", "man", "garage", "mechanic", "pretrain", "a man mechanic with a wrench in the garage"),
        };
        var (result, report) = CounterfactualAugmentation.Run(items, "pretrain");
        Assert.That(result[0].Captions, Is.EqualTo(new[]
        {
            "a woman chef holding a pan in the kitchen", "a person chef holding a pan in the kitchen", "a man chef holding a pan in the kitchen",
        }));
        Assert.That(result[1].Captions, Is.EqualTo(items[1].Captions), "a neutral caption needs nothing");
        Assert.That(result[2], Is.SameAs(items[2]), "visible genders are left alone");
        Assert.That(report, Is.EqualTo(new AugmentReport(2, 2)));
    }
}
