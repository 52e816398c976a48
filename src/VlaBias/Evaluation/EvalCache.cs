// A finished evaluation folder (samples.jsonl, metrics.json, reports, plots) kept under a key that covers everything
// its contents depend on, so the same evaluation asked for again (the base model's test-split evaluation at the end of
// every tuning run) is copied instead of recomputed. The key is a SHA-256 over:
//   the bytes of every file of the model folder; the suite's settings and the bytes of its manifest, word lists, world
//   and every image of its split; the bytes of the evaluator's code (the VlaBias and TorchSharp assemblies); the model's
//   compute dtype, the CPU model and flags, libtorch's thread count and the small-row kernel switch (kernels differ in
//   rounding); and this format's version.
// A changed input gives another key, so a stale entry is never read; key.json beside each entry lists the parts.
// In: a model folder, a suite, the Vla it is loaded in. Out: the entry's folder, or null.
// Root: $VLATUNE_CACHE_DIR/eval, else $XDG_CACHE_HOME/vlatune/eval, else ~/.cache/vlatune/eval; VLATUNE_CACHE_DIR=off disables it.
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Serilog;
using VlaBias.Data;

namespace VlaBias.Evaluation;

public static class EvalCache
{
    public const string Variable = "VLATUNE_CACHE_DIR", KeyFile = "key.json";
    private const string Format = "vlatune-eval-cache-1";

    /// <summary>The cache's folder, or null when VLATUNE_CACHE_DIR=off or no home folder is known.</summary>
    public static string? Root()
    {
        var dir = Environment.GetEnvironmentVariable(Variable);
        if (dir == "off") return null;
        if (!string.IsNullOrEmpty(dir)) return Path.Combine(dir, "eval");
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrEmpty(xdg)) return Path.Combine(xdg, "vlatune", "eval");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return string.IsNullOrEmpty(home) ? null : Path.Combine(home, ".cache", "vlatune", "eval");
    }

    /// <summary>The parts the key hashes (each a hex digest or a short value), for key.json.</summary>
    public static JsonObject KeyParts(Vla vla, string modelDir, Suite suite)
    {
        var items = Manifest.Load(suite.Manifest, checkImages: false).Where(i => i.Split?.Name() == suite.Split).OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        string manifestDir = Path.GetDirectoryName(Path.GetFullPath(suite.Manifest))!;
        var settings = new JsonObject
        {
            ["split"] = suite.Split, ["caption_prompt"] = suite.CaptionPrompt, ["probe_options"] = string.Join(",", suite.ProbeOptions),
            ["probes_with_unknown"] = suite.ProbesWithUnknown, ["captions"] = suite.Captions, ["facts"] = suite.Facts, ["probes"] = suite.Probes,
            ["max_new_tokens"] = suite.MaxNewTokens, ["batch_size"] = suite.BatchSize, ["bootstrap"] = suite.Bootstrap,
            ["lic_seeds"] = suite.LicSeeds, ["seed"] = suite.Seed, ["name"] = suite.Name,
        };
        return new JsonObject
        {
            ["format"] = Format,
            ["model_path"] = modelDir,   // metrics.json and the reports name it
            ["model"] = HashFolder(modelDir),
            ["suite"] = settings,
            ["manifest"] = HashFiles([suite.Manifest]),
            ["words"] = HashFiles([suite.Words, suite.World]),
            ["images"] = HashFiles(items.Select(i => Path.Combine(manifestDir, i.Image))),
            ["code"] = HashFiles([typeof(EvalCache).Assembly.Location, typeof(TorchSharp.torch).Assembly.Location]),
            ["dtype"] = vla.Model.parameters().FirstOrDefault()?.dtype.ToString() ?? "none",
            ["prompt_prefix"] = vla.Prompts.Prefix ?? "",
            ["cpu"] = CpuDescription(),
            ["threads"] = TorchSharp.torch.get_num_threads(),
            ["small_linear"] = Model.LinearKernels.SmallRowsSupported,
        };
    }

    public static string Key(JsonObject parts) =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(parts.ToJsonString())))[..32].ToLowerInvariant();

    /// <summary>Copies the entry <paramref name="key"/> into <paramref name="outDir"/> and returns its metrics, or null when there is none (or it is unreadable).</summary>
    public static JsonObject? TryRestore(string root, string key, string outDir)
    {
        var entry = Path.Combine(root, key);
        var metricsFile = Path.Combine(entry, EvalRunner.MetricsFile);
        if (!File.Exists(Path.Combine(entry, KeyFile)) || !File.Exists(metricsFile) || !File.Exists(Path.Combine(entry, EvalRunner.SamplesFile))) return null;
        JsonObject? metrics;
        try { metrics = JsonNode.Parse(File.ReadAllText(metricsFile)) as JsonObject; }
        catch (System.Text.Json.JsonException) { return null; }
        if (metrics is null) return null;
        CopyFolder(entry, outDir, skip: KeyFile);
        return metrics;
    }

    /// <summary>Stores a finished evaluation folder as the entry <paramref name="key"/> (written beside it, then renamed into place); a failure is logged.</summary>
    public static void Store(string root, string key, JsonObject parts, string evalDir)
    {
        var entry = Path.Combine(root, key);
        var tmp = entry + ".tmp-" + Environment.ProcessId;
        try
        {
            Directory.CreateDirectory(root);
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
            CopyFolder(evalDir, tmp, skip: EvalRunner.CacheFile);
            File.WriteAllText(Path.Combine(tmp, KeyFile), parts.ToJsonString(JsonFormat.Pretty));
            if (Directory.Exists(entry)) Directory.Delete(entry, true);
            Directory.Move(tmp, entry);
        }
        catch (IOException e)
        {
            Log.Warning("eval cache: {Entry} not stored: {Error}", entry, e.Message);
            try { if (Directory.Exists(tmp)) Directory.Delete(tmp, true); } catch (IOException) { }
        }
        catch (UnauthorizedAccessException e) { Log.Warning("eval cache: {Entry} not stored: {Error}", entry, e.Message); }
    }

    private static void CopyFolder(string from, string to, string skip)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            var rel = Path.GetRelativePath(from, f);
            if (rel == skip) continue;
            var dest = Path.Combine(to, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(dest)!);
            File.Copy(f, dest, overwrite: true);
        }
    }

    /// <summary>SHA-256 over every file of a folder (names and bytes, ordinal order, subfolders included).</summary>
    private static string HashFolder(string dir)
    {
        if (!Directory.Exists(dir)) return "missing";
        var files = Directory.GetFiles(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in files)
        {
            h.AppendData(Encoding.UTF8.GetBytes(Path.GetRelativePath(dir, f) + "\0"));
            h.AppendData(SHA256.HashData(File.ReadAllBytes(f)));
        }
        return Convert.ToHexString(h.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>SHA-256 over the bytes of files in order (a missing file counts as "missing").</summary>
    private static string HashFiles(IEnumerable<string> files)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in files)
            h.AppendData(File.Exists(f) ? SHA256.HashData(File.ReadAllBytes(f)) : Encoding.UTF8.GetBytes("missing\0"));
        return Convert.ToHexString(h.GetHashAndReset()).ToLowerInvariant();
    }

    private static string CpuDescription()
    {
        const string info = "/proc/cpuinfo";
        if (!File.Exists(info)) return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
        var lines = File.ReadLines(info).TakeWhile(l => l.Length > 0).ToList();
        string Field(string name) => lines.FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "";
        return Field("model name") + " | " + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(Field("flags"))))[..16];
    }
}
