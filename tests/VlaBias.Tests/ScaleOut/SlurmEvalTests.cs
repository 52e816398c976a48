using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Tests.Cli;
using VlaBias.Tests.Training;

namespace VlaBias.Tests.ScaleOut;

/// <summary>
/// `vlatune eval --slurm --shards 4 --submit` on a real single-node SLURM (LocalSlurm): tiny-base on a few rendered
/// scenes, 4 array tasks and a merge job; the merged metrics equal an unsharded run's; a cancelled task is the only one
/// a second run resubmits. Also the seed sweep under SLURM (3 seeds of a short recipe) and its summary.
/// </summary>
[NonParallelizable]
public class SlurmEvalTests
{
    private LocalSlurm cluster = null!;
    private string dir = "";
    private TinyWorld world = null!;
    private string model = "", reference = "";

    [OneTimeSetUp]
    public void Start()
    {
        dir = TestPaths.NewTempDir("slurm-eval");
        world = new TinyWorld(dir, tunePairs: 8, valPairs: 4, testPairs: 8);
        model = Path.Combine(TinyWorld.RepoRoot(), "checkpoints/tiny-base");
        cluster = new LocalSlurm();
        reference = Path.Combine(dir, "unsharded");
        var r = CliRunner.Run(dir, ["eval", .. EvalArgs(reference), "--threads", "1"]);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
    }

    [OneTimeTearDown]
    public void Stop()
    {
        cluster?.Dispose();
        Directory.Delete(dir, true);
    }

    private string[] EvalArgs(string outDir) => ["--model", model, "--suite", world.Suite, "--bootstrap", "20", "--out", outDir];

    private string[] Sharded(string outDir, params string[] extra) => ["eval", .. EvalArgs(outDir), "--slurm", "--shards", "4", "--cpus-per-task", "1", .. extra];

