using NUnit.Framework;
using VlaBias.Data;

namespace VlaBias.Tests.Data;

public class ManifestTests
{
    private static ManifestItem Item(string id, string split = "val") => new()
    {
        Id = id, Image = $"img/{id}.png", Split = ManifestValues.ParseSplit(split),
        Captions = ["a woman nurse holding a clipboard in the hospital"],
        Attributes = new ItemAttributes { Gender = Gender.Woman, Tone = "2" },
        Context = "hospital", Role = "nurse", Pair = "s1",
        Questions =
        [
            new ManifestQuestion { Q = "is the person holding a wrench?", A = "no", Kind = QuestionKind.Fact, Options = ["yes", "no"] },
            new ManifestQuestion { Q = "is the person friendly?", Kind = QuestionKind.Probe, Attribute = "friendly", AttributeSplit = Split.Train, Options = ["yes", "no"] },
        ],
        Lean = new StereotypeLean { Context = "woman", Role = "woman" },
    };

    private static string WriteLines(string dir, params string[] lines)
    {
        var path = Path.Combine(dir, "x.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    [Test]
    public void Write_then_load_round_trips_every_field()
    {
        var dir = RepoPaths.TempDir();
        Directory.CreateDirectory(Path.Combine(dir, "img"));
        var items = new[] { Item("a"), Item("b", "pretrain") with { Pair = null, Lean = null } };
        foreach (var it in items) File.WriteAllBytes(Path.Combine(dir, it.Image), [1]);
        var path = Path.Combine(dir, "m.jsonl");
        Manifest.Write(path, items);

        var back = Manifest.Load(path);
        Assert.That(back, Has.Count.EqualTo(2));
        Assert.That(back.Select(Manifest.ToLine), Is.EqualTo(items.Select(Manifest.ToLine)));
        Assert.That(back[0].Questions[1].AttributeSplit?.Name(), Is.EqualTo("train"));
        Assert.That(back[0].Questions[1].A, Is.Null);
        Assert.That(back[1].Pair, Is.Null);
        Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1), "no temporary file left behind");
        Assert.That(File.ReadAllLines(path)[0], Does.Contain("\"attribute_split\":\"train\"").And.Contain("\"pair\":\"s1\""));
    }

    [Test]
    public void Write_replaces_an_existing_manifest_whole()
    {
        var dir = RepoPaths.TempDir();
        var path = Path.Combine(dir, "m.jsonl");
        Manifest.Write(path, [Item("a"), Item("b"), Item("c")]);
        Manifest.Write(path, [Item("z")]);
        Assert.That(Manifest.Load(path, checkImages: false).Select(i => i.Id), Is.EqualTo(new[] { "z" }));
    }

    [Test]
    public void Load_reports_every_problem_with_its_line_number()
    {
        var dir = RepoPaths.TempDir();
        string good = Manifest.ToLine(Item("ok"));
        var path = WriteLines(dir,
            good,                                                                      // 1 ok (image missing is not checked)
            "{\"id\": \"x\", \"image\": ",                                             // 2 malformed JSON
            good.Replace("\"split\":\"val\"", "\"split\":\"tset\"").Replace("\"ok\"", "\"t\""), // 3 unknown split
            good,                                                                      // 4 duplicate id
            "{\"image\": \"img/a.png\", \"split\": \"val\", \"attributes\": {\"gender\": \"man\"}}", // 5 missing id
            good.Replace("\"woman\",\"tone\"", "\"female\",\"tone\"").Replace("\"ok\"", "\"g\""),   // 6 unknown gender
            good.Replace("\"attribute\":\"friendly\",", "").Replace("\"ok\"", "\"p\""),             // 7 probe without attribute
            "",                                                                        // blank lines are skipped
            "[1, 2]");                                                                 // 9 not an object

        var e = Assert.Throws<BadInputException>(() => Manifest.Load(path, checkImages: false))!;
        var lines = e.Message.Split('\n');
        Assert.That(lines[0], Is.EqualTo($"{path}: 7 problems"));
        Assert.That(lines[1], Does.StartWith("line 2: malformed JSON"));
        Assert.That(lines[2], Is.EqualTo("line 3: field 'split': unknown value 'tset' (expected train|val|test|pretrain|tune)"));
        Assert.That(lines[3], Is.EqualTo("line 4: field 'id': duplicate 'ok' (first on line 1)"));
        Assert.That(lines[4], Is.EqualTo("line 5: field 'id': missing"));
        Assert.That(lines[5], Is.EqualTo("line 6: field 'attributes.gender': unknown value 'female' (expected man|woman|unclear)"));
        Assert.That(lines[6], Does.StartWith("line 7: field 'questions[1].attribute': missing"));
        Assert.That(lines[7], Does.StartWith("line 9: expected a JSON object"));
    }

