using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Tests.Cli;
using VlaBias.Tests.Training;

namespace VlaBias.Tests.ScaleOut;

/// <summary>`vlatune tune --seeds` without SLURM: the seeds one after another, the summary, and a rerun that skips finished seeds.</summary>
public class SeedSweepTests
{
    private string dir = "";
    private TinyWorld world = null!;

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("sweep");
        world = new TinyWorld(dir, tunePairs: 4, valPairs: 2, testPairs: 4);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private string[] Args(params string[] extra) =>
    [
        "tune", "--recipe", Path.Combine(TinyWorld.RepoRoot(), "recipes/default.yaml"), "--model", world.Model, "--data", world.Manifest, "--suite", world.Suite,
        "--runs-dir", Path.Combine(dir, "runs"), "--name", "sweep", "--max-steps", "2", "--eval-every", "2", "--lr", "1e-3",
        "--pairs-per-step", "2", "--probes-per-pair", "2", "--retain-per-step", "2", "--test-bootstrap", "10", "--threads", "1", .. extra,
    ];

    [Test]
    public void Seeds_run_one_after_another_and_a_rerun_skips_the_finished_ones()
    {
        var r = CliRunner.Run(dir, Args("--seeds", "3,5"));
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        string sweep = Path.Combine(dir, "runs", "sweep");
        foreach (var s in new[] { 3, 5 })
        {
            Assert.That(File.Exists(Path.Combine(sweep, $"seed-{s}", "eval", "tuned", "metrics.json")), Is.True);
            Assert.That(File.ReadAllText(Path.Combine(sweep, $"seed-{s}", "config.yaml")), Does.Contain($"seed: {s}\n"), "each run has its own seed");
        }
        Assert.That(r.Stdout, Does.Contain("# Seed sweep: 2 runs, seeds 3, 5"));
        Assert.That(r.Stdout, Does.Match(@"Threshold reached: \*\*\d of 2\*\*"));
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(sweep, "summary.json")))!;
        Assert.That(summary["figures"]!["cider_d"]!["per_seed"]!.AsArray().Count, Is.EqualTo(2));
        var prov = JsonNode.Parse(File.ReadAllText(Path.Combine(sweep, "summary.md.provenance.json")))!;
        Assert.That(prov["command"]!.GetValue<string>(), Does.Contain("--seeds 3,5"));
        Assert.That(prov["inputs"]!.AsArray().Select(i => i!["kind"]!.GetValue<string>()), Is.SupersetOf(new[] { "recipe", "model", "data", "suite" }));
        var check = CliRunner.Run(dir, "provenance", "check", Path.Combine(sweep, "summary.md"));
        Assert.That(check.ExitCode, Is.EqualTo(0), check.Stdout);

        long stamp = File.GetLastWriteTimeUtc(Path.Combine(sweep, "seed-3", "trainer_state.json")).Ticks;
        var again = CliRunner.Run(dir, Args("--seeds", "3,5,7"));
        Assert.That(again.ExitCode, Is.EqualTo(0), again.Stderr);
        Assert.That(again.Stderr, Does.Contain("seed 3: done already"));
        Assert.That(again.Stderr, Does.Contain("seed 7: training"));
        Assert.That(File.GetLastWriteTimeUtc(Path.Combine(sweep, "seed-3", "trainer_state.json")).Ticks, Is.EqualTo(stamp));
        Assert.That(again.Stdout, Does.Contain("3 runs, seeds 3, 5, 7"));
    }

    [Test]
    public void Sweep_options_that_cannot_work_are_bad_input()
    {
        Assert.That(CliRunner.Run(dir, Args("--seeds", "1,1")).ExitCode, Is.EqualTo(2));
        var noEval = CliRunner.Run(dir, Args("--seeds", "1", "--final-eval", "false"));
        Assert.That(noEval.ExitCode, Is.EqualTo(2));
        Assert.That(noEval.Stderr, Does.Contain("final_eval"));
        var slurm = CliRunner.Run(dir, Args("--slurm"));
        Assert.That(slurm.ExitCode, Is.EqualTo(2));
        Assert.That(slurm.Stderr, Does.Contain("--slurm: give --seeds"));
    }
}
