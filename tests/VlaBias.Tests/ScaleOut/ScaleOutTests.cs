using VlaBias.Data;
using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Evaluation;
using VlaBias.ScaleOut;
using VlaBias.Tests.Cli;

namespace VlaBias.Tests.ScaleOut;

/// <summary>Script writing, shard planning, merge checks, seed lists and residual bias, without a cluster.</summary>
public class ScaleOutTests
{
    private string dir = "";

    [SetUp] public void Make() => dir = TestPaths.NewTempDir("scaleout");
    [TearDown] public void Clean() => Directory.Delete(dir, true);

    [Test]
    public void Shell_quoting_keeps_arguments_whole_and_expands_only_marked_words()
    {
        Assert.That(SlurmScript.Quote("--model"), Is.EqualTo("--model"));
        Assert.That(SlurmScript.Quote("it's a $HOME `x`"), Is.EqualTo("'it'\\''s a $HOME `x`'"));
        Assert.That(SlurmScript.Quote(""), Is.EqualTo("''"));
        Assert.That(SlurmScript.Quote(SlurmScript.Expand("${SHARD}/4")), Is.EqualTo("\"${SHARD}/4\""));
        // What bash makes of the quoted words is the original arguments.
        var args = new[] { "a b", "it's", "$HOME", "x\"y", "ü" };
        var echo = LocalSlurm.Run("bash", "-c", "printf '%s\\n' " + string.Join(' ', args.Select(SlurmScript.Quote)));
        Assert.That(echo.TrimEnd('\n').Split('\n'), Is.EqualTo(args));
    }

    [Test]
    public void Array_specs_join_consecutive_tasks() =>
        Assert.That(SlurmScript.ArraySpec([0, 1, 2, 3, 5, 7, 8]), Is.EqualTo("0-3,5,7-8"));

    [Test]
    public void Seed_lists_and_ranges_parse_and_duplicates_are_bad_input()
    {
        Assert.That(SeedSweep.ParseSeeds("0,1,2,3,4"), Is.EqualTo(new long[] { 0, 1, 2, 3, 4 }));
        Assert.That(SeedSweep.ParseSeeds("0-2, 7"), Is.EqualTo(new long[] { 0, 1, 2, 7 }));
        Assert.Throws<BadInputException>(() => SeedSweep.ParseSeeds("0,1,1"));
        Assert.Throws<BadInputException>(() => SeedSweep.ParseSeeds("a"));
        Assert.Throws<BadInputException>(() => SeedSweep.ParseSeeds(""));
    }

    private static readonly ShardExpectation Expect = new("id1", "suite.yaml", "test", 20, null);

    private void FakeShard(string outDir, int i, int n, ShardExpectation e, string samples = "")
    {
        var d = ShardedEval.ShardDir(outDir, i, n);
        Directory.CreateDirectory(d);
        File.WriteAllText(Path.Combine(d, "samples.jsonl"), samples);
        File.WriteAllText(Path.Combine(d, "shard.json"), new JsonObject
        {
            ["index"] = i, ["count"] = n, ["model"] = "m", ["adapter"] = null, ["suite"] = e.Suite, ["split"] = e.Split, ["n_items"] = 10,
            ["identity"] = e.Identity, ["bootstrap"] = e.Bootstrap, ["limit"] = e.Limit,
        }.ToJsonString());
    }

    private ShardedEvalRequest Request(string outDir) =>
        new(outDir, 4, ["--model", "m", "--prompt-prefix", "a 'b'"], Expect, new SlurmResources(Partition: "cpu", Gres: "gpu:1", CpusPerTask: 2),
            new VlatuneLauncher(["/usr/bin/dotnet", "/opt/vlatune/vlatune.dll"], "/work"));

