using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Bench;

namespace VlaBias.Tests.Bench;

/// <summary>
/// The peer's setup decides whether its step time can stand as the reference of peer_step_ratio. The fixtures are
/// what tools/bench/peer_step.py --setup-only printed on this project's machine (Debian 12, python3-torch 1.13,
/// OpenBLAS 0.3.21, Intel family 6 model 207): on OpenBLAS after the peer chose its kernel set, on the reference BLAS
/// (LD_PRELOAD=/usr/lib/x86_64-linux-gnu/blas/libblas.so.3), and with OPENBLAS_CORETYPE=Prescott forced.
/// </summary>
public class PeerStepTests
{
    static JsonObject Setup(string name) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "peer", $"setup_{name}.json")))!["setup"]!.AsObject();

    [Test]
    public void OpenBLAS_with_the_cpus_kernels_on_the_bench_threads_is_sound()
    {
        var s = Setup("openblas");
        Assert.That(PeerStep.Refusal(s, threads: 2), Is.Null);
        Assert.That(PeerStep.Describe(s), Does.Contain("openblas").And.Contain("Cooperlake").And.Contain("openblas-pthread/libblas.so.3"));
    }

    [Test]
    public void Reference_blas_is_refused_naming_the_library()
    {
        var reason = PeerStep.Refusal(Setup("reference"), threads: 2);
        Assert.That(reason, Does.Contain("reference BLAS").And.Contain("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0").And.Contain("libopenblas0-pthread"));
    }

    [Test]
    public void OpenBLAS_on_sse_only_kernels_of_an_avx512_cpu_is_refused()
    {
        var reason = PeerStep.Refusal(Setup("prescott"), threads: 2);
        Assert.That(reason, Does.Contain("Prescott").And.Contain("avx512f").And.Contain("OPENBLAS_CORETYPE"));
        // The same kernels on a CPU without AVX2 are the best OpenBLAS has: sound.
        var old = Setup("prescott");
        old["cpu_flags"] = new JsonArray("sse3");
        Assert.That(PeerStep.Refusal(old, threads: 2), Is.Null);
    }

    [Test]
    public void Other_threads_unknown_or_missing_blas_are_refused()
    {
        Assert.That(PeerStep.Refusal(Setup("openblas"), threads: 1), Does.Contain("2 torch threads, the bench on 1"));
        var unknown = Setup("openblas");
        unknown["blas"] = new JsonObject { ["kind"] = "unknown", ["sgemm_from"] = "/opt/x/libfoo.so" };
        Assert.That(PeerStep.Refusal(unknown, threads: 2), Does.Contain("could not tell").And.Contain("/opt/x/libfoo.so"));
        var missing = Setup("openblas");
        missing.Remove("blas");
        Assert.That(PeerStep.Refusal(missing, threads: 2), Does.Contain("did not say which BLAS"));
        var mkl = Setup("openblas");
        mkl["blas"] = new JsonObject { ["kind"] = "mkl", ["sgemm_from"] = null, ["blas_info"] = "mkl" };
        Assert.That(PeerStep.Refusal(mkl, threads: 2), Is.Null, "pip wheels link MKL statically");
    }

    // A stand-in for python: prints the setup fixture for --setup-only, else a timed result carrying the same setup, and
    // appends its arguments to a log, so the plumbing and the refusal are tested without Python.
    static string FakePython(string dir, string fixture, double stepMs)
    {
        var setup = Setup(fixture);
        File.WriteAllText(Path.Combine(dir, "setup.json"), new JsonObject { ["setup"] = setup.DeepClone() }.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "step.json"), new JsonObject { ["mode"] = "lora", ["step_ms"] = new JsonObject { ["median"] = stepMs }, ["setup"] = setup.DeepClone() }.ToJsonString());
        var path = Path.Combine(dir, "python");
        File.WriteAllText(path, $"#!/bin/sh\necho \"$@\" >> '{dir}/calls.log'\ncase \"$*\" in *--setup-only*) cat '{dir}/setup.json' ;; *) cat '{dir}/step.json' ;; esac\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    [Test]
    public void A_refused_peer_is_not_timed_and_a_sound_one_is()
    {
        var dir = TestPaths.NewTempDir("peer");
        try
        {
            var script = Path.Combine(dir, "peer_step.py");
            File.WriteAllText(script, "# not run: the fake python ignores it\n");
            var refused = PeerStep.Run(FakePython(dir, "reference", 28700), script, BenchConfig.Tiny, "lora", 0, 1, threads: 2);
            Assert.That(refused.Result, Is.Null);
            Assert.That(refused.Refused, Does.Contain("reference BLAS"));
            Assert.That(refused.Setup!["blas"]!["kind"]!.GetValue<string>(), Is.EqualTo("reference"));
            Assert.That(File.ReadAllLines(Path.Combine(dir, "calls.log")), Has.Length.EqualTo(1).And.All.Contain("--setup-only"));

            File.Delete(Path.Combine(dir, "calls.log"));
            var sound = PeerStep.Run(FakePython(dir, "openblas", 580), script, BenchConfig.Tiny, "lora", 0, 1, threads: 2);
            Assert.That(sound.Refused, Is.Null);
            Assert.That(sound.NotMeasured, Is.Null);
            Assert.That(sound.Result!["step_ms"]!["median"]!.GetValue<double>(), Is.EqualTo(580));
            var calls = File.ReadAllLines(Path.Combine(dir, "calls.log"));
            Assert.That(calls, Has.Length.EqualTo(2));
            Assert.That(calls[1], Does.Not.Contain("--setup-only").And.Contain("--threads 2"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
