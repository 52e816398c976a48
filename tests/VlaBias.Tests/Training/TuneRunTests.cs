using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Tests.Cli;

namespace VlaBias.Tests.Training;

/// <summary>The real `vlatune tune` on a tiny world: run folder contents, and kill -9 + --resume determinism.</summary>
public class TuneRunTests
{
    private string dir = "";
    private TinyWorld world = null!;

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("tune");
        world = new TinyWorld(dir);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private string[] Args(string runs, string name, int maxSteps, params string[] extra) =>
    [
        "tune", "--recipe", Path.Combine(TinyWorld.RepoRoot(), "recipes/default.yaml"), "--model", world.Model, "--data", world.Manifest, "--suite", world.Suite, "--runs-dir", runs, "--name", name,
        "--max-steps", maxSteps.ToString(), "--eval-every", "4", "--save-every", "2", "--lr", "1e-3", "--threshold", "0",
        "--pairs-per-step", "4", "--probes-per-pair", "2", "--retain-per-step", "4", "--lora-dropout", "0.1", "--threads", "1", .. extra,
    ];

    private static string Hash(string file) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));

    [Test]
    public void Tune_writes_a_run_folder_with_adapter_state_evaluations_and_comparison()
    {
        var runs = Path.Combine(dir, "runs-a");
        var baseHash = Hash(Path.Combine(world.Model, "model.safetensors"));
        var r = CliRunner.Run(dir, Args(runs, "full", 8, "--test-bootstrap", "20"));
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        var run = Path.Combine(runs, "full");
        foreach (var f in new[] { "adapter_config.json", "adapter_model.safetensors", "trainer_state.json", "config.yaml", "comparison.md",
                     "log.jsonl", "eval/base/metrics.json", "eval/tuned/metrics.json", "eval/tuned/samples.jsonl", "eval/tuned/report.md" })
            Assert.That(File.Exists(Path.Combine(run, f)), Is.True, f);
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "trainer_state.json")))!;
        Assert.That(state["steps"]!.GetValue<long>(), Is.EqualTo(8));
        Assert.That(state["stop_reason"]!.GetValue<string>(), Does.Contain("max_steps"));
        Assert.That(state["evaluations"]!.AsArray().Select(e => e!["step"]!.GetValue<long>()), Is.EqualTo(new long[] { 4, 8 }));
        Assert.That(Hash(Path.Combine(world.Model, "model.safetensors")), Is.EqualTo(baseHash), "the base checkpoint must stay bit-identical");
        Assert.That(r.Stdout, Does.Contain("stopped: max_steps reached"));
        Assert.That(new FileInfo(Path.Combine(runs, "latest")).LinkTarget, Is.EqualTo("full"));
    }

    [Test]
    public void Killed_run_resumes_and_ends_with_the_same_adapter_as_an_uninterrupted_run()
    {
        var runs = Path.Combine(dir, "runs-b");
        var straight = CliRunner.Run(dir, Args(runs, "straight", 12, "--final-eval", "false"));
        Assert.That(straight.ExitCode, Is.EqualTo(0), straight.Stderr);

        // Start the same run, kill -9 it once a checkpoint past step 4 exists, then resume.
        var dll = Path.Combine(AppContext.BaseDirectory, "vlatune.dll");
        var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = dir, RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(dll);
        foreach (var arg in Args(runs, "killed", 12, "--final-eval", "false")) psi.ArgumentList.Add(arg);
        using (var p = Process.Start(psi)!)
        {
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine(); p.BeginErrorReadLine();
            var stateFile = Path.Combine(runs, "killed", "_checkpoint", "state.json");
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < TimeSpan.FromMinutes(5) && !p.HasExited)
            {
                try
                {
                    if (File.Exists(stateFile) && JsonNode.Parse(File.ReadAllText(stateFile))!["step"]!.GetValue<long>() >= 6) break;
                }
                catch (Exception e) when (e is IOException or System.Text.Json.JsonException) { }
                Thread.Sleep(20);
            }
            Assert.That(p.HasExited, Is.False, "the run ended before it could be killed");
            p.Kill(entireProcessTree: true);   // SIGKILL
            p.WaitForExit();
        }
        Assert.That(File.Exists(Path.Combine(runs, "killed", "trainer_state.json")), Is.False, "a killed run has no final state");
        var resumed = CliRunner.Run(dir, Args(runs, "killed", 12, "--final-eval", "false", "--resume"));
        Assert.That(resumed.ExitCode, Is.EqualTo(0), resumed.Stderr);
        Assert.That(resumed.Stderr, Does.Contain("resumed at step"));
        Assert.That(Hash(Path.Combine(runs, "killed", "adapter_model.safetensors")), Is.EqualTo(Hash(Path.Combine(runs, "straight", "adapter_model.safetensors"))));
        var a = JsonNode.Parse(File.ReadAllText(Path.Combine(runs, "straight", "trainer_state.json")))!["evaluations"]!.ToJsonString();
        var b = JsonNode.Parse(File.ReadAllText(Path.Combine(runs, "killed", "trainer_state.json")))!["evaluations"]!.ToJsonString();
        Assert.That(b, Is.EqualTo(a));
    }

    [Test]
    public void Resuming_a_run_that_reached_its_threshold_goes_to_the_end_instead_of_training_on()
    {
        var runs = Path.Combine(dir, "runs-c");
        // Threshold 1: the first evaluation that passes the accuracy guard stops the run; its checkpoint is written at that step.
        string[] Stop(params string[] extra)
        {
            var args = Args(runs, "reached", 40, [.. extra, "--final-eval", "false"]);
            args[Array.IndexOf(args, "--threshold") + 1] = "1";
            return args;
        }
        var first = CliRunner.Run(dir, Stop());
        Assert.That(first.ExitCode, Is.EqualTo(0), first.Stderr);
        var steps = System.Text.RegularExpressions.Regex.Match(first.Stdout, @"steps: (\d+),").Groups[1].Value;
        Assert.That(int.Parse(steps), Is.LessThan(40), first.Stdout);
        var resumed = CliRunner.Run(dir, Stop("--resume"));
        Assert.That(resumed.ExitCode, Is.EqualTo(0), resumed.Stderr);
        Assert.That(resumed.Stdout, Does.Contain($"steps: {steps},"), "a resumed run that had reached its threshold trained on");
        Assert.That(resumed.Stdout, Does.Contain("stopped: validation pairwise probe gap"));
    }

    [Test]
    public void Gradient_checkpointing_trains_the_same_adapter_and_is_off_on_auto_for_a_small_model()
    {
        var runs = Path.Combine(dir, "runs-gc");
        string[] Run(string name, string mode)
        {
            var args = Args(runs, name, 4, "--final-eval", "false", "--gradient-checkpointing", mode, "--verbose");
            args[Array.IndexOf(args, "--lora-dropout") + 1] = "0";   // dropout masks differ on recomputation
            return args;
        }
        var off = CliRunner.Run(dir, Run("auto", "auto"));
        Assert.That(off.ExitCode, Is.EqualTo(0), off.Stderr);
        Assert.That(off.Stderr + off.Stdout, Does.Contain("gradient checkpointing off (auto: "));
        var on = CliRunner.Run(dir, Run("on", "on"));
        Assert.That(on.ExitCode, Is.EqualTo(0), on.Stderr);
        Assert.That(on.Stderr + on.Stdout, Does.Contain("gradient checkpointing on (gradient_checkpointing on)"));
        double[] Losses(string name) => JsonNode.Parse(File.ReadAllText(Path.Combine(runs, name, "trainer_state.json")))!["evaluations"]!.AsArray()
            .SelectMany(e => new[] { e!["bias"]!.GetValue<double>(), e["cider_d"]!.GetValue<double>() }).ToArray();
        var a = Losses("auto");
        var b = Losses("on");
        Assert.That(a, Has.Length.EqualTo(2), "one validation (step 4): bias and CIDEr-D");
        Assert.That(b, Has.Length.EqualTo(a.Length));
        for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]).Within(1e-5), "the validation at the same step");
        using var fa = VlaBias.Weights.SafeTensorsFile.Open(Path.Combine(runs, "auto", "adapter_model.safetensors"));
        using var fb = VlaBias.Weights.SafeTensorsFile.Open(Path.Combine(runs, "on", "adapter_model.safetensors"));
        Assert.That(fb.Entries.Keys, Is.EquivalentTo(fa.Entries.Keys));
        double maxDiff = fa.Entries.Keys.Max(n =>
        {
            using var ta = fa.Read(n);
            using var tb = fb.Read(n);
            return (ta - tb).abs().max().item<float>();
        });
        Assert.That(maxDiff, Is.LessThan(1e-5), "the same adapter after 4 steps");
    }

    private static string Json(string run, string file, string key) => JsonNode.Parse(File.ReadAllText(Path.Combine(run, file)))![key]!.ToJsonString();

    private static JsonObject WithoutTiming(string file)
    {
        var o = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
        o.Remove("timing");
        return o;
    }

    [Test]
    public void Validations_on_the_worker_thread_give_the_same_points_adapter_and_test_figures_as_one_thread()
    {
        var runs = Path.Combine(dir, "runs-d");
        var one = CliRunner.Run(dir, Args(runs, "one", 12, "--test-bootstrap", "20"));
        Assert.That(one.ExitCode, Is.EqualTo(0), one.Stderr);
        var args = Args(runs, "two", 12, "--test-bootstrap", "20", "--overlap", "on");
        args[Array.IndexOf(args, "--threads") + 1] = "2";   // one thread each for training and the worker
        var two = CliRunner.Run(dir, args);
        Assert.That(two.ExitCode, Is.EqualTo(0), two.Stderr);
        Assert.That(two.Stderr + two.Stdout, Does.Contain("overlap on"));
        string a = Path.Combine(runs, "one"), b = Path.Combine(runs, "two");
        Assert.That(Json(b, "trainer_state.json", "evaluations"), Is.EqualTo(Json(a, "trainer_state.json", "evaluations")));
        Assert.That(Json(b, "trainer_state.json", "base"), Is.EqualTo(Json(a, "trainer_state.json", "base")));
        Assert.That(Hash(Path.Combine(b, "adapter_model.safetensors")), Is.EqualTo(Hash(Path.Combine(a, "adapter_model.safetensors"))));
        foreach (var eval in new[] { "eval/base/metrics.json", "eval/tuned/metrics.json" })
            Assert.That(WithoutTiming(Path.Combine(b, eval)).ToJsonString().Replace(b, a), Is.EqualTo(WithoutTiming(Path.Combine(a, eval)).ToJsonString()), eval);
        var timing = JsonNode.Parse(File.ReadAllText(Path.Combine(b, "trainer_state.json")))!["timing"]!.AsObject();
        Assert.That(timing["worker: validation"]!["count"]!.GetValue<int>(), Is.EqualTo(3), "the validations ran on the worker");
        Assert.That(timing.ContainsKey("validation"), Is.False);
        Assert.That(timing["worker: base test evaluation"]!["count"]!.GetValue<int>(), Is.EqualTo(10), "the base's test evaluation: look-up, 8 pieces, outputs");
        Assert.That(timing.ContainsKey("worker: tuned test evaluation"), Is.True, "half of the tuned test evaluation ran on the worker");
        foreach (var samples in new[] { "eval/base/samples.jsonl", "eval/tuned/samples.jsonl" })
            Assert.That(File.ReadAllText(Path.Combine(b, samples)), Is.EqualTo(File.ReadAllText(Path.Combine(a, samples))), samples);
    }

    [Test]
    public void A_threshold_stop_on_the_worker_drops_the_steps_trained_past_it()
    {
        var runs = Path.Combine(dir, "runs-e");
        string[] Stop(string name, string threads, params string[] extra)
        {
            var args = Args(runs, name, 40, [.. extra, "--final-eval", "false"]);
            args[Array.IndexOf(args, "--threshold") + 1] = "1";
            args[Array.IndexOf(args, "--threads") + 1] = threads;
            return args;
        }
        var one = CliRunner.Run(dir, Stop("one", "1"));
        Assert.That(one.ExitCode, Is.EqualTo(0), one.Stderr);
        var two = CliRunner.Run(dir, Stop("two", "2", "--overlap", "on"));
        Assert.That(two.ExitCode, Is.EqualTo(0), two.Stderr);
        string a = Path.Combine(runs, "one"), b = Path.Combine(runs, "two");
        foreach (var key in new[] { "steps", "best_step", "stop_reason", "evaluations" })
            Assert.That(Json(b, "trainer_state.json", key), Is.EqualTo(Json(a, "trainer_state.json", key)), key);
        Assert.That(Hash(Path.Combine(b, "adapter_model.safetensors")), Is.EqualTo(Hash(Path.Combine(a, "adapter_model.safetensors"))));
    }

    [Test]
    public void A_checkpoint_written_before_its_validation_result_is_validated_again_on_resume()
    {
        var runs = Path.Combine(dir, "runs-f");
        var straight = CliRunner.Run(dir, Args(runs, "straight", 12, "--final-eval", "false"));
        Assert.That(straight.ExitCode, Is.EqualTo(0), straight.Stderr);
        string[] Two(int steps, params string[] extra)
        {
            var args = Args(runs, "two", steps, [.. extra, "--final-eval", "false", "--overlap", "on"]);
            args[Array.IndexOf(args, "--threads") + 1] = "2";
            return args;
        }
        // With the worker, the checkpoint of step 8 (a validation step, the last) is written before that validation's result.
        var first = CliRunner.Run(dir, Two(8));
        Assert.That(first.ExitCode, Is.EqualTo(0), first.Stderr);
        var checkpoint = JsonNode.Parse(File.ReadAllText(Path.Combine(runs, "two", "_checkpoint", "state.json")))!;
        Assert.That(checkpoint["step"]!.GetValue<long>(), Is.EqualTo(8));
        Assert.That(checkpoint["extra"]!["evaluations"]!.AsArray().Select(e => e![0]!.GetValue<double>()), Is.EqualTo(new double[] { 4 }));
        var resumed = CliRunner.Run(dir, Two(12, "--resume"));
        Assert.That(resumed.ExitCode, Is.EqualTo(0), resumed.Stderr);
        Assert.That(Json(Path.Combine(runs, "two"), "trainer_state.json", "evaluations"), Is.EqualTo(Json(Path.Combine(runs, "straight"), "trainer_state.json", "evaluations")));
        Assert.That(Hash(Path.Combine(runs, "two", "adapter_model.safetensors")), Is.EqualTo(Hash(Path.Combine(runs, "straight", "adapter_model.safetensors"))));
    }

    [Test]
    public void Unknown_recipe_key_and_bad_value_are_one_line_errors_with_exit_code_2()
    {
        var recipe = Path.Combine(dir, "bad.yaml");
        File.WriteAllText(recipe, "lr: 1e-4\nlearning_rat: 3\n");
        var r = CliRunner.Run(dir, "tune", "--recipe", recipe, "--model", world.Model);
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr, Does.Contain("learning_rat"));
        Assert.That(r.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        var r2 = CliRunner.Run(dir, "tune", "--recipe", Path.Combine(TinyWorld.RepoRoot(), "recipes/default.yaml"), "--lr", "fast", "--model", world.Model);
        Assert.That(r2.ExitCode, Is.EqualTo(2), r2.Stderr);
        Assert.That(r2.Stderr, Does.Contain("'lr'"));
    }
}