    [Test]
    public void A_second_plan_runs_only_the_shards_without_a_matching_result()
    {
        string outDir = Path.Combine(dir, "e");
        var plan = ShardedEval.Plan(Request(outDir));
        Assert.That(plan.Missing, Is.EqualTo(new[] { 0, 1, 2, 3 }));
        Assert.That(plan.ArrayText, Does.Contain("#SBATCH --array=0-3"));
        Assert.That(plan.ArrayText, Does.Contain("#SBATCH --gres=gpu:1"));
        Assert.That(plan.ArrayText, Does.Contain("#SBATCH --chdir=/work"));
        Assert.That(plan.ArrayText, Does.Contain("exec /usr/bin/dotnet /opt/vlatune/vlatune.dll eval --model m --prompt-prefix 'a '\\''b'\\''' --out \"" + outDir + "/shards/${SHARD}-of-4\" --shard \"${SHARD}/4\" --threads \"${SLURM_CPUS_PER_TASK:-0}\""));
        Assert.That(plan.FollowText, Does.Not.Contain("--gres"), "the merge needs no accelerator");
        Assert.That(plan.FollowText, Does.Contain("eval merge " + string.Join(' ', Enumerable.Range(1, 4).Select(i => $"{outDir}/shards/{i}-of-4")) + $" --out {outDir}"));
        Assert.That(plan.SubmitCommands().Last(), Does.Contain("--dependency=afterok:$jid"));

        FakeShard(outDir, 1, 4, Expect);
        FakeShard(outDir, 3, 4, Expect);
        FakeShard(outDir, 4, 4, Expect with { Bootstrap = 1000 });   // made with other settings: redone
        plan = ShardedEval.Plan(Request(outDir));
        Assert.That(plan.Missing, Is.EqualTo(new[] { 1, 3 }));
        Assert.That(plan.ArrayText, Does.Contain("#SBATCH --array=1,3"));
        Assert.That(File.ReadAllText(plan.ArrayScript), Is.EqualTo(plan.ArrayText));
        Assert.That(plan.Notes, Has.Some.Contains("shard 4/4 was made with other settings"));
        // bash accepts the script
        Assert.That(LocalSlurm.Run("bash", "-n", plan.ArrayScript), Is.Empty);
    }

    [Test]
    public void Bad_slurm_values_and_paths_are_bad_input()
    {
        Assert.Throws<BadInputException>(() => new SlurmResources(Partition: "a b").Validated());
        Assert.Throws<BadInputException>(() => new SlurmResources(Time: "1:00\n#SBATCH --x").Validated());
        Assert.Throws<BadInputException>(() => new SlurmResources(CpusPerTask: 0).Validated());
        Assert.Throws<BadInputException>(() => ShardedEval.Plan(Request(Path.Combine(dir, "with blank"))));
        Assert.Throws<BadInputException>(() => ShardedEval.Plan(Request(Path.Combine(dir, "e")) with { Shards = 1 }));
    }

    [Test]
    public void Merge_names_the_missing_and_the_duplicated_shard()
    {
        string a = Path.Combine(dir, "a"), b = Path.Combine(dir, "b");
        FakeShard(a, 1, 4, Expect);
        FakeShard(a, 2, 4, Expect);
        FakeShard(b, 2, 4, Expect);
        FakeShard(a, 4, 4, Expect);
        var e = Assert.Throws<BadInputException>(() => EvalRunner.Merge(
            [ShardedEval.ShardDir(a, 1, 4), ShardedEval.ShardDir(a, 2, 4), ShardedEval.ShardDir(b, 2, 4), ShardedEval.ShardDir(a, 4, 4)], Path.Combine(dir, "m")))!;
        Assert.That(e.Message, Does.Contain("shard 2/4 given 2 times"));
        Assert.That(e.Message, Does.Contain("shard 3/4 missing"));
        FakeShard(b, 3, 4, Expect with { Identity = "other" });
        e = Assert.Throws<BadInputException>(() => EvalRunner.Merge(
            [ShardedEval.ShardDir(a, 1, 4), ShardedEval.ShardDir(a, 2, 4), ShardedEval.ShardDir(b, 3, 4), ShardedEval.ShardDir(a, 4, 4)], Path.Combine(dir, "m")))!;
        Assert.That(e.Message, Does.Contain("field 'identity'"));
        Assert.That(Directory.Exists(Path.Combine(dir, "m")), Is.False, "nothing is written for a refused merge");
    }

