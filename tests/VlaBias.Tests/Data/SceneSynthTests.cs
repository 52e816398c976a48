using NUnit.Framework;
using VlaBias.Data;

namespace VlaBias.Tests.Data;

public class SceneSynthTests
{
    private static readonly SynthOptions Small = new()
    {
        Seed = 5, Pretrain = 40, TunePairs = 16, TuneUnclear = 8, ValPairs = 64, ValUnclear = 32, TestPairs = 64, TestUnclear = 32,
    };

    private static ulong SceneNumber(string id) => ulong.Parse(id[1..id.IndexOf('-')]);

    [Test]
    public void Generate_is_deterministic_and_writes_a_valid_manifest()
    {
        var opts = Small with { Pretrain = 12, TunePairs = 4, TuneUnclear = 2, ValPairs = 4, ValUnclear = 2, TestPairs = 4, TestUnclear = 2 };
        var (d1, d2) = (RepoPaths.TempDir(), RepoPaths.TempDir());
        int lastDone = -1;
        var progress = new SyncProgress(p => lastDone = p.done);
        var r1 = SceneSynth.Generate(RepoPaths.World, opts, d1, progress);
        var r2 = SceneSynth.Generate(RepoPaths.World, opts with { Threads = 1 }, d2);

        Assert.That(File.ReadAllBytes(r1.ManifestPath), Is.EqualTo(File.ReadAllBytes(r2.ManifestPath)));
        var items = Manifest.Load(r1.ManifestPath);
        Assert.That(items, Has.Count.EqualTo(12 + 10 + 10 + 10));
        Assert.That(lastDone, Is.EqualTo(items.Count));
        foreach (var it in items.Take(20))
            Assert.That(File.ReadAllBytes(Path.Combine(d1, it.Image)), Is.EqualTo(File.ReadAllBytes(Path.Combine(d2, it.Image))), it.Id);

        var other = SceneSynth.Plan(RepoPaths.World, opts with { Seed = 6 });
        Assert.That(other.Select(p => p.Scene.Seed), Is.Not.EqualTo(SceneSynth.Plan(RepoPaths.World, opts).Select(p => p.Scene.Seed)));
    }

    private sealed class SyncProgress(Action<(int done, int total)> f) : IProgress<(int done, int total)>
    {
        private readonly object _gate = new();
        public void Report((int done, int total) value) { lock (_gate) f(value); }
    }

    [Test]
    public void Splits_use_disjoint_scenes()
    {
        var plan = SceneSynth.Plan(RepoPaths.World, Small);
        var bySplit = plan.GroupBy(p => p.Item.Split?.Name() ?? "none").ToDictionary(g => g.Key, g => g.ToList());
        Assert.That(bySplit.Keys, Is.EquivalentTo(new[] { "pretrain", "tune", "val", "test" }));
        foreach (var (a, xs) in bySplit)
            foreach (var (b, ys) in bySplit)
                if (a != b)
                {
                    Assert.That(xs.Select(p => SceneNumber(p.Item.Id)).Intersect(ys.Select(p => SceneNumber(p.Item.Id))), Is.Empty, $"{a}/{b}");
                    Assert.That(xs.Select(p => p.Scene.Seed).Intersect(ys.Select(p => p.Scene.Seed)), Is.Empty, $"{a}/{b}");
                }
        Assert.That(plan.Select(p => p.Item.Id), Is.Unique);
        Assert.That(plan.All(p => SceneSynth.SplitOf(SceneNumber(p.Item.Id)) == p.Item.Split?.Name()));
    }

    [TestCase("val")]
    [TestCase("test")]
    public void Val_and_test_are_balanced_pairs_plus_unclear_singles(string split)
    {
        var w = RepoPaths.World;
        var items = SceneSynth.Plan(w, Small).Select(p => p.Item).Where(i => i.Split?.Name() == split).ToList();
        var combos = items.GroupBy(i => (i.Context, i.Role)).ToList();
        Assert.That(combos, Has.Count.EqualTo(w.Contexts.Count * 2));
        foreach (var g in combos)
        {
            Assert.That(g.Count(i => i.Attributes.Gender.Name() == "man"), Is.EqualTo(64 / 16), g.Key.ToString());
            Assert.That(g.Count(i => i.Attributes.Gender.Name() == "woman"), Is.EqualTo(64 / 16), g.Key.ToString());
            Assert.That(g.Count(i => i.Attributes.Gender.Name() == "unclear"), Is.EqualTo(32 / 16), g.Key.ToString());
        }
        foreach (var gender in new[] { "man", "woman" })
            Assert.That(items.Where(i => i.Attributes.Gender.Name() == gender).GroupBy(i => i.Attributes.Tone).Select(g => g.Count()), Has.All.EqualTo(16));
        var pairs = items.Where(i => i.Pair is not null).GroupBy(i => i.Pair).ToList();
        Assert.That(pairs, Has.Count.EqualTo(64));
        foreach (var p in pairs)
        {
            Assert.That(p.Select(i => i.Attributes.Gender.Name()), Is.EquivalentTo(new[] { "man", "woman" }));
            Assert.That(p.Select(i => (i.Context, i.Role, i.Attributes.Tone)).Distinct().Count(), Is.EqualTo(1));
            Assert.That(p.Select(i => string.Join("|", i.Questions.Select(q => q.Q))).Distinct().Count(), Is.EqualTo(1), "same questions");
        }
        Assert.That(items.Where(i => i.Attributes.Gender.Name() == "unclear").All(i => i.Pair is null));
        // Probes: every attribute, both forms, no answer, with its split.
        foreach (var it in items)
        {
            var probes = it.Questions.Where(q => q.Kind.Name() == "probe").ToList();
            Assert.That(probes, Has.Count.EqualTo(w.Attributes.Count * 2));
            Assert.That(probes.All(q => q.A is null && q.AttributeSplit?.Name() == w.Attributes.First(a => a.Name == q.Attribute).Split));
            Assert.That(probes.Count(q => q.Options!.Contains("unknown")), Is.EqualTo(w.Attributes.Count));
        }
    }

