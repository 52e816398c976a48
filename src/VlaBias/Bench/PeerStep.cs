// The PyTorch peer (tools/bench/peer_step.py): the same LoRA training step in Python, run as a child process with
// Debian's /usr/bin/python3 (torch with OpenBLAS), the same sizes, threads and timing protocol. Its JSON comes back
// as is; null with a note when Python or torch is missing.
// A ratio against the peer means something only if the peer is as fast as its torch can be: Debian's torch calls
// whichever libblas.so.3 the system's alternatives name (the reference BLAS made a bench step 28.7 s instead of 3.2 s),
// and OpenBLAS 0.3.21 runs SSE-only kernels on CPUs it does not know. So the peer first reports its setup
// (--setup-only: the library sgemm_ resolves to, OpenBLAS' kernel set, threads), and Refusal decides whether a ratio
// may be reported; a refused peer is not timed.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

namespace VlaBias.Bench;

public static class PeerStep
{
    public const string DefaultPython = "/usr/bin/python3";
    public const string ScriptPath = "tools/bench/peer_step.py";

    /// <summary>The peer script: <paramref name="given"/>, or tools/bench/peer_step.py in the current folder or above it, or above the binary.</summary>
    public static string? FindScript(string? given)
    {
        if (given is not null) return File.Exists(given) ? Path.GetFullPath(given) : null;
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                var p = Path.Combine(d.FullName, ScriptPath);
                if (File.Exists(p)) return p;
            }
        return null;
    }

    /// <summary>What a peer run gave: its timing JSON (null when not timed), its setup (null when it did not start),
    /// why it was not measured, and why its time may not stand as the reference of a ratio.</summary>
    public sealed record Outcome(JsonObject? Result, JsonObject? Setup, string? NotMeasured, string? Refused);

    /// <summary>Checks the peer's setup, then, when it is sound (<see cref="Refusal"/>), times the step for <paramref name="mode"/>.</summary>
    public static Outcome Run(string python, string? script, BenchConfig bc, string mode, int warmup, int repeats, int threads)
    {
        if (script is null) return new(null, null, $"peer script {ScriptPath} not found", null);
        if (!File.Exists(python)) return new(null, null, $"{python} not found", null);
        var (setupJson, setupError) = Invoke(python, script, bc, mode, 0, 1, threads, setupOnly: true, TimeSpan.FromMinutes(5));
        if (setupJson?["setup"] is not JsonObject setup) return new(null, null, setupError ?? "peer printed no setup", null);
        if (Refusal(setup, threads) is string refused) return new(null, setup, null, refused);
        var (result, error) = Invoke(python, script, bc, mode, warmup, repeats, threads, setupOnly: false, TimeSpan.FromMinutes(30));
        if (result is null) return new(null, setup, error, null);
        // The timed run reports its own setup; judge that one (a BLAS could differ between two starts).
        var timedSetup = result["setup"] as JsonObject;
        return new(result, timedSetup ?? setup, null, timedSetup is null ? "the timed peer run reported no setup" : Refusal(timedSetup, threads));
    }

    // OpenBLAS kernel sets without AVX (what its DYNAMIC_ARCH falls back to on a CPU it does not know).
    static readonly HashSet<string> SseOnlyCores = new(StringComparer.OrdinalIgnoreCase)
    {
        "prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai", "coppermine", "northwood", "banias",
        "opteron", "barcelona", "athlon", "bobcat", "generic",
    };

    /// <summary>
    /// Why the peer with this setup (its JSON's "setup") may not stand as the reference of peer_step_ratio, or null
    /// when it may: it must say which BLAS it calls, that BLAS must be an optimized one (not the reference netlib
    /// BLAS, not an unidentified library, not OpenBLAS' SSE-only fallback kernels on a CPU with AVX2), and it must run
    /// on the bench's thread count.
    /// </summary>
    public static string? Refusal(JsonObject setup, int threads)
    {
        ArgumentNullException.ThrowIfNull(setup);
        var blas = setup["blas"] as JsonObject;
        string? kind = Str(blas?["kind"]), from = Str(blas?["sgemm_from"]);
        if (kind is null) return "the peer did not say which BLAS it calls (setup.blas.kind missing)";
        if (kind == "reference")
            return $"the peer's torch calls the reference BLAS ({from}), whose unblocked loops are many times slower than an optimized BLAS; " +
                   "install an optimized one (Debian: apt-get install libopenblas0-pthread) and run the bench again";
        if (kind == "unknown") return $"could not tell which BLAS the peer's torch calls (sgemm_ from {from ?? "no loaded library"})";
        var flags = (setup["cpu_flags"] as JsonArray)?.Select(f => Str(f)).OfType<string>().ToHashSet() ?? [];
        if (kind == "openblas" && Str(blas!["openblas_core"]) is string core && SseOnlyCores.Contains(core) && flags.Contains("avx2"))
            return $"the peer's OpenBLAS runs its {core} kernels (no AVX) on a CPU with {string.Join(' ', flags.Where(f => f.StartsWith("avx", StringComparison.Ordinal)).Order(StringComparer.Ordinal))}; " +
                   "unset OPENBLAS_CORETYPE so the peer can choose, or set it to the CPU's kernel set (e.g. SkylakeX)";
        int? torchThreads = setup["torch_threads"]?.GetValue<int>();
        if (torchThreads != threads) return $"the peer ran on {torchThreads?.ToString(CultureInfo.InvariantCulture) ?? "an unknown number of"} torch threads, the bench on {threads}";
        if (blas!["openblas_threads"]?.GetValue<int>() is int blasThreads && blasThreads != threads)
            return $"the peer's OpenBLAS ran on {blasThreads} threads, the bench on {threads}";
        return null;
    }

    /// <summary>One line on the peer's BLAS and threads, for the log.</summary>
    public static string Describe(JsonObject setup)
    {
        var blas = setup["blas"] as JsonObject;
        string core = Str(blas?["openblas_core"]) is string c ? $", OpenBLAS core {c}, {blas!["openblas_threads"]} OpenBLAS threads" : "";
        string set = Str(blas?["openblas_coretype_set"]) is string why ? $" ({why})" : "";
        return $"peer: torch {Str(setup["torch"])}, {setup["torch_threads"]} torch threads; BLAS {Str(blas?["kind"]) ?? "?"} " +
               $"(sgemm_ from {Str(blas?["sgemm_from"]) ?? "?"}{core}){set}";
    }

    static string? Str(JsonNode? n) => n is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    static (JsonObject? Json, string? Error) Invoke(string python, string script, BenchConfig bc, string mode, int warmup, int repeats, int threads,
                                                    bool setupOnly, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(script);
        void Arg(string name, object value) { psi.ArgumentList.Add(name); psi.ArgumentList.Add(Convert.ToString(value, CultureInfo.InvariantCulture)!); }
        Arg("--mode", mode); Arg("--vocab", bc.Vocab); Arg("--hidden", bc.Hidden); Arg("--layers", bc.Layers); Arg("--heads", bc.Heads);
        Arg("--kv-heads", bc.KvHeads); Arg("--intermediate", bc.Intermediate); Arg("--batch", bc.Batch); Arg("--seq", bc.Sequence);
        Arg("--rank", bc.LoraRank); Arg("--alpha", bc.LoraAlpha); Arg("--threads", threads); Arg("--warmup", warmup); Arg("--repeats", repeats);
        if (setupOnly) psi.ArgumentList.Add("--setup-only");
        psi.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        psi.Environment["OPENBLAS_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout)) { p.Kill(true); return (null, $"peer timed out after {timeout.TotalMinutes:0} min"); }
        if (p.ExitCode != 0)
        {
            string err = stderr.Result.Trim();
            return (null, $"peer exited {p.ExitCode}: {(err.Length > 400 ? err[^400..] : err)}");
        }
        try { return (JsonNode.Parse(stdout.Result.Trim()) as JsonObject ?? throw new InvalidOperationException("not a JSON object"), null); }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException) { return (null, $"peer printed no JSON ({e.Message})"); }
    }
}
