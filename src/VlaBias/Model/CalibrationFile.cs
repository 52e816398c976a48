// One calibration cache file: {"version": 1, "what": "...", "cpus": {"<cpu model>": {"<shape key>": {"<a>": µs, "<b>": µs}}}},
// a pair of median times per measured shape and CPU model. KernelCalibration (kernels.json), AttentionChoice
// (attention.json) and DTypeCalibration (dtype.json) each keep one under KernelCalibration.CacheDirectory. Read
// defensively: a file, CPU or entry that is not what this code writes gives no entries (and is rewritten on the next
// save); an entry's times must be finite and positive. Saving merges this process's entries over the file's current
// ones for this CPU, keeps every other CPU's, and writes atomically; a failed write only costs a later re-measurement.
using System.Text.Json;
using System.Text.Json.Nodes;
using Serilog;

namespace VlaBias.Model;

internal sealed class CalibrationFile(string path, string cpu, string what, string first, string second, string logName, int decimals = 2)
{
    private const int Version = 1;

    public string Path => path;

    /// <summary>This CPU's entries (first, second µs) by shape key; none when the file is missing or malformed.</summary>
    public Dictionary<string, (double First, double Second)> Read()
    {
        var result = new Dictionary<string, (double, double)>(StringComparer.Ordinal);
        try
        {
            if (ReadCpus() is not JsonObject cpus || cpus[cpu] is not JsonObject mine) return result;
            foreach (var (key, node) in mine)
            {
                if (node is not JsonObject e) continue;
                if (e[first] is JsonValue a && a.TryGetValue(out double x) && e[second] is JsonValue b && b.TryGetValue(out double y)
                    && double.IsFinite(x) && double.IsFinite(y) && x > 0 && y > 0)
                    result[key] = (x, y);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException or FormatException)
        {
            Log.Warning("{Name}: calibration cache {File} is unreadable ({Message}); measuring again", logName, path, e.Message);
            result.Clear();
        }
        return result;
    }

    /// <summary>Writes <paramref name="entries"/> over this CPU's current entries in the file, keeping other CPUs'.</summary>
    public void Save(IEnumerable<KeyValuePair<string, (double First, double Second)>> entries)
    {
        try
        {
            JsonObject cpus = new();
            try
            {
                if (ReadCpus() is JsonObject old) cpus = (JsonObject)old.DeepClone();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException or FormatException) { }
            var merged = Read();
            foreach (var (key, e) in entries) merged[key] = e;
            var mine = new JsonObject();
            foreach (var (key, (x, y)) in merged.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                mine[key] = new JsonObject { [first] = Math.Round(x, decimals), [second] = Math.Round(y, decimals) };
            cpus[cpu] = mine;
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
            var root = new JsonObject { ["version"] = Version, ["what"] = what, ["cpus"] = cpus };
            AtomicFile.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.Warning("{Name}: could not write the calibration cache {File}: {Message}", logName, path, e.Message);
        }
    }

    /// <summary>The file's "cpus" object when the file exists and is of this version, else null.</summary>
    private JsonObject? ReadCpus()
    {
        if (!File.Exists(path)) return null;
        if (JsonNode.Parse(File.ReadAllText(path)) is not JsonObject root) return null;
        if (root["version"] is not JsonValue v || !v.TryGetValue(out int version) || version != Version) return null;
        return root["cpus"] as JsonObject;
    }
}
