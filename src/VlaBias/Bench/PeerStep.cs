// The PyTorch peer (tools/bench/peer_step.py): the same LoRA training step in Python, run as a child process with
// Debian's /usr/bin/python3 (torch with OpenBLAS), the same sizes, threads and timing protocol. Its JSON comes back
// as is; null with a note when Python or torch is missing.
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

    /// <summary>Runs the peer for <paramref name="mode"/>; returns (its JSON, null) or (null, why not).</summary>
    public static (JsonObject? Result, string? Note) Run(string python, string? script, BenchConfig bc, string mode, int warmup, int repeats, int threads)
    {
        if (script is null) return (null, $"peer script {ScriptPath} not found");
        if (!File.Exists(python)) return (null, $"{python} not found");
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(script);
        void Arg(string name, object value) { psi.ArgumentList.Add(name); psi.ArgumentList.Add(Convert.ToString(value, CultureInfo.InvariantCulture)!); }
        Arg("--mode", mode); Arg("--vocab", bc.Vocab); Arg("--hidden", bc.Hidden); Arg("--layers", bc.Layers); Arg("--heads", bc.Heads);
        Arg("--kv-heads", bc.KvHeads); Arg("--intermediate", bc.Intermediate); Arg("--batch", bc.Batch); Arg("--seq", bc.Sequence);
        Arg("--rank", bc.LoraRank); Arg("--alpha", bc.LoraAlpha); Arg("--threads", threads); Arg("--warmup", warmup); Arg("--repeats", repeats);
        psi.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        psi.Environment["OPENBLAS_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(30))) { p.Kill(true); return (null, "peer timed out after 30 min"); }
        if (p.ExitCode != 0)
        {
            string err = stderr.Result.Trim();
            return (null, $"peer exited {p.ExitCode}: {(err.Length > 400 ? err[^400..] : err)}");
        }
        try { return (JsonNode.Parse(stdout.Result.Trim())!.AsObject(), null); }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException) { return (null, $"peer printed no JSON ({e.Message})"); }
    }
}
