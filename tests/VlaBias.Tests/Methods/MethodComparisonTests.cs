using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Methods;
using VlaBias.Tests.Training;

namespace VlaBias.Tests.Methods;

public class MethodComparisonTests
{
    private string dir = "";

    [SetUp]
    public void Make() => dir = TestPaths.NewTempDir("methods");

    [TearDown]
    public void Clean() => Directory.Delete(dir, true);

    [Test]
    public void A_suite_too_small_for_lic_reports_it_not_computable_instead_of_failing()
    {
        // two test pairs: 2 clear captions per gender, too few for LIC's train/test split (the warm-up and base alike)
        var world = new TinyWorld(dir, tunePairs: 4, valPairs: 2, testPairs: 2);
        string outDir = Path.Combine(dir, "out");
        var rows = MethodComparison.Run(new MethodsRequest(world.Model, world.Manifest, world.Suite, "unused.yaml", outDir,
            Skip: ["lora", "prompt", "steer", "prompt-engineering", "penalty"]));
        Assert.That(rows.Select(r => r.Name), Is.EqualTo(new[] { "base" }));
        var lic = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "base", "metrics.json")))!["metrics"]!["lic"]!;
        Assert.That(lic["value"], Is.Null);
        Assert.That(lic["not_computable"]!.GetValue<string>(), Does.Contain("smallest gender has 2"));
        Assert.That(File.ReadAllText(Path.Combine(outDir, "comparison.md")), Does.Contain("| `lic` | – (not computable: LIC needs at least one train and one test caption per gender"));
        Assert.That(File.ReadAllText(Path.Combine(outDir, "base", "report.md")), Does.Contain("not computable: LIC needs"));
    }
}
