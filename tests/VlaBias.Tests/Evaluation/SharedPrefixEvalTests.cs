using NUnit.Framework;
using VlaBias.Data;
using VlaBias.Evaluation;
using VlaBias.Images;
using VlaBias.Tests.Training;

namespace VlaBias.Tests.Evaluation;

/// <summary>The evaluator's samples with probes scored over a shared image prefix equal the full-prompt path; shards and the cache keep working.</summary>
public class SharedPrefixEvalTests
{
    private string dir = "";
    private TinyWorld world = null!;

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("prefix-eval");
        world = new TinyWorld(dir, tunePairs: 2, valPairs: 2, testPairs: 4);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    [Test]
    public void Samples_with_a_shared_prefix_equal_full_prompts_and_shards_and_cache_give_the_same_samples()
    {
        var vla = Vla.Load(world.Model);
        var suite = Suite.Load(world.Suite) with { BatchSize = 16, Captions = false };  // captions do not take the shared path
        var items = Manifest.Load(suite.Manifest).Where(i => i.Split?.Name() == suite.Split).OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        using var bank = ImageBank.Load(items, Path.GetDirectoryName(Path.GetFullPath(world.Manifest))!, vla.Images);
        var shared = new Evaluator(vla, suite).Collect(items, bank);
        var full = new Evaluator(vla, suite) { SharePrefix = false }.Collect(items, bank);
        Assert.That(shared.Select(s => s.Key), Is.EqualTo(full.Select(s => s.Key)));
        int probes = 0;
        double maxDiff = 0;
        for (int i = 0; i < shared.Count; i++)
        {
            Assert.That(shared[i].Output, Is.EqualTo(full[i].Output), shared[i].Key);
            Assert.That(shared[i].LogProb, Is.EqualTo(full[i].LogProb), shared[i].Key);
            if (shared[i].Probs is null) { Assert.That(full[i].Probs, Is.Null); continue; }
            probes++;
            for (int o = 0; o < shared[i].Probs!.Count; o++)
                maxDiff = Math.Max(maxDiff, Math.Abs(shared[i].Probs![o] - full[i].Probs![o]));
        }
        TestContext.Out.WriteLine($"{probes} probe samples of {shared.Count}: max |Δp| shared vs full prompts {maxDiff:E2}");
        Assert.That(probes, Is.GreaterThan(50));
        Assert.That(shared.Count, Is.GreaterThan(probes), "facts too");
        Assert.That(maxDiff, Is.LessThan(1e-5));

        // shards of the shared path merge to the unsharded samples; a rerun on the cache answers from it, identically
        var cacheFile = Path.Combine(dir, "cache.jsonl");
        var one = new Evaluator(vla, suite).Collect(items, bank, new Shard(1, 2), cacheFile, "m");
        var two = new Evaluator(vla, suite).Collect(items, bank, new Shard(2, 2), cacheFile, "m");
        var merged = one.Concat(two).OrderBy(s => s.Key, StringComparer.Ordinal).ToList();
        Assert.That(System.Text.Json.JsonSerializer.Serialize(merged, Sample.Json), Is.EqualTo(System.Text.Json.JsonSerializer.Serialize(shared, Sample.Json)));
        long before = new FileInfo(cacheFile).Length;
        var cached = new Evaluator(vla, suite).Collect(items, bank, null, cacheFile, "m");
        Assert.That(new FileInfo(cacheFile).Length, Is.EqualTo(before), "everything came from the cache");
        Assert.That(System.Text.Json.JsonSerializer.Serialize(cached, Sample.Json), Is.EqualTo(System.Text.Json.JsonSerializer.Serialize(shared, Sample.Json)));
    }

    [Test]
    public void Batches_end_at_image_boundaries_so_no_image_is_split_unless_it_alone_exceeds_the_batch()
    {
        // images 0..4 with 24, 24, 24, 70 and 5 units of one kind, in order
        int[] counts = [24, 24, 24, 70, 5];
        var units = counts.SelectMany((n, item) => Enumerable.Range(0, n).Select(q => new WorkUnit(item, SampleKind.Probe, $"q{q}", ["yes", "no"], null))).ToList();
        var batches = Evaluator.ImageBatches(units, u => u.Item, 64);
        Assert.That(batches.SelectMany(b => b), Is.EqualTo(units), "every unit once, in order");
        Assert.That(batches.Select(b => b.Length), Is.EqualTo(new[] { 72, 64, 11 }));
        // the 70-unit image is cut once (64 + 6); its 6 continue with the last image; no other image spans two batches
        var spans = units.Select(u => u.Item).Distinct().ToDictionary(i => i, i => batches.Count(b => b.Any(u => u.Item == i)));
        Assert.That(spans, Is.EqualTo(new Dictionary<int, int> { [0] = 1, [1] = 1, [2] = 1, [3] = 2, [4] = 1 }));
        Assert.That(Evaluator.ImageBatches(units, u => u.Item, 1000).Single().Length, Is.EqualTo(units.Count));
    }
}