    [Test]
    public void Tune_val_test_annotations_are_truthful()
    {
        var w = RepoPaths.World;
        foreach (var (scene, item) in SceneSynth.Plan(w, Small).Where(p => p.Item.Split?.Name() != "pretrain"))
        {
            var ctx = w.Context(scene.Context);
            var role = ctx.Role(scene.Role);
            Assert.That(item.Attributes.Gender.Name(), Is.EqualTo(scene.Gender));
            Assert.That((item.Context, item.Role, item.Attributes.Tone), Is.EqualTo((scene.Context, scene.Role, scene.Tone)));
            foreach (var c in item.Captions)
            {
                var words = c.Split(' ');
                Assert.That(words[1], Is.EqualTo(w.Words.For(scene.Gender)), c);
                Assert.That(words[2], Is.EqualTo(role.Name), c);
                Assert.That(c, Does.Contain(role.Item.Name).And.EndWith(ctx.Name));
            }
            AssertFactsTrue(w, scene, item);
            if (item.Split?.Name() == "tune")
                Assert.That(item.Questions.Where(q => q.Kind.Name() == "probe").All(q => q.AttributeSplit?.Name() == "train" && q.A is null));
            Assert.That(item.Lean, Is.EqualTo(new StereotypeLean { Context = ctx.Lean, Role = role.Lean }));
        }
    }

    private static void AssertFactsTrue(World w, Scene scene, ManifestItem item)
    {
        var ctx = w.Context(scene.Context);
        var item_ = ctx.Role(scene.Role).Item.Name;
        foreach (var q in item.Questions.Where(q => q.Kind.Name() == "fact"))
        {
            bool? truth = null;
            foreach (var o in w.Contexts.SelectMany(c => c.Objects))
                if (q.Q == w.Templates.Fact.ObjectPresent.Replace("{object}", o.Name)) truth = ctx.Objects.Contains(o);
            foreach (var r in w.Contexts.SelectMany(c => c.Roles))
                if (q.Q == w.Templates.Fact.Holding.Replace("{item}", r.Item.Name)) truth = r.Item.Name == item_;
            foreach (var c in w.Contexts)
                if (q.Q == w.Templates.Fact.InContext.Replace("{context}", c.Name)) truth = c == ctx;
            if (truth is bool t) Assert.That(q.A, Is.EqualTo(t ? "yes" : "no"), q.Q);
            else if (q.Q == w.Templates.Fact.WhatHolding) Assert.That(q.A, Is.EqualTo(item_));
            else if (q.Q == w.Templates.Fact.Where) Assert.That(q.A, Is.EqualTo(ctx.Name));
            else Assert.Fail($"unrecognised fact question '{q.Q}'");
        }
    }

