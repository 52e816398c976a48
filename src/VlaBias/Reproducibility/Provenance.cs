// What made a committed result (a table, a figure): a sidecar FILE.provenance.json beside it with the file's hash, the
// command, the code (commit, a hash of the sources), every input's hash (recipe, model, data with its images, suite,
// word lists, world) and the machine (CPU model and the flags that change kernels and rounding). Check recomputes the
// hashes and says, in words, why a file is stale: it was edited, an input changed, or the code changed. Paths in the
// sidecar are relative to its folder, so a clone anywhere checks the same way.
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace VlaBias.Reproducibility;

/// <param name="Kind">recipe, model, data, suite, words, world, file (for messages)</param>
/// <param name="Generated">made by vlatune from other inputs (the default synthetic data): absent here is not stale</param>
public sealed record ProvenanceInput(string Kind, string Path, bool Generated = false);

/// <param name="Stale">reasons the file no longer matches what made it (empty: fresh)</param>
/// <param name="Notes">differences that do not make it stale (another CPU, an absent generated input)</param>
public sealed record ProvenanceCheck(string File, IReadOnlyList<string> Stale, IReadOnlyList<string> Notes, string? Regenerate)
{
    public bool Fresh => Stale.Count == 0;
}

public static class Provenance
{
    public const string Suffix = ".provenance.json";

    public static string SidecarOf(string file) => file + Suffix;

    /// <summary>"vlatune ARGS" with shell quoting, as a person would retype it.</summary>
    public static string CommandLine(IEnumerable<string> args) => "vlatune " + string.Join(' ', args.Select(ScaleOut.SlurmScript.Quote));

    /// <summary>The inputs of a tuning/evaluation result: the recipe, model, data (+ images), suite and the suite's word lists and world.</summary>
    public static List<ProvenanceInput> InputsOf(string? recipe = null, string? model = null, string? data = null, string? suite = null, bool dataGenerated = false)
    {
        var list = new List<ProvenanceInput>();
        if (recipe is not null) list.Add(new("recipe", recipe));
        if (model is not null) list.Add(new("model", model));
        if (data is not null) list.Add(new("data", data, dataGenerated));
        if (suite is not null)
        {
            list.Add(new("suite", suite));
            var s = Evaluation.Suite.Load(suite);
            list.Add(new("words", s.Words));
            list.Add(new("world", s.World));
            if (data is null || Path.GetFullPath(s.Manifest) != Path.GetFullPath(data))
                list.Add(new("data", s.Manifest, dataGenerated && s.Manifest.Contains("generated", StringComparison.Ordinal)));
        }
        return list.DistinctBy(i => (i.Kind, Path.GetFullPath(i.Path))).ToList();
    }

