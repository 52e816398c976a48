using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Model;

/// <summary>The kernel choice by measurement: the cache (where, per CPU, defensive parsing, atomic rewrite), Auto following it, and the pool stepping aside when its workers cannot get a core.</summary>
public class KernelCalibrationTests
{
    private string dir = "";
    private string File => Path.Combine(dir, "kernels.json");

    [SetUp]
    public void TempDir() => Directory.CreateDirectory(dir = Path.Combine(Path.GetTempPath(), $"vlatune-kcal-{Guid.NewGuid():N}"));

    [TearDown]
    public void Remove() => Directory.Delete(dir, true);

    [Test]
    public void Cache_directory_honours_VLATUNE_CACHE_DIR_then_XDG_CACHE_HOME_then_home()
    {
        Func<string, string?> Env(params (string k, string v)[] vars) => k => vars.FirstOrDefault(p => p.k == k).v;
        Assert.That(KernelCalibration.CacheDirectory(Env(("VLATUNE_CACHE_DIR", "/a"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h"))), Is.EqualTo("/a"));
        Assert.That(KernelCalibration.CacheDirectory(Env(("XDG_CACHE_HOME", "/x"), ("HOME", "/h"))), Is.EqualTo("/x/vlatune"));
        Assert.That(KernelCalibration.CacheDirectory(Env(("HOME", "/h"))), Is.EqualTo("/h/.cache/vlatune"));
        Assert.That(KernelCalibration.CacheDirectory(Env(("VLATUNE_CACHE_DIR", ""), ("HOME", "/h"))), Is.EqualTo("/h/.cache/vlatune"), "empty means unset");
    }

    [Test]
    public void A_measurement_is_written_once_and_read_back_by_the_next_process_for_the_same_cpu_only()
    {
        var first = new KernelCalibration(File, "cpu A", Quiet);
        var e = first.Get("caller", 96, 64, 3, null);
        Assert.That(first.Measured, Is.EqualTo(1));
        Assert.That(e.LibtorchUs, Is.GreaterThan(0));
        Assert.That(e.SmallUs, Is.GreaterThan(0));
        Assert.That(first.Get("caller", 96, 64, 4, null), Is.EqualTo(e), "3 and 4 rows share the bucket of 4");
        Assert.That(first.Measured, Is.EqualTo(1));

        var again = new KernelCalibration(File, "cpu A", Quiet);
        Assert.That(again.Get("caller", 96, 64, 4, null), Is.EqualTo(e with { LibtorchUs = Math.Round(e.LibtorchUs, 2), SmallUs = Math.Round(e.SmallUs, 2) }));
        Assert.That(again.Measured, Is.EqualTo(0), "read from the cache, not measured");

        var other = new KernelCalibration(File, "cpu B", Quiet);
        other.Get("caller", 96, 64, 4, null);
        Assert.That(other.Measured, Is.EqualTo(1), "another CPU model measures for itself");
        var cpus = JsonNode.Parse(System.IO.File.ReadAllText(File))!["cpus"]!.AsObject();
        Assert.That(cpus.Select(kv => kv.Key), Is.EquivalentTo(new[] { "cpu A", "cpu B" }), "both CPUs' entries are kept");
    }

    private static bool Quiet() => true;

    [Test]
    public void A_measurement_taken_while_other_processes_run_is_used_but_not_written()
    {
        var cal = new KernelCalibration(File, "cpu A", () => false);
        var e = cal.Get("caller", 96, 64, 2, null);
        Assert.That(System.IO.File.Exists(File), Is.False, "nothing cached from a loaded machine");
        Assert.That(cal.Get("caller", 96, 64, 2, null), Is.EqualTo(e));
        Assert.That(cal.Measured, Is.EqualTo(1), "measured once per process all the same");
        var quiet = new KernelCalibration(File, "cpu A", Quiet);
        quiet.Get("caller", 96, 64, 8, null);
        Assert.That(System.IO.File.ReadAllText(File), Does.Contain("rows 8").And.Not.Contain("rows 2"));
    }

    [TestCase("")]
    [TestCase("{")]
    [TestCase("null")]
    [TestCase("[1, 2]")]
    [TestCase("{\"version\": 99, \"cpus\": {}}")]
    [TestCase("{\"version\": \"1\", \"cpus\": {}}")]
    [TestCase("{\"version\": 1, \"cpus\": []}")]
    [TestCase("{\"version\": 1, \"cpus\": {\"cpu A\": {\"caller 96x64 rows 4 threads 1\": {\"libtorch_us\": \"fast\", \"small_us\": 1}}}}")]
    [TestCase("{\"version\": 1, \"cpus\": {\"cpu A\": {\"caller 96x64 rows 4 threads 1\": {\"libtorch_us\": -1, \"small_us\": 1}}}}")]
    [TestCase("{\"version\": 1, \"cpus\": {\"cpu A\": 7}}")]
    [TestCase("\u0000\u00ff binary")]
    public void A_corrupt_cache_is_ignored_and_rewritten(string text)
    {
        System.IO.File.WriteAllText(File, text);
        var cal = new KernelCalibration(File, "cpu A", Quiet);
        cal.Get("caller", 96, 64, 4, null);
        Assert.That(cal.Measured, Is.EqualTo(1), "nothing usable was read");
        var root = JsonNode.Parse(System.IO.File.ReadAllText(File))!;
        Assert.That(root["version"]!.GetValue<int>(), Is.EqualTo(1));
        Assert.That(root["cpus"]!["cpu A"]!.AsObject().Count, Is.EqualTo(1));
    }

    [Test]
    public void Auto_takes_the_kernel_only_where_the_calibration_measured_it_well_under_libtorch()
    {
        int threads = get_num_threads();
        Entries(("caller", 40, 16, 1, 10.0, 4.0), ("caller", 48, 16, 1, 5.0, 10.0), ("caller", 56, 16, 1, 10.0, 6.0));
        // available on every CPU (Vector512 runs in software without AVX-512): this checks the choice, not the speed
        var kernels = new LinearKernels(KernelChoice.Auto, new KernelCalibration(File, "cpu A", Quiet), available: true);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = ones(1, 16);
        Assert.That(kernels.Applies(x, ones(40, 16), null), Is.True, "measured faster: small-row");
        Assert.That(kernels.Applies(x, ones(48, 16), null), Is.False, "measured slower: libtorch");
        Assert.That(kernels.Applies(x, ones(56, 16), null), Is.False, "measured faster, but not by the margin (0.6 of libtorch): libtorch");
        kernels.Choice = KernelChoice.Libtorch;
        Assert.That(kernels.Applies(x, ones(40, 16), null), Is.False, "forced off");
        kernels.Choice = KernelChoice.SmallRows;
        Assert.That(kernels.Applies(x, ones(48, 16), null), Is.True, "forced on");
        Assert.That(threads, Is.EqualTo(get_num_threads()));
    }

    [Test]
    public void Auto_opens_no_decode_mode_even_where_its_linears_measured_faster()
    {
        int threads = get_num_threads();
        if (threads < 2) set_num_threads(2);
        try
        {
            int t = get_num_threads();
            Entries(("decode", 40, 16, 1, 10.0, 5.0), ("decode", 48, 16, 1, 10.0, 4.9));
            var kernels = new LinearKernels(KernelChoice.Auto, new KernelCalibration(File, "cpu A", Quiet), available: true);
            _ = new KernelLinear(16, 40, false, kernels);
            _ = new KernelLinear(16, 48, false, kernels);
            using (kernels.Decoding(1))
            {
                Assert.That(kernels.InDecodeMode, Is.False, "whole decode steps were slower in decode mode even where its linears won (the rest of a step runs on one thread)");
                Assert.That(get_num_threads(), Is.EqualTo(t));
            }
        }
        finally { set_num_threads(threads); }
    }

    [Test]
    public void A_pool_whose_workers_fall_behind_marks_itself_contended_and_then_runs_jobs_on_the_caller()
    {
        var pool = new SpinPool(1);
        int caller = Environment.CurrentManagedThreadId, secondOn = 0;
        pool.Run(2, p => { if (p == 1) Thread.Sleep(20); });
        Assert.That(pool.Contended, Is.True, "the worker's part finished 20 ms after the caller's");
        pool.Run(2, p => { if (p == 1) secondOn = Environment.CurrentManagedThreadId; });
        Assert.That(secondOn, Is.EqualTo(caller), "while contended every part runs on the calling thread");
    }

    private void Entries(params (string mode, long n, long k, int rows, double torch, double small)[] es)
    {
        var mine = new JsonObject();
        foreach (var e in es)
            mine[KernelCalibration.Key(e.mode, e.n, e.k, e.rows, get_num_threads())] = new JsonObject { ["libtorch_us"] = e.torch, ["small_us"] = e.small };
        System.IO.File.WriteAllText(File, new JsonObject { ["version"] = 1, ["cpus"] = new JsonObject { ["cpu A"] = mine } }.ToJsonString());
    }
}
