using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Evaluation;
using VlaBias.Tests.Training;

namespace VlaBias.Tests.Evaluation;

/// <summary>The evaluation cache of finished folders: a repeated evaluation is copied, and any changed input misses.</summary>
public class EvalCacheTests
{
    private string dir = "";
    private TinyWorld world = null!;

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("evalcache");
        world = new TinyWorld(dir, tunePairs: 1, valPairs: 1, testPairs: 8);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private Suite LoadSuite() => Suite.Load(world.Suite);

    [Test]
    public void Repeated_base_evaluation_is_copied_from_the_cache_with_identical_outputs()
    {
        var root = Path.Combine(dir, "cache1");
        var vla = Vla.Load(world.Model);
        var suite = LoadSuite();
        var first = EvalRunner.RunCached(vla, new EvalRequest(world.Model, null, suite, Path.Combine(dir, "e1"), Shard.All), cacheRoot: root);
        Assert.That(first.FromCache, Is.False);
        Assert.That(Directory.GetDirectories(root), Has.Length.EqualTo(1), "the first evaluation is stored");
        var second = EvalRunner.RunCached(vla, new EvalRequest(world.Model, null, suite, Path.Combine(dir, "e2"), Shard.All), cacheRoot: root);
        Assert.That(second.FromCache, Is.True);
        Assert.That(second.Samples, Is.EqualTo(first.Samples));
        Assert.That(second.Metrics!.ToJsonString(), Is.EqualTo(first.Metrics!.ToJsonString()));
        foreach (var f in new[] { EvalRunner.SamplesFile, EvalRunner.MetricsFile })
            Assert.That(File.ReadAllBytes(Path.Combine(dir, "e2", f)), Is.EqualTo(File.ReadAllBytes(Path.Combine(dir, "e1", f))), f);

        // A different suite setting is another evaluation: it runs anew.
        var third = EvalRunner.RunCached(vla, new EvalRequest(world.Model, null, suite with { Bootstrap = 7 }, Path.Combine(dir, "e3"), Shard.All), cacheRoot: root);
        Assert.That(third.FromCache, Is.False);
        // A limited evaluation is never served from the cache.
        var limited = EvalRunner.RunCached(vla, new EvalRequest(world.Model, null, suite, Path.Combine(dir, "e4"), Shard.All, Limit: 16), cacheRoot: root);
        Assert.That(limited.FromCache, Is.False);
    }

    [Test]
    public void Key_changes_when_model_bytes_suite_manifest_image_or_word_list_change()
    {
        // a private copy of the world's inputs, edited one at a time
        var copy = Path.Combine(dir, "copy");
        CopyTree(world.Dir, copy, skip: ["copy", "cache1", "e1", "e2", "e3", "e4"]);
        string model = Path.Combine(copy, "model"), manifest = Path.Combine(copy, "scenes", "manifest.jsonl");
        var words = Path.Combine(copy, "words.json");
        File.Copy(LoadSuite().Words, words);
        var suite = LoadSuite() with { Manifest = manifest, Words = words };
        var vla = Vla.Load(model);
        string Key() => EvalCache.Key(EvalCache.KeyParts(vla, model, suite));
        var original = Key();
        Assert.That(Key(), Is.EqualTo(original), "the key is a function of the inputs");

        var changes = new List<(string what, Action change, Action undo)>();
        var weights = Directory.GetFiles(model, "*.safetensors").First();
        var wBytes = File.ReadAllBytes(weights);
        changes.Add(("a weight byte", () => { var b = (byte[])wBytes.Clone(); b[^1] ^= 1; File.WriteAllBytes(weights, b); }, () => File.WriteAllBytes(weights, wBytes)));
        var mText = File.ReadAllText(manifest);
        changes.Add(("the manifest", () => File.WriteAllText(manifest, mText + "\n"), () => File.WriteAllText(manifest, mText)));
        var firstTest = VlaBias.Data.Manifest.Load(manifest).First(i => i.Split == VlaBias.Data.Split.Test);
        var image = Path.Combine(Path.GetDirectoryName(manifest)!, firstTest.Image);
        var iBytes = File.ReadAllBytes(image);
        changes.Add(("a test image", () => { var b = (byte[])iBytes.Clone(); b[^1] ^= 1; File.WriteAllBytes(image, b); }, () => File.WriteAllBytes(image, iBytes)));
        var wText = File.ReadAllText(words);
        changes.Add(("the word lists", () => File.WriteAllText(words, wText + " "), () => File.WriteAllText(words, wText)));
        foreach (var (what, change, undo) in changes)
        {
            change();
            Assert.That(Key(), Is.Not.EqualTo(original), what);
            undo();
            Assert.That(Key(), Is.EqualTo(original), what + " undone");
        }
        var baseSuite = suite;
        suite = baseSuite with { MaxNewTokens = baseSuite.MaxNewTokens + 1 };
        Assert.That(Key(), Is.Not.EqualTo(original), "a suite setting");
        suite = baseSuite with { CaptionPrompt = "say what you see." };
        Assert.That(Key(), Is.Not.EqualTo(original), "the caption prompt");
        suite = baseSuite;
        var parts = EvalCache.KeyParts(vla, model, suite);
        Assert.That(parts["code"]!.GetValue<string>(), Has.Length.EqualTo(64), "the code's digest is part of the key");
    }

    [Test]
    public void Entry_with_unreadable_metrics_is_not_used()
    {
        var root = Path.Combine(dir, "cache-bad");
        var entry = Path.Combine(root, "abc");
        Directory.CreateDirectory(entry);
        File.WriteAllText(Path.Combine(entry, EvalCache.KeyFile), "{}");
        File.WriteAllText(Path.Combine(entry, EvalRunner.SamplesFile), "");
        File.WriteAllText(Path.Combine(entry, EvalRunner.MetricsFile), "{ cut sho");
        Assert.That(EvalCache.TryRestore(root, "abc", Path.Combine(dir, "restored")), Is.Null);
        Assert.That(EvalCache.TryRestore(root, "missing", Path.Combine(dir, "restored")), Is.Null);
    }

    private static void CopyTree(string from, string to, string[] skip)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from))
            if (!skip.Contains(Path.GetFileName(d))) CopyTree(d, Path.Combine(to, Path.GetFileName(d)), skip);
    }
}