    [Test]
    public void Pretrain_realizes_the_bias_rates_of_the_world()
    {
        var w = RepoPaths.World;
        var b = w.PretrainBias;
        var plan = SceneSynth.Plan(w, new SynthOptions { Seed = 1, Pretrain = 20000, TunePairs = 0, TuneUnclear = 0, ValPairs = 0, ValUnclear = 0, TestPairs = 0, TestUnclear = 0, PretrainProbes = 3 });
        Assert.That(plan, Has.Count.EqualTo(20000));
        const double tol = 0.03;
        var items = plan.Select(p => p.Item).ToList();
        string CaptionGender(ManifestItem i) => i.Captions[0].Split(' ')[1];

        var unclear = items.Where(i => i.Attributes.Gender.Name() == "unclear").ToList();
        Assert.That(unclear.Count / (double)items.Count, Is.EqualTo(b.UnclearFigureRate).Within(tol));
        Assert.That(unclear.Count(i => CaptionGender(i) == i.Lean!.Context) / (double)unclear.Count, Is.EqualTo(b.UnclearCaptionLeaningWord).Within(tol));
        Assert.That(unclear.All(i => CaptionGender(i) == i.Lean!.Context || CaptionGender(i) == w.Words.Unclear));

        var clear = items.Where(i => i.Attributes.Gender.Name() != "unclear").ToList();
        Assert.That(clear.Count(i => i.Attributes.Gender.Name() == i.Lean!.Context) / (double)clear.Count, Is.EqualTo(b.ContextGenderLean).Within(tol));
        Assert.That(clear.All(i => CaptionGender(i) == i.Attributes.Gender.Name()), "clear figures are captioned with their cue");

        // Role words: those that could be swapped (captioned gender ≠ the true role's lean) follow the gender at the given rate.
        var swappable = items.Where(i => CaptionGender(i) != w.Words.Unclear && CaptionGender(i) != i.Lean!.Role).ToList();
        double swapped = swappable.Count(i => i.Captions[0].Split(' ')[2] != i.Role) / (double)swappable.Count;
        Assert.That(swapped, Is.EqualTo(b.RoleWordFollowsGenderLean).Within(tol));
        Assert.That(items.Where(i => i.Captions[0].Split(' ')[2] != i.Role)
            .All(i => w.Context(i.Context!).RoleLeaning(CaptionGender(i)).Name == i.Captions[0].Split(' ')[2]));

        var probes = items.SelectMany(i => i.Questions.Where(q => q.Kind.Name() == "probe").Select(q => (i, q))).ToList();
        Assert.That(probes.Select(p => p.q.Attribute).Distinct().Count(), Is.EqualTo(w.Attributes.Count), "all attributes, train and test");
        double YesRate(IEnumerable<(ManifestItem i, ManifestQuestion q)> xs)
        {
            var yn = xs.Where(x => x.q.A != "unknown").ToList();
            return yn.Count(x => x.q.A == "yes") / (double)yn.Count;
        }
        string Lean(string attr) => w.Attributes.First(a => a.Name == attr).Lean;
        Assert.That(YesRate(probes.Where(p => CaptionGender(p.i) == Lean(p.q.Attribute!))), Is.EqualTo(b.ProbeYesIfMatch).Within(tol));
        Assert.That(YesRate(probes.Where(p => CaptionGender(p.i) != w.Words.Unclear && CaptionGender(p.i) != Lean(p.q.Attribute!))), Is.EqualTo(b.ProbeYesIfMismatch).Within(tol));
        Assert.That(YesRate(probes.Where(p => CaptionGender(p.i) == w.Words.Unclear)), Is.EqualTo(b.ProbeYesIfNeutral).Within(0.05));
        var withUnknown = probes.Where(p => p.q.Options!.Contains("unknown")).ToList();
        Assert.That(withUnknown.Count / (double)probes.Count, Is.EqualTo(b.UnknownOptionRate).Within(tol));
        Assert.That(withUnknown.Count(p => p.q.A == "unknown") / (double)withUnknown.Count, Is.EqualTo(b.UnknownAnswerRate).Within(0.02));
        Assert.That(probes.Where(p => !p.q.Options!.Contains("unknown")).All(p => p.q.A is "yes" or "no"));

        foreach (var p in plan.Take(2000)) AssertFactsTrue(w, p.Scene, p.Item);
        var yesNoFacts = items.SelectMany(i => i.Questions).Where(q => q.Kind.Name() == "fact" && q.Options is not null).ToList();
        Assert.That(yesNoFacts.Count(q => q.A == "yes") / (double)yesNoFacts.Count, Is.EqualTo(0.5).Within(tol));
    }
}

public class SceneSynthTiming
{
    /// <summary>Generates the default data set and prints how long it took (run by hand: it writes ~10k PNGs).</summary>
    [Test, Explicit]
    public void Default_generation_time()
    {
        var dir = RepoPaths.TempDir();
        var r = SceneSynth.Generate(RepoPaths.World, new SynthOptions(), dir);
        var bytes = Directory.GetFiles(Path.Combine(dir, "img")).Sum(f => new FileInfo(f).Length);
        var load = System.Diagnostics.Stopwatch.StartNew();
        var items = Manifest.Load(r.ManifestPath);
        TestContext.Out.WriteLine($"TIMING items={r.Items.Count} generate={r.Elapsed.TotalSeconds:F2}s load+check={load.Elapsed.TotalSeconds:F2}s " +
            $"png_bytes={bytes} manifest_bytes={new FileInfo(r.ManifestPath).Length} threads={Environment.ProcessorCount}");
        Assert.That(items, Has.Count.EqualTo(r.Items.Count));
        Directory.Delete(dir, true);
    }
}
