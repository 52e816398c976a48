using NUnit.Framework;
using VlaBias.Data;
using VlaBias.Data.Importers;
using VlaBias.Tests.Training;

namespace VlaBias.Tests.Data;

public class ImporterTests
{
    private string dir = "";
    private FaceSamples.Paths faces = null!;

    [OneTimeSetUp]
    public void Setup()
    {
        dir = TestPaths.NewTempDir("import");
        faces = FaceSamples.Write(Path.Combine(dir, "faces"), faces: 6, scenes: 5, size: 24);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private static ProbingSuite Probes() => ProbingSuite.Load(Path.Combine(TinyWorld.RepoRoot(), ProbingSuite.DefaultPath));

    private ImportResult Import(string format, string source, string name, string? imagesRoot = null, ProbingSuite? probes = null) =>
        DatasetImport.Run(new ImportOptions
        {
            Format = format, Source = source, Out = Path.Combine(dir, name, "manifest.jsonl"), ImagesRoot = imagesRoot, Probes = probes,
            GenderWords = Path.Combine(TinyWorld.RepoRoot(), "data/words/gender_words.json"),
        });

    private string Write(string name, string text)
    {
        var p = Path.Combine(dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(p)!);
        File.WriteAllText(p, text);
        return p;
    }

    [Test]
    public void FairFace_csv_becomes_a_valid_manifest_with_genders_races_and_probe_questions()
    {
        var r = Import("fairface", faces.FairFaceCsv, "ff", probes: Probes());
        var items = Manifest.Load(r.ManifestPath);   // validates, and checks every referenced image exists
        Assert.That(items, Has.Count.EqualTo(6));
        Assert.That(items.Select(i => i.Attributes.Gender.Name()), Is.EqualTo(new[] { "man", "woman", "man", "woman", "man", "woman" }));
        Assert.That(items[0].Attributes.Race, Is.EqualTo("White"));
        Assert.That(items[0].Image, Does.StartWith("../faces/fairface/val/"));
        Assert.That(items.All(i => i.Pair is null), Is.True, "FairFace has no counterfactual pairs");
        Assert.That(items[0].Questions, Has.Count.EqualTo(Probes().Questions().Count));
        Assert.That(items.Select(i => i.Split?.Name()).Distinct(), Is.SubsetOf(new[] { "tune", "val", "test" }));
    }

    [Test]
    public void Malformed_fairface_rows_are_reported_with_their_line_numbers()
    {
        var csv = Write("bad/labels.csv", "file,age,gender,race,service_test\nval/1.jpg,20-29,Male,White,True\nval/2.jpg,20-29,Robot,White,True\nval/3.jpg,20-29\nval/missing.jpg,20-29,Female,Black,True\n");
        Directory.CreateDirectory(Path.Combine(dir, "bad/val"));
        File.Copy(Path.Combine(faces.FairFaceRoot, "val/1.jpg"), Path.Combine(dir, "bad/val/1.jpg"));
        var e = Assert.Throws<BadInputException>(() => Import("fairface", csv, "bad-out", imagesRoot: Path.Combine(dir, "bad"), probes: null))!;
        Assert.That(e.Message, Does.Contain("line 3: field 'gender': unknown value 'Robot'"));
        Assert.That(e.Message, Does.Contain("line 4: expected 5 fields, got 2"));
        Assert.That(e.Message, Does.Contain("line 5: image not found"));
        Assert.That(e.Message, Does.Not.Contain("line 2"));
    }

    [Test]
    public void Utkface_file_names_give_age_gender_and_race_and_bad_names_are_named()
    {
        var utk = Path.Combine(dir, "utk");
        Directory.CreateDirectory(utk);
        var img = Path.Combine(faces.FairFaceRoot, "val/1.jpg");
        File.Copy(img, Path.Combine(utk, "25_0_2_20170116174525125.jpg.chip.jpg"));
        File.Copy(img, Path.Combine(utk, "61_1_1_20170109142408075.jpg"));
        var items = Import("utkface", utk, "utk-out").Items.OrderBy(i => i.Attributes.Age).ToList();
        Assert.That(items.Select(i => (i.Attributes.Age, i.Attributes.Gender.Name(), i.Attributes.Race)),
            Is.EqualTo(new[] { ("25", "man", "Asian"), ("61", "woman", "Black") }));
        File.Copy(img, Path.Combine(utk, "30_2_0_2017.jpg"));
        var e = Assert.Throws<BadInputException>(() => Import("utkface", utk, "utk-out2"))!;
        Assert.That(e.Message, Does.Contain("30_2_0_2017.jpg"));
    }

    [Test]
    public void Coco_captions_become_items_with_gender_from_caption_words()
    {
        var root = Path.Combine(dir, "coco");
        Directory.CreateDirectory(root);
        File.Copy(Path.Combine(faces.FairFaceRoot, "val/1.jpg"), Path.Combine(root, "a.jpg"));
        File.Copy(Path.Combine(faces.FairFaceRoot, "val/2.jpg"), Path.Combine(root, "b.jpg"));
        var json = Write("coco/captions.json", """
            {"images": [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}],
             "annotations": [{"image_id": 7, "caption": "A woman riding a bike."}, {"image_id": 7, "caption": "A lady on a bicycle"},
                             {"image_id": 9, "caption": "A man and a woman talking."}]}
            """);
        var items = Import("coco", json, "coco-out").Items.OrderBy(i => i.Id).ToList();
        Assert.That(items.Select(i => i.Id), Is.EqualTo(new[] { "coco-7", "coco-9" }));
        Assert.That(items[0].Captions, Has.Count.EqualTo(2));
        Assert.That(items[0].Attributes.Gender.Name(), Is.EqualTo("woman"));
        Assert.That(items[1].Attributes.Gender.Name(), Is.EqualTo("unclear"));
        var bad = Write("coco/bad.json", """{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "caption": "x"}]}""");
        Assert.That(() => Import("coco", bad, "coco-bad"), Throws.TypeOf<BadInputException>().With.Message.Contains("annotations[0]: image_id 2"));
    }

    [Test]
    public void Plain_csv_merges_captions_per_image_and_reports_bad_rows_by_line()
    {
        var root = Path.Combine(dir, "plain");
        Directory.CreateDirectory(root);
        File.Copy(Path.Combine(faces.FairFaceRoot, "val/1.jpg"), Path.Combine(root, "x.jpg"));
        var csv = Write("plain/data.csv", "image,caption,gender\nx.jpg,\"a man, smiling\",male\nx.jpg,a person outdoors,male\n");
        var items = Import("csv", csv, "plain-out").Items;
        Assert.That(items, Has.Count.EqualTo(1));
        Assert.That(items[0].Captions, Is.EqualTo(new[] { "a man, smiling", "a person outdoors" }));
        Assert.That(items[0].Attributes.Gender.Name(), Is.EqualTo("man"));
        var bad = Write("plain/bad.csv", "image,caption,gender\nx.jpg,ok,female\nx.jpg,ok,purple\n,no image,male\n");
        var e = Assert.Throws<BadInputException>(() => Import("csv", bad, "plain-bad"))!;
        Assert.That(e.Message, Does.Contain("line 3: field 'gender'"));
        Assert.That(e.Message, Does.Contain("line 4: field 'image': empty"));
        Assert.That(() => Import("csv", Write("plain/nohdr.csv", "picture,gender\n"), "plain-nohdr"),
            Throws.TypeOf<BadInputException>().With.Message.Contains("line 1: missing column image"));
    }

    [Test]
    public void Counterfactual_folders_become_pairs_that_stay_in_one_split()
    {
        var r = DatasetImport.Run(new ImportOptions
        {
            Format = "counterfactual-folders", Source = faces.CounterfactualRoot, Out = Path.Combine(dir, "cf", "m.jsonl"), SplitVal = 0.2, SplitTest = 0.2, Seed = 3,
        });
        Assert.That(r.Items, Has.Count.EqualTo(10));
        Assert.That(r.Pairs, Is.EqualTo(5));
        foreach (var g in r.Items.GroupBy(i => i.Pair))
        {
            Assert.That(g.Select(i => i.Attributes.Gender.Name()).Order(), Is.EqualTo(new[] { "man", "woman" }));
            Assert.That(g.Select(i => i.Split?.Name()).Distinct().Count(), Is.EqualTo(1), $"pair {g.Key} split across splits");
        }
        Assert.That(r.Items.GroupBy(i => i.Split?.Name() ?? "none").ToDictionary(g => g.Key, g => g.Count()),
            Is.EqualTo(new Dictionary<string, int> { ["tune"] = 6, ["val"] = 2, ["test"] = 2 }));
        var odd = Path.Combine(dir, "cf-bad", "s1");
        Directory.CreateDirectory(odd);
        File.Copy(Path.Combine(faces.CounterfactualRoot, "scene000", "man.png"), Path.Combine(odd, "man.png"));
        File.Copy(Path.Combine(faces.CounterfactualRoot, "scene000", "man.png"), Path.Combine(odd, "robot.png"));
        var e = Assert.Throws<BadInputException>(() => Import("counterfactual-folders", Path.Combine(dir, "cf-bad"), "cf-bad-out"))!;
        Assert.That(e.Message, Does.Contain("s1/robot.png"));
    }

    [Test]
    public void Probing_suite_has_train_and_test_values_with_and_without_unknown()
    {
        var qs = Probes().Questions();
        Assert.That(qs.Select(q => q.AttributeSplit?.Name()).Distinct().Order(), Is.EqualTo(new[] { "test", "train" }));
        Assert.That(qs.Count(q => q.Options!.Contains("unknown")), Is.EqualTo(qs.Count / 2));
        Assert.That(qs.All(q => q.Kind.Name() == "probe" && q.A is null), Is.True);
        var nurse = qs.Where(q => q.Attribute == "engineer").Select(q => q.Q).ToList();
        Assert.That(nurse, Is.EqualTo(new[] { "Could the person in this picture work as an engineer? Answer yes or no.",
                                              "Could the person in this picture work as an engineer? Answer yes, no, or unknown." }));
        var train = qs.Where(q => q.AttributeSplit?.Name() == "train").Select(q => q.Attribute).ToHashSet();
        var test = qs.Where(q => q.AttributeSplit?.Name() == "test").Select(q => q.Attribute).ToHashSet();
        Assert.That(train.Overlaps(test), Is.False);
    }
}
