using NUnit.Framework;
using VlaBias.Data;

namespace VlaBias.Tests.Data;

public class ContactSheetTests
{
    /// <summary>One row per context (alternating roles and tones): man, woman, unclear, and a tone counterfactual.</summary>
    internal static List<IReadOnlyList<Scene>> Rows(World world)
    {
        var rows = new List<IReadOnlyList<Scene>>();
        for (int i = 0; i < world.Contexts.Count; i++)
        {
            var c = world.Contexts[i];
            var role = c.Roles[i % 2].Name;
            var tone = (i % 4 + 1).ToString();
            var toneCf = ((i + 2) % 4 + 1).ToString();
            ulong seed = 1000 + (ulong)i;
            var row = new List<Scene>();
            foreach (var r in c.Roles)
                foreach (var g in World.Genders) row.Add(new Scene(seed, c.Name, r.Name, g, r == c.Roles[0] ? tone : toneCf));
            rows.Add(row);
        }
        return rows;
    }

    [Test]
    public void Contact_sheet_renders()
    {
        var world = RepoPaths.World;
        var png = new SceneRenderer(world).RenderContactSheet(Rows(world), 4);
        Assert.That(png.Length, Is.GreaterThan(1000));
    }

    /// <summary>Rewrites data/scenes/contact_sheet.png (run by hand after changing world.json or the renderer).</summary>
    [Test, Explicit]
    public void Write_contact_sheet()
    {
        var world = RepoPaths.World;
        var png = new SceneRenderer(world).RenderContactSheet(Rows(world), 4);
        File.WriteAllBytes(Path.Combine(RepoPaths.Root, "data", "scenes", "contact_sheet.png"), png);
    }
}
