using System.Text.Json;
using NUnit.Framework;
using VlaBias.Data;

namespace VlaBias.Tests.Data;

public class WorldTests
{
    [Test]
    public void Shipped_world_meets_the_spec()
    {
        var w = RepoPaths.World;
        Assert.That(w.Contexts, Has.Count.GreaterThanOrEqualTo(8));
        Assert.That(w.Contexts.Count(c => c.Lean == "woman") * 2, Is.EqualTo(w.Contexts.Count));
        Assert.That(w.Contexts, Has.All.Matches<ContextDef>(c => c.Roles.Count == 2 && c.Objects.Count is >= 2 and <= 3));
        Assert.That(w.Contexts.SelectMany(c => c.Roles).Count(r => r.Lean == "man"), Is.EqualTo(w.Contexts.Count));
        Assert.That(w.Attributes, Has.Count.GreaterThanOrEqualTo(24));
        foreach (var split in new[] { "train", "test" })
            foreach (var lean in World.Leans)
                Assert.That(w.Attributes.Count(a => a.Split == split && a.Lean == lean), Is.EqualTo(w.Attributes.Count / 4), $"{split}/{lean}");
        Assert.That(w.PretrainBias.ContextGenderLean, Is.EqualTo(0.8));
        Assert.That(w.ImageSize, Is.EqualTo(48));
    }

    [Test]
    public void Vocabulary_is_closed_over_everything_the_world_says()
    {
        var w = RepoPaths.World;
        var vocab = w.Vocabulary().ToHashSet();
        Assert.That(vocab, Is.SupersetOf(new[] { "man", "woman", "person", "yes", "no", "unknown", "describe", "construction", "site", "?", ".", "," }));
        Assert.That(vocab.Any(v => v.Contains('{') || v.Contains(' ')), Is.False);
        var plan = SceneSynth.Plan(w, new SynthOptions { Pretrain = 300, TunePairs = 20, TuneUnclear = 5, ValPairs = 20, ValUnclear = 5, TestPairs = 5, TestUnclear = 5 });
        foreach (var item in plan.Select(p => p.Item))
        {
            var texts = item.Captions.Concat(item.Questions.SelectMany(q => new[] { q.Q, q.A ?? "" }.Concat(q.Options ?? [])));
            foreach (var t in texts.Append(w.Templates.CaptionPrompt))
                Assert.That(World.Tokenize(t).Distinct(), Is.SubsetOf(vocab), t);
        }
    }

    [Test]
    public void Gender_word_lists_cover_the_worlds_gender_words()
    {
        var w = RepoPaths.World;
        var lists = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(File.ReadAllText(RepoPaths.GenderWordsJson))!;
        string[] Words(string k) => lists[k].EnumerateArray().Select(e => e.GetString()!).ToArray();
        Assert.That(Words("man"), Does.Contain(w.Words.Man).And.Contain("he").And.Contain("his"));
        Assert.That(Words("woman"), Does.Contain(w.Words.Woman).And.Contain("she").And.Contain("her"));
        Assert.That(Words("neutral"), Does.Contain(w.Words.Unclear));
        Assert.That(Words("man").Intersect(Words("woman")), Is.Empty);
        // No word the world uses outside the gender slot may be gendered, or caption metrics would misread it.
        var gendered = Words("man").Concat(Words("woman")).ToHashSet();
        var other = w.Vocabulary().Where(v => v != w.Words.Man && v != w.Words.Woman);
        Assert.That(other.Where(gendered.Contains), Is.Empty);
    }

    [Test]
    public void Load_names_every_bad_field()
    {
        var json = File.ReadAllText(RepoPaths.WorldJson)
            .Replace("\"name\": \"kitchen\", \"lean\": \"woman\"", "\"name\": \"kitchen\", \"lean\": \"women\"")
            .Replace("\"probe_yes_if_match\": 0.85", "\"probe_yes_if_match\": 1.85")
            .Replace("\"color\": \"#f4d5b8\"", "\"color\": \"pink\"")
            .Replace("{ \"name\": \"shy\", \"lean\": \"woman\", \"split\": \"test\" }", "{ \"name\": \"shy\", \"lean\": \"woman\", \"split\": \"dev\" }");
        var path = Path.Combine(RepoPaths.TempDir(), "world.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<BadInputException>(() => World.Load(path))!;
        Assert.That(e.Message, Does.Contain("field 'contexts[0].lean': unknown value 'women' (expected man|woman)"));
        Assert.That(e.Message, Does.Contain("field 'pretrain_bias.probe_yes_if_match': 1.85 is not a probability 0..1"));
        Assert.That(e.Message, Does.Contain("field 'tones[0].color': 'pink' is not a color (expected #rrggbb)"));
        Assert.That(e.Message, Does.Contain("field 'attributes[10].split': unknown value 'dev' (expected train|test)"));
        Assert.That(e.Message, Does.Contain("field 'contexts': leans not balanced"));
    }

    [Test]
    public void Load_reports_malformed_json_and_missing_files()
    {
        var path = Path.Combine(RepoPaths.TempDir(), "world.json");
        File.WriteAllText(path, "{ \"contexts\": [ ");
        Assert.That(Assert.Throws<BadInputException>(() => World.Load(path))!.Message, Does.StartWith($"{path}: malformed JSON"));
        Assert.That(Assert.Throws<BadInputException>(() => World.Load(path + ".none"))!.Message, Does.Contain("file not found"));
        File.WriteAllText(path, "{}");
        Assert.That(Assert.Throws<BadInputException>(() => World.Load(path))!.Message, Does.Contain("field 'pretrain_bias.context_gender_lean': missing"));
    }
}
