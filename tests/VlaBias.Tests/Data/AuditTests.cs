using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Data;
using VlaBias.Tests.Cli;

namespace VlaBias.Tests.Data;

public class AuditTests
{
    private string dir = "";

    [SetUp] public void SetUp() => dir = TestPaths.NewTempDir("audit");
    [TearDown] public void TearDown() { try { Directory.Delete(dir, true); } catch (IOException) { } }

    // kitchen: 6 women (chef), 2 men (chef), 1 unclear; garage: 1 woman (mechanic), 7 men (mechanic 5, driver 2); all train.
    // Tones: kitchen women tone 1, everyone else tone 3. One val item (ignored with --split train).
    private string WriteManifest()
    {
        var items = new List<ManifestItem>();
        int n = 0;
        void Add(string gender, string context, string role, string tone, int count, string split = "train")
        {
            for (int i = 0; i < count; i++)
                items.Add(new ManifestItem { Id = $"i{n++}", Image = "img/none.png", Split = ManifestValues.ParseSplit(split), Context = context, Role = role,
                    Attributes = new ItemAttributes { Gender = ManifestValues.ParseGender(gender), Tone = tone }, Captions = ["a person"] });
        }
        Add("woman", "kitchen", "chef", "1", 6);
        Add("man", "kitchen", "chef", "3", 2);
        Add("unclear", "kitchen", "chef", "3", 1);
        Add("woman", "garage", "mechanic", "3", 1);
        Add("man", "garage", "mechanic", "3", 5);
        Add("man", "garage", "driver", "3", 2);
        Add("woman", "garage", "driver", "3", 3, split: "val");
        var path = Path.Combine(dir, "manifest.jsonl");
        Manifest.Write(path, items);
        return path;
    }

    [Test]
    public void Counts_skew_and_disparate_impact_of_a_constructed_manifest()
    {
        var r = Audit.Run(WriteManifest(), "train");
        Assert.That(r.NItems, Is.EqualTo(17));
        var byContext = r.Counts["gender"]["context"];
        Assert.That(byContext["kitchen"], Is.EqualTo(new SortedDictionary<string, int> { ["man"] = 2, ["unclear"] = 1, ["woman"] = 6 }));
        Assert.That(byContext["garage"], Is.EqualTo(new SortedDictionary<string, int> { ["man"] = 7, ["woman"] = 1 }));
        Assert.That(r.Counts["gender"]["role"]["driver"], Is.EqualTo(new SortedDictionary<string, int> { ["man"] = 2 }));
        Assert.That(r.Counts["tone"]["context"]["kitchen"], Is.EqualTo(new SortedDictionary<string, int> { ["1"] = 6, ["3"] = 3 }));

        var kitchen = r.Skews["context"].Single(s => s.Key == "kitchen");
        Assert.That(kitchen.Majority, Is.EqualTo("woman"));
        Assert.That(kitchen.MajorityShare, Is.EqualTo(6.0 / 8).Within(1e-12), "unclear figures are not counted");
        Assert.That(kitchen.LogRatio, Is.EqualTo(Math.Log(6.5 / 2.5)).Within(1e-12));
        var garage = r.Skews["context"].Single(s => s.Key == "garage");
        Assert.That(garage.Majority, Is.EqualTo("man"));
        Assert.That(garage.MajorityShare, Is.EqualTo(7.0 / 8).Within(1e-12));
        Assert.That(garage.LogRatio, Is.EqualTo(Math.Log(1.5 / 7.5)).Within(1e-12));
        Assert.That(r.Skews["role"].Single(s => s.Key == "driver").LogRatio, Is.EqualTo(Math.Log(0.5 / 2.5)).Within(1e-12), "finite with no women");

        // Selection rates over man/woman items: women 7 (chef 6, mechanic 1), men 9 (chef 2, mechanic 5, driver 2).
        var di = r.DisparateImpact["gender"]!;
        Assert.That(di.SelectionRates["chef"]["woman"], Is.EqualTo(6.0 / 7).Within(1e-12));
        Assert.That(di.SelectionRates["chef"]["man"], Is.EqualTo(2.0 / 9).Within(1e-12));
        Assert.That(di.RatioPerRole["chef"], Is.EqualTo((2.0 / 9) / (6.0 / 7)).Within(1e-12));
        Assert.That(di.RatioPerRole["driver"], Is.EqualTo(0.0));
        Assert.That(di.MinRatio, Is.EqualTo(0.0));
        Assert.That(di.FailsFourFifthsRule, Is.True);
        Assert.That(r.DisparateImpact["tone"], Is.Not.Null);
    }

    [Test]
    public void Without_split_every_item_counts()
    {
        var r = Audit.Run(WriteManifest());
        Assert.That(r.NItems, Is.EqualTo(20));
        Assert.That(r.Counts["gender"]["role"]["driver"], Is.EqualTo(new SortedDictionary<string, int> { ["man"] = 2, ["woman"] = 3 }));
    }

    [Test]
    public void Cli_audit_prints_tables_and_writes_json()
    {
        var manifest = WriteManifest();
        var json = Path.Combine(dir, "audit.json");
        var res = CliRunner.Run(dir, "data", "audit", manifest, "--split", "train", "--json", json);
        Assert.That(res.ExitCode, Is.EqualTo(0), res.Stderr);
        Assert.That(res.Stdout, Does.Contain("gender × context").And.Contain("kitchen").And.Contain("fails"));
        var doc = JsonNode.Parse(File.ReadAllText(json))!;
        Assert.That(doc["n_items"]!.GetValue<int>(), Is.EqualTo(17));
        Assert.That(doc["counts"]!["gender"]!["context"]!["kitchen"]!["woman"]!.GetValue<int>(), Is.EqualTo(6));
        Assert.That(doc["skew"]!["context"]!["garage"]!["majority_share"]!.GetValue<double>(), Is.EqualTo(0.875).Within(1e-6));
        Assert.That(doc["disparate_impact"]!["gender"]!["fails_four_fifths"]!.GetValue<bool>(), Is.True);

        var bad = CliRunner.Run(dir, "data", "audit", manifest, "--split", "nope");
        Assert.That(bad.ExitCode, Is.EqualTo(2));
        Assert.That(bad.Stderr, Does.Contain("--split"));
    }
}
