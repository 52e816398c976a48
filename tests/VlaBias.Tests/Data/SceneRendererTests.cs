using NUnit.Framework;
using SkiaSharp;
using VlaBias.Data;

namespace VlaBias.Tests.Data;

public class SceneRendererTests
{
    private static IEnumerable<Scene> Scenes(World w, int n)
    {
        for (int i = 0; i < n; i++)
        {
            var c = w.Contexts[i % w.Contexts.Count];
            yield return new Scene((ulong)(77 + 13 * i), c.Name, c.Roles[i / w.Contexts.Count % 2].Name, "man", ((i % 4) + 1).ToString());
        }
    }

    private static (int inside, int outside) Diff(byte[] a, byte[] b, int size, Func<int, int, bool> inRegion)
    {
        int inside = 0, outside = 0;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                int k = (y * size + x) * 3;
                if (a[k] != b[k] || a[k + 1] != b[k + 1] || a[k + 2] != b[k + 2])
                {
                    if (inRegion(x, y)) inside++; else outside++;
                }
            }
        return (inside, outside);
    }

    [TestCase(48)]
    [TestCase(64)]
    public void Gender_variants_differ_only_inside_the_cue_region(int size)
    {
        var r = new SceneRenderer(RepoPaths.World, size);
        foreach (var s in Scenes(RepoPaths.World, 32))
        {
            var region = r.CueRegion(s);
            var img = World.Genders.ToDictionary(g => g, g => r.RenderRgb(s with { Gender = g }));
            foreach (var (a, b) in new[] { ("man", "woman"), ("man", "unclear"), ("woman", "unclear") })
            {
                var (inside, outside) = Diff(img[a], img[b], size, region.Contains);
                Assert.That(outside, Is.Zero, $"{s} {a}/{b}: pixels outside the cue region differ");
                // The cue must be big enough to survive 8×8 patches: dozens of pixels, not a few.
                Assert.That(inside, Is.GreaterThan(20 * size * size / (48 * 48)), $"{s} {a}/{b}: cue too small");
            }
        }
    }

    [Test]
    public void Tone_variants_differ_only_in_the_skin()
    {
        var r = new SceneRenderer(RepoPaths.World);
        foreach (var s in Scenes(RepoPaths.World, 16))
        {
            var skin = r.SkinRegions(s);
            var a = r.RenderRgb(s with { Tone = "1" });
            var b = r.RenderRgb(s with { Tone = "4" });
            var (inside, outside) = Diff(a, b, r.Size, (x, y) => skin.Any(q => q.Contains(x, y)));
            Assert.That(outside, Is.Zero, s.ToString());
            Assert.That(inside, Is.GreaterThan(30), s.ToString());
        }
    }

    [Test]
    public void Same_scene_gives_identical_png_bytes_and_other_seeds_differ()
    {
        var r = new SceneRenderer(RepoPaths.World);
        var s = Scenes(RepoPaths.World, 1).First();
        Assert.That(r.RenderPng(s), Is.EqualTo(new SceneRenderer(RepoPaths.World).RenderPng(s)));
        var seen = new HashSet<string>();
        for (ulong seed = 0; seed < 20; seed++)
            Assert.That(seen.Add(Convert.ToBase64String(r.RenderRgb(s with { Seed = seed }))), Is.True, $"seed {seed} repeats an image");
    }

    [Test]
    public void Png_is_rgb_of_the_requested_size_with_no_alpha()
    {
        var s = Scenes(RepoPaths.World, 1).First();
        foreach (var size in new[] { 48, 32 })
        {
            var png = new SceneRenderer(RepoPaths.World, size).RenderPng(s);
            using var bmp = SKBitmap.Decode(png);
            Assert.That((bmp.Width, bmp.Height), Is.EqualTo((size, size)));
            Assert.That(png[25], Is.EqualTo(2), "PNG colour type 2 (truecolour RGB)");
        }
    }

    [Test]
    public void Roles_and_contexts_change_the_picture_outside_the_cue()
    {
        var r = new SceneRenderer(RepoPaths.World);
        var s = Scenes(RepoPaths.World, 1).First();
        var c = RepoPaths.World.Context(s.Context);
        var other = c.Roles.First(x => x.Name != s.Role).Name;
        var region = r.CueRegion(s);
        Assert.That(Diff(r.RenderRgb(s), r.RenderRgb(s with { Role = other }), r.Size, region.Contains).outside, Is.GreaterThan(20), "held item");
        var ctx2 = RepoPaths.World.Contexts.First(x => x.Name != s.Context);
        Assert.That(Diff(r.RenderRgb(s), r.RenderRgb(s with { Context = ctx2.Name, Role = ctx2.Roles[0].Name }), r.Size, region.Contains).outside,
            Is.GreaterThan(500), "background");
    }
}