    [Test]
    public void Load_reports_missing_images_relative_to_the_manifest()
    {
        var dir = RepoPaths.TempDir();
        Directory.CreateDirectory(Path.Combine(dir, "img"));
        File.WriteAllBytes(Path.Combine(dir, "img", "a.png"), [1]);
        var path = WriteLines(dir, Manifest.ToLine(Item("a")), Manifest.ToLine(Item("b")));
        var e = Assert.Throws<BadInputException>(() => Manifest.Load(path))!;
        Assert.That(e.Message, Is.EqualTo($"{path}: 1 problem\nline 2: field 'image': file not found: img/b.png"));
        Assert.That(Manifest.Load(path, checkImages: false), Has.Count.EqualTo(2));
    }

    [Test]
    public void Load_reports_wrong_types_and_answers_outside_the_options()
    {
        var dir = RepoPaths.TempDir();
        var path = WriteLines(dir,
            "{\"id\": 5, \"image\": \"i.png\", \"split\": \"val\", \"captions\": \"a man\", \"attributes\": {\"gender\": \"man\", \"tone\": 3}}",
            "{\"id\": \"q\", \"image\": \"i.png\", \"split\": \"val\", \"attributes\": {\"gender\": \"man\"}, \"lean\": {\"context\": \"men\"}, " +
            "\"questions\": [{\"q\": \"is it?\", \"a\": \"maybe\", \"kind\": \"fact\", \"options\": [\"yes\", \"no\"]}, {\"q\": \"x\", \"kind\": \"opinion\"}]}");
        var e = Assert.Throws<BadInputException>(() => Manifest.Load(path, checkImages: false))!;
        Assert.That(e.Message, Does.StartWith($"{path}: 6 problems"));
        Assert.That(e.Message, Does.Contain("line 1: field 'id': expected a string, got Number"));
        Assert.That(e.Message, Does.Contain("line 1: field 'captions': expected a list of strings"));
        Assert.That(e.Message, Does.Contain("line 1: field 'attributes.tone': expected a string, got Number"));
        Assert.That(e.Message, Does.Contain("line 2: field 'lean.context': unknown value 'men' (expected man|woman)"));
        Assert.That(e.Message, Does.Contain("line 2: field 'questions[0].a': 'maybe' is not one of the options"));
        Assert.That(e.Message, Does.Contain("line 2: field 'questions[1].kind': unknown value 'opinion' (expected fact|probe)"));
    }

    [Test]
    public void Load_of_a_missing_file_names_it()
    {
        var e = Assert.Throws<BadInputException>(() => Manifest.Load("/nonexistent/m.jsonl"))!;
        Assert.That(e.Message, Does.StartWith("/nonexistent/m.jsonl: file not found"));
    }

    [Test]
    public void Load_never_throws_anything_but_BadInputException_on_garbage_lines()
    {
        var rng = new Random(7);
        string good = Manifest.ToLine(Item("ok"));
        var dir = RepoPaths.TempDir();
        for (int n = 0; n < 300; n++)
        {
            var chars = good.ToCharArray();
            for (int k = 0; k < 1 + rng.Next(4); k++) chars[rng.Next(chars.Length)] = "{}[]\",:x0 \\"[rng.Next(11)];
            var path = WriteLines(dir, new string(chars));
            try { Manifest.Load(path, checkImages: false); }
            catch (BadInputException) { }
        }
    }
}
