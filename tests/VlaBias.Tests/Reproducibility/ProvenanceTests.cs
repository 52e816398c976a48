using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Reproducibility;
using VlaBias.Tests.Cli;
using VlaBias.Tests.Training;

namespace VlaBias.Tests.Reproducibility;

/// <summary>`vlatune provenance record|check`: a result file's sidecar, and the check failing with the reason when it is stale.</summary>
public class ProvenanceTests
{
    private string dir = "";

    [SetUp]
    public void Make()
    {
        dir = TestPaths.NewTempDir("provenance");
        File.WriteAllText(Path.Combine(dir, "recipe.yaml"), "lr: 1e-4\nmax_steps: 300\n");
        Directory.CreateDirectory(Path.Combine(dir, "model"));
        File.WriteAllText(Path.Combine(dir, "model", "config.json"), "{}");
        Directory.CreateDirectory(Path.Combine(dir, "results"));
        File.WriteAllText(Path.Combine(dir, "results", "table.md"), "| method | gap |\n|---|---|\n| lora | 0.046 |\n");
    }

    [TearDown] public void Clean() => Directory.Delete(dir, true);

    private CliRunner.Result Check(params string[] extra) => CliRunner.Run(dir, ["provenance", "check", "results/table.md", .. extra]);

    private void Record()
    {
        var r = CliRunner.Run(dir, "provenance", "record", "results/table.md", "--command", "vlatune methods --out results", "--recipe", "recipe.yaml", "--input", "model=model");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
    }

    [Test]
    public void Record_writes_what_made_the_file_and_check_passes_while_nothing_changed()
    {
        Record();
        var doc = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "results", "table.md.provenance.json")))!;
        Assert.That(doc["command"]!.GetValue<string>(), Is.EqualTo("vlatune methods --out results"));
        Assert.That(doc["working_directory"]!.GetValue<string>(), Is.EqualTo(".."));
        Assert.That(doc["inputs"]!.AsArray().Select(i => i!["path"]!.GetValue<string>()), Is.EqualTo(new[] { "../recipe.yaml", "../model" }));
        Assert.That(doc["code"]!["sources_sha256"]!.GetValue<string>(), Has.Length.EqualTo(64), "vlatune runs from a checkout: its sources are hashed");
        Assert.That(doc["machine"]!["cpu"]!.GetValue<string>(), Is.Not.Empty);
        var r = Check();
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stdout);
        Assert.That(r.Stdout, Does.Contain("results/table.md: fresh"));
    }

    [Test]
    public void Check_fails_naming_the_recipe_when_the_recipe_was_edited()
    {
        Record();
        File.WriteAllText(Path.Combine(dir, "recipe.yaml"), "lr: 3e-4\nmax_steps: 300\n");
        var r = Check();
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stdout, Does.Contain("results/table.md: STALE"));
        Assert.That(r.Stdout, Does.Contain("stale: recipe recipe.yaml changed since it was made"));
        Assert.That(r.Stdout, Does.Contain("regenerate: cd . && vlatune methods --out results"));
        TestContext.Progress.WriteLine(r.Stdout);
    }

    [Test]
    public void Check_fails_when_the_file_itself_a_model_file_or_the_code_changed()
    {
        Record();
        File.AppendAllText(Path.Combine(dir, "results", "table.md"), "| prompt | 0.075 |\n");
        Assert.That(Check().Stdout, Does.Contain("was changed after it was made"));
        Record();
        File.WriteAllText(Path.Combine(dir, "model", "config.json"), "{\"hidden\": 1}");
        Assert.That(Check().Stdout, Does.Contain("stale: model model changed"));
        Record();
        var path = Path.Combine(dir, "results", "table.md.provenance.json");
        var doc = JsonNode.Parse(File.ReadAllText(path))!;
        doc["code"]!["sources_sha256"] = new string('0', 64);
        File.WriteAllText(path, doc.ToJsonString());
        var r = Check();
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stdout, Does.Contain("stale: the code changed since it was made"));
        var relaxed = Check("--ignore-code");
        Assert.That(relaxed.ExitCode, Is.EqualTo(0));
        Assert.That(relaxed.Stdout, Does.Contain("note: the code changed"));
    }

    [Test]
    public void A_missing_or_broken_sidecar_is_stale_not_a_crash()
    {
        var r = Check();
        Assert.That(r.ExitCode, Is.EqualTo(1));
        Assert.That(r.Stdout, Does.Contain("no provenance file"));
        var rng = new Random(5);
        string path = Path.Combine(dir, "results", "table.md.provenance.json");
        Record();
        string good = File.ReadAllText(path);
        for (int i = 0; i < 40; i++)
        {
            var chars = good.ToCharArray();
            int cut = rng.Next(chars.Length);
            for (int k = 0; k < 3; k++) chars[rng.Next(chars.Length)] = "{}[]\":,0a"[rng.Next(9)];
            File.WriteAllText(path, new string(chars, 0, i % 2 == 0 ? cut : chars.Length));
            var c = Provenance.Check(Path.Combine(dir, "results", "table.md"));   // must not throw
            Assert.That(c.Fresh || c.Stale.Count > 0, Is.True);
        }
    }

    [Test]
    public void A_methods_table_records_its_inputs_and_goes_stale_when_its_recipe_is_edited()
    {
        var world = new TinyWorld(Path.Combine(dir, "world"), tunePairs: 2, valPairs: 2, testPairs: 8);
        string recipe = Path.Combine(dir, "default.yaml");
        File.Copy(Path.Combine(TinyWorld.RepoRoot(), "recipes", "default.yaml"), recipe);
        var r = CliRunner.Run(dir, "methods", "--model", world.Model, "--data", world.Manifest, "--suite", world.Suite, "--recipe", "default.yaml",
            "--out", "methods", "--bootstrap", "10", "--threads", "1", "--skip", "lora", "prompt", "steer", "prompt-engineering", "penalty");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        var doc = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "methods", "comparison.md.provenance.json")))!;
        Assert.That(doc["command"]!.GetValue<string>(), Does.StartWith("vlatune methods --model "));
        Assert.That(doc["inputs"]!.AsArray().Select(i => i!["kind"]!.GetValue<string>()), Is.EquivalentTo(new[] { "recipe", "model", "data", "suite", "words", "world" }));
        Assert.That(CliRunner.Run(dir, "provenance", "check", "methods/comparison.md").ExitCode, Is.EqualTo(0));

        File.AppendAllText(recipe, "# edited\nlr: 3e-4\n");
        var c = CliRunner.Run(dir, "provenance", "check", "methods/comparison.md");
        TestContext.Progress.WriteLine(c.Stdout);
        Assert.That(c.ExitCode, Is.EqualTo(1));
        Assert.That(c.Stdout, Does.Contain("stale: recipe default.yaml changed since it was made"));
        Assert.That(c.Stdout, Does.Contain("regenerate: cd . && vlatune methods --model"));
    }
}