    /// <summary>Writes FILE.provenance.json for <paramref name="file"/>, which must exist.</summary>
    public static JsonObject Write(string file, string command, IEnumerable<ProvenanceInput> inputs)
    {
        if (!File.Exists(file)) throw new BadInputException($"{file}: not found (provenance is recorded for a file that exists)");
        string sidecar = SidecarOf(file), dir = Path.GetDirectoryName(Path.GetFullPath(sidecar))!;
        var code = Code();
        var doc = new JsonObject
        {
            ["file"] = Path.GetFileName(file),
            ["sha256"] = Sha(File.ReadAllBytes(file)),
            ["command"] = command,
            ["working_directory"] = Relative(dir, Environment.CurrentDirectory),
            ["made_utc"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["code"] = new JsonObject { ["commit"] = code.commit, ["dirty"] = code.dirty, ["sources_sha256"] = code.sources, ["vlatune_version"] = code.version },
            ["inputs"] = new JsonArray(inputs.Select(i => (JsonNode)new JsonObject
            {
                ["kind"] = i.Kind, ["path"] = Relative(dir, i.Path), ["sha256"] = HashOf(i), ["generated"] = i.Generated,
            }).ToArray()),
            ["machine"] = Machine(),
        };
        AtomicFile.WriteAllText(sidecar, doc.ToJsonString(JsonFormat.Pretty));
        return doc;
    }

    /// <summary>Compares <paramref name="file"/> with what its sidecar recorded. <paramref name="ignoreCode"/>: a code change is a note, not stale.</summary>
    public static ProvenanceCheck Check(string file, bool ignoreCode = false)
    {
        var stale = new List<string>();
        var notes = new List<string>();
        string sidecar = SidecarOf(file);
        if (!File.Exists(file)) return new(file, [$"{file} not found"], notes, null);
        if (!File.Exists(sidecar)) return new(file, [$"no provenance file ({sidecar}): what made it is not recorded"], notes, null);
        JsonObject doc;
        try { doc = JsonNode.Parse(File.ReadAllText(sidecar)) as JsonObject ?? throw new System.Text.Json.JsonException("not an object"); }
        catch (System.Text.Json.JsonException e) { return new(file, [$"{sidecar}: not a provenance record ({e.Message})"], notes, null); }
        string dir = Path.GetDirectoryName(Path.GetFullPath(sidecar))!;
        string? regenerate = null;
        try
        {
            string? command = doc["command"]?.GetValue<string>();
            string? wd = doc["working_directory"]?.GetValue<string>();
            regenerate = command is null ? null : $"cd {Path.GetRelativePath(Environment.CurrentDirectory, Path.GetFullPath(Path.Combine(dir, wd ?? ".")))} && {command}";
            if (doc["sha256"]?.GetValue<string>() is string h && h != Sha(File.ReadAllBytes(file)))
                stale.Add($"{file} was changed after it was made (its sha256 differs from the recorded one)");
            foreach (var i in (doc["inputs"] as JsonArray ?? []).OfType<JsonObject>())
            {
                string kind = i["kind"]?.GetValue<string>() ?? "input", rel = i["path"]?.GetValue<string>() ?? "";
                string path = Path.GetFullPath(Path.Combine(dir, rel));
                bool generated = i["generated"]?.GetValue<bool>() ?? false;
                string shown = Path.GetRelativePath(Environment.CurrentDirectory, path);
                if (!File.Exists(path) && !Directory.Exists(path))
                {
                    if (generated) notes.Add($"{kind} {shown} (generated) is absent here, so it was not compared; its sources are");
                    else stale.Add($"{kind} {shown} is missing");
                    continue;
                }
                string then = i["sha256"]?.GetValue<string>() ?? "", now = HashOf(new ProvenanceInput(kind, path, generated));
                if (then != now) stale.Add($"{kind} {shown} changed since it was made (sha256 {Short(then)} then, {Short(now)} now)");
            }
            var code = Code();
            string? sources = doc["code"]?["sources_sha256"]?.GetValue<string>(), commit = doc["code"]?["commit"]?.GetValue<string>();
            if (doc["code"]?["dirty"]?.GetValue<bool>() == true) notes.Add($"it was made from uncommitted changes on top of commit {Short(commit)}");
            if (sources is not null && code.sources is not null && sources != code.sources)
            {
                string why = $"the code changed since it was made (commit {Short(commit)} then, {Short(code.commit)} now; sources sha256 {Short(sources)} then, {Short(code.sources)} now)";
                if (ignoreCode) notes.Add(why); else stale.Add(why);
            }
            string? cpuThen = doc["machine"]?["cpu"]?.GetValue<string>();
            var flagsThen = (doc["machine"]?["flags"] as JsonArray ?? []).Select(f => f!.GetValue<string>()).ToList();
            var m = Machine();
            var flagsNow = (m["flags"] as JsonArray ?? []).Select(f => f!.GetValue<string>()).ToList();
            if (cpuThen != m["cpu"]?.GetValue<string>() || !flagsThen.SequenceEqual(flagsNow))
                notes.Add($"made on \"{cpuThen}\" [{string.Join(" ", flagsThen)}], this machine is \"{m["cpu"]}\" [{string.Join(" ", flagsNow)}]: kernels chosen by CPU features can change the last digits");
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException or BadInputException)
        {
            stale.Add($"{sidecar}: not a valid provenance record ({e.Message})");
        }
        return new(file, stale, notes, regenerate);
    }

    private static string Short(string? h) => h is null ? "?" : h.Length > 10 ? h[..10] : h;

    private static string Relative(string baseDir, string path) => Path.GetRelativePath(baseDir, Path.GetFullPath(path)).Replace('\\', '/');

    private static string Sha(byte[] bytes) => Convert.ToHexString(SHA256.HashData(bytes)).ToLowerInvariant();

    /// <summary>A file's sha256; a folder's over its files (relative path + hash, sorted, *.md left out); a manifest's also over the images it names.</summary>
    public static string HashOf(ProvenanceInput input)
    {
        string p = input.Path;
        // A folder (a model): every file but notes for people (MODEL_CARD.md, README.md), which nothing reads.
        if (Directory.Exists(p)) return HashTree(p, Directory.EnumerateFiles(p, "*", SearchOption.AllDirectories).Where(f => !f.EndsWith(".md", StringComparison.OrdinalIgnoreCase)));
        if (!File.Exists(p)) return "missing";
        if (input.Kind != "data" || !p.EndsWith(".jsonl", StringComparison.Ordinal)) return Sha(File.ReadAllBytes(p));
        var sb = new StringBuilder(Sha(File.ReadAllBytes(p)));
        string root = Path.GetDirectoryName(Path.GetFullPath(p))!;
        foreach (var img in Data.Manifest.Load(p, checkImages: false).Select(i => i.Image).Distinct().Order(StringComparer.Ordinal))
        {
            string f = Path.Combine(root, img);
            sb.Append('\n').Append(img).Append(' ').Append(File.Exists(f) ? Sha(File.ReadAllBytes(f)) : "missing");
        }
        return Sha(Encoding.UTF8.GetBytes(sb.ToString()));
    }

    private static string HashTree(string root, IEnumerable<string> files)
    {
        var sb = new StringBuilder();
        foreach (var f in files.Select(f => Path.GetRelativePath(root, f).Replace('\\', '/')).Order(StringComparer.Ordinal))
            sb.Append(f).Append(' ').Append(Sha(File.ReadAllBytes(Path.Combine(root, f)))).Append('\n');
        return Sha(Encoding.UTF8.GetBytes(sb.ToString()));
    }

    /// <summary>
    /// The code that is running: when vlatune runs from a checkout (the folder above it holds VlaBias.sln), the git
    /// commit, whether the sources differ from it, and a hash of the sources themselves (src/, build/, the build
    /// props), which is what staleness compares; otherwise only the assembly version.
    /// </summary>
    public static (string? commit, bool dirty, string? sources, string version) Code()
    {
        string version = typeof(Provenance).Assembly.GetName().Version?.ToString() ?? "?";
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "VlaBias.sln"))) d = d.Parent;
        if (d is null) return (null, false, null, version);
        string root = d.FullName;
        static bool Source(string rel) => !rel.Split('/').Any(part => part is "bin" or "obj");
        var files = new[] { "src", "build" }.Where(x => Directory.Exists(Path.Combine(root, x)))
            .SelectMany(x => Directory.EnumerateFiles(Path.Combine(root, x), "*", SearchOption.AllDirectories))
            .Concat(new[] { "Directory.Build.props", "Directory.Build.targets", "global.json" }.Select(x => Path.Combine(root, x)).Where(File.Exists))
            .Where(f => Source(Path.GetRelativePath(root, f).Replace('\\', '/')));
        string sources = HashTree(root, files);
        string? commit = Git(root, "rev-parse", "HEAD");
        bool dirty = commit is not null && (Git(root, "status", "--porcelain", "--", "src", "build", "Directory.Build.props", "Directory.Build.targets", "global.json") ?? "").Length > 0;
        return (commit, dirty, sources, version);
    }

    private static string? Git(string root, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo("git") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("-C"); psi.ArgumentList.Add(root);
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            p.StandardError.ReadToEndAsync();
            string o = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            return p.ExitCode == 0 ? o : null;
        }
        catch (System.ComponentModel.Win32Exception) { return null; }
    }

    /// <summary>CPU model, the flags that select kernels (AVX2, AVX-512, bf16, AMX), core count, OS and runtime.</summary>
    public static JsonObject Machine()
    {
        string cpu = "?";
        var flags = new List<string>();
        try
        {
            var lines = File.ReadAllLines("/proc/cpuinfo");
            cpu = lines.FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?";
            var all = (lines.FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal))?.Split(':', 2)[1] ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
            flags = new[] { "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16" }.Where(all.Contains).ToList();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return new JsonObject
        {
            ["cpu"] = cpu, ["flags"] = new JsonArray(flags.Select(f => (JsonNode)f).ToArray()), ["cores"] = Environment.ProcessorCount,
            ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription, ["dotnet"] = Environment.Version.ToString(),
        };
    }
}
