using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Tests.Cli;
using VlaBias.Evaluation;
using VlaBias.Tests.Training;

namespace VlaBias.Tests.Evaluation;

/// <summary>`vlatune eval --shard i/n` + `eval merge` equals an unsharded run; so do pieces answered on two threads (EvalPieces);
/// an interrupted run continues from its cache.</summary>
public class ShardAndCacheTests
{
    private string dir = "";
    private TinyWorld world = null!;

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("shard");
        world = new TinyWorld(dir, tunePairs: 2, valPairs: 2, testPairs: 8);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private CliRunner.Result Eval(string outDir, params string[] extra) =>
        CliRunner.Run(dir, ["eval", "--model", world.Model, "--suite", world.Suite, "--out", outDir, "--threads", "1", .. extra]);

    private static string Metrics(string d) => JsonNode.Parse(File.ReadAllText(Path.Combine(d, "metrics.json")))!["metrics"]!.ToJsonString();

    [Test]
    public void Sharded_evaluation_merged_gives_the_same_metrics_as_an_unsharded_run()
    {
        string all = Path.Combine(dir, "all"), s1 = Path.Combine(dir, "s1"), s2 = Path.Combine(dir, "s2"), merged = Path.Combine(dir, "merged");
        Assert.That(Eval(all).ExitCode, Is.EqualTo(0));
        var r1 = Eval(s1, "--shard", "1/2");
        var r2 = Eval(s2, "--shard", "2/2");
        Assert.That(r1.ExitCode, Is.EqualTo(0), r1.Stderr);
        Assert.That(r2.ExitCode, Is.EqualTo(0), r2.Stderr);
        Assert.That(File.Exists(Path.Combine(s1, "metrics.json")), Is.False, "a shard alone has no metrics");
        var m = CliRunner.Run(dir, "eval", "merge", s1, s2, "--out", merged);
        Assert.That(m.ExitCode, Is.EqualTo(0), m.Stderr);
        Assert.That(Metrics(merged), Is.EqualTo(Metrics(all)));
        Assert.That(File.ReadAllText(Path.Combine(merged, "samples.jsonl")), Is.EqualTo(File.ReadAllText(Path.Combine(all, "samples.jsonl"))));
        var missing = CliRunner.Run(dir, "eval", "merge", s1, "--out", Path.Combine(dir, "bad"));
        Assert.That(missing.ExitCode, Is.EqualTo(2), "merging only some shards is bad input");
    }

    [Test]
    public void Metrics_json_times_the_model_the_statistics_and_the_reports()
    {
        string s1 = Path.Combine(dir, "t1"), s2 = Path.Combine(dir, "t2"), merged = Path.Combine(dir, "t-merged");
        Assert.That(Eval(s1, "--shard", "1/2", "--no-cache").ExitCode, Is.EqualTo(0));
        Assert.That(Eval(s2, "--shard", "2/2", "--no-cache").ExitCode, Is.EqualTo(0));
        var m = CliRunner.Run(dir, "eval", "merge", s1, s2, "--out", merged);
        Assert.That(m.ExitCode, Is.EqualTo(0), m.Stderr);
        double ShardModel(string d) => JsonNode.Parse(File.ReadAllText(Path.Combine(d, "shard.json")))!["model_s"]!.GetValue<double>();
        var timing = JsonNode.Parse(File.ReadAllText(Path.Combine(merged, "metrics.json")))!["timing"]!;
        Assert.That(ShardModel(s1), Is.GreaterThan(0), "a shard that answered its prompts took time");
        Assert.That(timing["model_s"]!.GetValue<double>(), Is.EqualTo(ShardModel(s1) + ShardModel(s2)).Within(1e-6), "merged: the shards' model time");
        Assert.That(timing["statistics_s"]!.GetValue<double>(), Is.GreaterThan(0));
        Assert.That(timing["reports_s"]!.GetValue<double>(), Is.GreaterThan(0));
    }

    [Test]
    public void Interrupted_evaluation_continues_from_its_cache()
    {
        string full = Path.Combine(dir, "full"), cut = Path.Combine(dir, "cut");
        Assert.That(Eval(full).ExitCode, Is.EqualTo(0));
        // Simulate a kill: the cache holds the first half of the results and a line cut short.
        var lines = File.ReadAllLines(Path.Combine(full, "cache.jsonl"));
        Directory.CreateDirectory(cut);
        File.WriteAllText(Path.Combine(cut, "cache.jsonl"), string.Join("\n", lines.Take(lines.Length / 2)) + "\n" + lines[lines.Length / 2][..20]);
        var r = Eval(cut);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        Assert.That(Metrics(cut), Is.EqualTo(Metrics(full)));
        // A rerun answers nothing anew: the cache does not grow.
        long before = new FileInfo(Path.Combine(cut, "cache.jsonl")).Length;
        Assert.That(Eval(cut).ExitCode, Is.EqualTo(0));
        Assert.That(new FileInfo(Path.Combine(cut, "cache.jsonl")).Length, Is.EqualTo(before));
    }

    [Test]
    public void Pieces_answered_by_two_models_on_two_threads_give_the_outputs_of_one_call()
    {
        int before = TorchSharp.torch.get_num_threads();
        try
        {
            TorchSharp.torch.set_num_threads(1);
            var suite = VlaBias.Evaluation.Suite.Load(world.Suite);
            var one = Vla.Load(world.Model);
            var other = Vla.Load(world.Model);
            string whole = Path.Combine(dir, "p-whole"), split = Path.Combine(dir, "p-split");
            var a = EvalRunner.Run(one, new EvalRequest(world.Model, null, suite, whole, Shard.All));
            using (var pieces = EvalPieces.Open(one, new EvalRequest(world.Model, null, suite, split, Shard.All), 3))
            {
                Assert.Throws<InvalidOperationException>(() => pieces.Finish(), "nothing collected yet");
                var second = new Thread(() => { TorchSharp.torch.set_num_threads(1); pieces.Collect(other, 2); });
                second.Start();
                pieces.Collect(one, 3);
                pieces.Collect(one, 1);
                second.Join();
                var b = pieces.Finish();
                Assert.That(b.Samples, Is.EqualTo(a.Samples));
                Assert.That(pieces.ModelSeconds, Is.GreaterThan(0));
            }
            Assert.That(File.ReadAllText(Path.Combine(split, "samples.jsonl")), Is.EqualTo(File.ReadAllText(Path.Combine(whole, "samples.jsonl"))));
            Assert.That(Metrics(split), Is.EqualTo(Metrics(whole)));
            // Both threads appended to one cache: every line whole, every sample once.
            var cached = File.ReadAllLines(Path.Combine(split, "cache.jsonl")).Where(l => l.Length > 0).ToList();
            Assert.That(cached.Select(l => JsonNode.Parse(l)!["Sample"]!.ToJsonString()).Distinct().Count(), Is.EqualTo(a.Samples));
            Assert.That(cached, Has.Count.EqualTo(a.Samples));
        }
        finally { TorchSharp.torch.set_num_threads(before); }
    }
}