    [Test]
    public void Merge_refuses_a_folder_that_is_not_a_finished_shard_with_exit_2()
    {
        Directory.CreateDirectory(Path.Combine(dir, "x"));
        File.WriteAllText(Path.Combine(dir, "x", "shard.json"), "{\"index\": ");
        var r = CliRunner.Run(dir, "eval", "merge", Path.Combine(dir, "x"), "--out", Path.Combine(dir, "m"));
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr, Does.Contain("shard.json: not a shard description"));
    }

    private static Sample Probe(string attr, string gender, string pair, double pYes) => new()
    {
        Id = $"{pair}-{gender}", Kind = SampleKind.Probe, Prompt = $"is the person {attr}?", Options = ["yes", "no"], Probs = [pYes, 1 - pYes],
        Attribute = attr, AttributeSplit = Split.Train, Gender = gender == "woman" ? Gender.Woman : Gender.Man, Pair = pair,
    };

    [Test]
    public void Residual_bias_counts_significant_gaps_in_the_stereotyped_direction()
    {
        var rng = new Random(3);
        var samples = new List<Sample>();
        for (int p = 0; p < 40; p++)
        {
            double n() => rng.NextDouble() * 0.02;
            // caring leans woman and keeps a clear woman-high gap; strong leans man and keeps a man-high gap;
            // calm leans woman but its (significant) gap goes the other way; tidy has no gap.
            samples.Add(Probe("caring", "woman", $"p{p}", 0.60 + n())); samples.Add(Probe("caring", "man", $"p{p}", 0.50 + n()));
            samples.Add(Probe("strong", "woman", $"p{p}", 0.40 + n())); samples.Add(Probe("strong", "man", $"p{p}", 0.50 + n()));
            samples.Add(Probe("calm", "woman", $"p{p}", 0.40 + n())); samples.Add(Probe("calm", "man", $"p{p}", 0.50 + n()));
            double t = 0.5 + n();
            samples.Add(Probe("tidy", "woman", $"p{p}", t)); samples.Add(Probe("tidy", "man", $"p{p}", t));
        }
        var leans = new Dictionary<string, string> { ["caring"] = "woman", ["strong"] = "man", ["calm"] = "woman", ["tidy"] = "woman" };
        var r = ResidualBias.Compute(samples, null, leans, seed: 0);
        Assert.That(r.Count, Is.EqualTo(4));
        Assert.That(r.Attributes.Single(a => a.Attribute == "caring").Stereotyped, Is.True);
        Assert.That(r.Attributes.Single(a => a.Attribute == "strong").Stereotyped, Is.True);
        Assert.That(r.Attributes.Single(a => a.Attribute == "calm").Stereotyped, Is.False);
        Assert.That(r.Significant, Is.EqualTo(3));
        Assert.That(r.SignificantStereotyped, Is.EqualTo(2));
        Assert.That(r.SignificantAgainst, Is.EqualTo(1));
        Assert.That(r.Verdict, Does.StartWith("Less biased, not unbiased: 2 of 4 probe attributes keep a significant gap in the stereotyped direction"));

        // Without a lean in the world, the base model's direction decides.
        var baseline = samples.Select(s => s with { Probs = s.Attribute == "calm" ? [s.Gender == Gender.Woman ? 0.3 : 0.9, 0.5] : s.Probs }).ToList();
        var r2 = ResidualBias.Compute(samples, baseline, new Dictionary<string, string>(), seed: 0);
        Assert.That(r2.Attributes.Single(a => a.Attribute == "calm").Lean, Is.EqualTo("man"));
        Assert.That(r2.Attributes.Single(a => a.Attribute == "calm").Stereotyped, Is.True);

        var none = ResidualBias.Compute(samples.Where(s => s.Attribute == "tidy").ToList(), null, leans, 0);
        Assert.That(none.Verdict, Does.StartWith("No probe attribute keeps a significant gap"));
    }

    [Test]
    public void Summarize_reports_every_folder_that_is_not_a_finished_run()
    {
        Directory.CreateDirectory(Path.Combine(dir, "half"));
        File.WriteAllText(Path.Combine(dir, "half", "trainer_state.json"), "{}");
        var r = CliRunner.Run(dir, "runs", "summarize", Path.Combine(dir, "half"), Path.Combine(dir, "nope"));
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr, Does.Contain("half: no test-split evaluation"));
        Assert.That(r.Stderr, Does.Contain("nope: run folder not found"));
    }
}