    /// <summary>metrics.json without fields that measure time (a timing object, if the evaluator writes one).</summary>
    private static string Metrics(string d)
    {
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(d, "metrics.json")))!.AsObject();
        o.Remove("timing");
        return o.ToJsonString();
    }

    private static JsonArray Submissions(string outDir) => JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "slurm", "jobs.json")))!["submissions"]!.AsArray();

    [Test]
    public void Four_shards_through_sbatch_merge_to_the_unsharded_metrics()
    {
        string outDir = Path.Combine(dir, "sharded");
        var r = CliRunner.Run(dir, Sharded(outDir, "--submit", "--wait"));
        TestContext.Progress.WriteLine(r.Stdout);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stdout + r.Stderr + cluster.Logs());
        Assert.That(r.Stdout, Does.Match(@"submitted array job \d+: shard 1/4, shard 2/4, shard 3/4, shard 4/4"));
        Assert.That(r.Stdout, Does.Match(@"submitted merge job \d+ \(after array job \d+ succeeds\)"));
        Assert.That(Metrics(outDir), Is.EqualTo(Metrics(reference)), "merged metrics.json must equal the unsharded run's, value for value");
        Assert.That(File.ReadAllText(Path.Combine(outDir, "samples.jsonl")), Is.EqualTo(File.ReadAllText(Path.Combine(reference, "samples.jsonl"))));
        var job = Submissions(outDir)[0]!["array_job"]!.GetValue<string>();
        for (int k = 0; k < 4; k++)
        {
            var log = Path.Combine(outDir, "slurm", "logs", $"eval-{job}_{k}.out");
            Assert.That(File.Exists(log), Is.True, log);
            Assert.That(File.ReadAllText(log), Does.Contain($"shard {k + 1}/4"), "each task ran its own shard");
        }
        // Everything is done: running the command again submits nothing.
        var again = CliRunner.Run(dir, Sharded(outDir, "--submit"));
        Assert.That(again.ExitCode, Is.EqualTo(0), again.Stderr);
        Assert.That(again.Stdout, Does.Contain("nothing to run"));
        Assert.That(Submissions(outDir).Count, Is.EqualTo(1));
    }

    [Test]
    public void A_cancelled_task_is_the_only_shard_run_again_and_the_merge_is_the_same()
    {
        string outDir = Path.Combine(dir, "cancelled");
        var first = CliRunner.Run(dir, Sharded(outDir, "--submit"));
        Assert.That(first.ExitCode, Is.EqualTo(0), first.Stderr + cluster.Logs());
        string job = Submissions(outDir)[0]!["array_job"]!.GetValue<string>();
        // Two cores, one core per task: tasks 0 and 1 run, 2 and 3 wait; cancel task 3 (shard 4/4) while it waits.
        LocalSlurm.Run("scancel", $"{job}_3");
        cluster.WaitForEmptyQueue(TimeSpan.FromMinutes(5));
        Assert.That(File.Exists(Path.Combine(outDir, "shards", "4-of-4", "shard.json")), Is.False, "the cancelled shard has no result");
        Assert.That(File.Exists(Path.Combine(outDir, "metrics.json")), Is.False, "the merge must not run when a shard is missing");
        var stamps = Enumerable.Range(1, 3).Select(i => File.GetLastWriteTimeUtc(Path.Combine(outDir, "shards", $"{i}-of-4", "samples.jsonl"))).ToList();

        var merge = CliRunner.Run(dir, ["eval", "merge", .. Enumerable.Range(1, 3).Select(i => Path.Combine(outDir, "shards", $"{i}-of-4")), "--out", Path.Combine(dir, "partial")]);
        Assert.That(merge.ExitCode, Is.EqualTo(2));
        Assert.That(merge.Stderr, Does.Contain("shard 4/4 missing"));

        var second = CliRunner.Run(dir, Sharded(outDir, "--submit", "--wait"));
        TestContext.Progress.WriteLine($"after scancel {job}_3:\n{string.Join("\n", second.Stderr.Split('\n').Where(l => l.StartsWith("eval:")))}\n{second.Stdout}");
        Assert.That(second.ExitCode, Is.EqualTo(0), second.Stdout + second.Stderr + cluster.Logs());
        Assert.That(second.Stderr, Does.Contain("3 of 4 shards done, 1 to run"));
        Assert.That(second.Stdout, Does.Match(@"submitted array job \d+: shard 4/4 \("));
        var subs = Submissions(outDir);
        Assert.That(subs.Count, Is.EqualTo(2));
        Assert.That(subs[1]!["tasks"]!.AsArray().Select(t => t!.GetValue<int>()), Is.EqualTo(new[] { 3 }), "only task 3 (shard 4/4) is resubmitted");
        Assert.That(Enumerable.Range(1, 3).Select(i => File.GetLastWriteTimeUtc(Path.Combine(outDir, "shards", $"{i}-of-4", "samples.jsonl"))), Is.EqualTo(stamps),
            "the finished shards are not run again");
        Assert.That(Metrics(outDir), Is.EqualTo(Metrics(reference)));
    }

    [Test]
    public void Three_seed_sweep_on_slurm_writes_the_summary()
    {
        string runs = Path.Combine(dir, "runs");
        var r = CliRunner.Run(dir, "tune", "--recipe", Path.Combine(TinyWorld.RepoRoot(), "recipes/default.yaml"), "--model", model, "--data", world.Manifest,
            "--suite", world.Suite, "--runs-dir", runs, "--name", "sweep", "--max-steps", "4", "--eval-every", "2", "--save-every", "2",
            "--pairs-per-step", "4", "--probes-per-pair", "2", "--retain-per-step", "4", "--test-bootstrap", "20", "--threshold", "0.05", "--lr", "1e-3",
            "--seeds", "0,1,2", "--slurm", "--cpus-per-task", "1", "--submit", "--wait");
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stdout + r.Stderr + cluster.Logs());
        Assert.That(r.Stdout, Does.Match(@"submitted array job \d+: seed 0, seed 1, seed 2"));
        string sweep = Path.Combine(runs, "sweep");
        var md = File.ReadAllText(Path.Combine(sweep, "summary.md"));
        TestContext.Progress.WriteLine(md);
        Assert.That(md, Does.Contain("3 runs, seeds 0, 1, 2"));
        Assert.That(md, Does.Match(@"Threshold reached: \*\*\d of 3\*\* seeds"));
        Assert.That(File.Exists(Path.Combine(sweep, "summary.md.provenance.json")), Is.True);

        // The summary's figures are the mean and sample sd of the three runs' own metrics.json.
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(sweep, "summary.json")))!;
        var values = Enumerable.Range(0, 3).Select(s => JsonNode.Parse(File.ReadAllText(Path.Combine(sweep, $"seed-{s}", "eval", "tuned", "metrics.json")))!
            ["metrics"]!["pairwise_probe_gap.train"]!["value"]!.GetValue<double>()).ToArray();
        double mean = values.Average(), sd = Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / 2);
        var fig = summary["figures"]!["pairwise_probe_gap.train"]!;
        Assert.That(fig["per_seed"]!.AsArray().Select(v => v!.GetValue<double>()), Is.EqualTo(values).Within(1e-6));
        Assert.That(fig["mean"]!.GetValue<double>(), Is.EqualTo(mean).Within(1e-6));
        Assert.That(fig["sd"]!.GetValue<double>(), Is.EqualTo(sd).Within(1e-6));
        Assert.That(values.Distinct().Count(), Is.GreaterThan(1), "different seeds give different runs");
        // The residual-bias count agrees with each run's own significance count where every significant attribute is stereotyped or not.
        foreach (var run in summary["runs"]!.AsArray())
        {
            var res = run!["residual"]!;
            int seed = run["seed"]!.GetValue<int>();
            var m = JsonNode.Parse(File.ReadAllText(Path.Combine(sweep, $"seed-{seed}", "eval", "tuned", "metrics.json")))!;
            Assert.That(res["significant"]!.GetValue<int>(), Is.EqualTo((int)m["metrics"]!["group_gap.significant_count"]!["value"]!.GetValue<double>()),
                "the same permutation test as metrics.json");
            Assert.That(res["significant_stereotyped"]!.GetValue<int>(), Is.LessThanOrEqualTo(res["significant"]!.GetValue<int>()));
        }

        // `runs summarize` makes the same summary from the finished runs.
        var again = CliRunner.Run(dir, ["runs", "summarize", .. Enumerable.Range(0, 3).Select(s => Path.Combine(sweep, $"seed-{s}")), "--out", Path.Combine(dir, "summary2")]);
        Assert.That(again.ExitCode, Is.EqualTo(0), again.Stderr);
        var s2 = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "summary2", "summary.json")))!;
        Assert.That(s2["figures"]!.ToJsonString(), Is.EqualTo(summary["figures"]!.ToJsonString()));
    }
}
