// The manifest: JSON Lines, one ManifestItem per line, image paths relative to the manifest's folder.
// In: a .jsonl file from `data synth`, an importer, or a person. Out: validated items, or one BadInputException that
// lists every problem with its line number. Write is atomic: a temporary file in the same folder, then a rename.
//
// Required per line: id, image, split, attributes.gender. Optional: captions and questions (empty when absent),
// attributes.tone ("1".."4"), attributes.race and attributes.age (imported data), context, role, pair, lean.
// Unknown fields are ignored.
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace VlaBias.Data;

public sealed record ItemAttributes
{
    /// <summary>man | woman | unclear (presented gender).</summary>
    public Gender Gender { get; init; }
    /// <summary>"1".."4", or null when unknown.</summary>
    public string? Tone { get; init; }
    /// <summary>Race or ethnicity label as the source data set gives it (imported data; not validated).</summary>
    public string? Race { get; init; }
    /// <summary>Age or age band as the source data set gives it (imported data; not validated).</summary>
    public string? Age { get; init; }
}

/// <summary>The stereotype direction of an item's context and role, so metrics can tell stereotypical from
/// counter-stereotypical images.</summary>
public sealed record StereotypeLean
{
    public string? Context { get; init; }
    public string? Role { get; init; }
}

public sealed record ManifestQuestion
{
    public string Q { get; init; } = "";
    /// <summary>The answer; null for probes of truthful splits (they have no right answer).</summary>
    public string? A { get; init; }
    public QuestionKind Kind { get; init; }
    /// <summary>The probed attribute (probe questions).</summary>
    public string? Attribute { get; init; }
    /// <summary>train | test: whether tuning may see this attribute.</summary>
    public Split? AttributeSplit { get; init; }
    /// <summary>The answer options offered, e.g. ["yes", "no", "unknown"]; null for open questions.</summary>
    public IReadOnlyList<string>? Options { get; init; }
}

public sealed record ManifestItem
{
    public string Id { get; init; } = "";
    /// <summary>Path relative to the manifest's folder.</summary>
    public string Image { get; init; } = "";
    /// <summary>train | val | test | pretrain | tune; null only while an importer has not assigned it yet.</summary>
    public Split? Split { get; init; }
    public IReadOnlyList<string> Captions { get; init; } = [];
    public ItemAttributes Attributes { get; init; } = new();
    public string? Context { get; init; }
    public string? Role { get; init; }
    /// <summary>Items sharing a pair id are counterfactuals: the same scene with only protected attributes changed.</summary>
    public string? Pair { get; init; }
    public IReadOnlyList<ManifestQuestion> Questions { get; init; } = [];
    public StereotypeLean? Lean { get; init; }
}

public static class Manifest
{
    /// <summary>The names of the splits and genders (what the manifest file spells).</summary>
    public static readonly string[] Splits = ManifestValues.Splits.Select(s => s.Name()).ToArray();
    public static readonly string[] Genders = ManifestValues.Genders.Select(g => g.Name()).ToArray();
    public static readonly string[] Tones = ["1", "2", "3", "4"];

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        WriteIndented = false,
        Converters = { ManifestValues.Json },
    };

    /// <summary>Reads and validates a manifest. checkImages: every image file must exist.</summary>
    public static IReadOnlyList<ManifestItem> Load(string path, bool checkImages = true)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: file not found (expected a JSON Lines manifest)");
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var items = new List<ManifestItem>();
        var problems = new List<string>();
        var firstLineOfId = new Dictionary<string, int>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var lineProblems = new List<string>();
            var item = ParseLine(line, lineProblems);
            if (item is not null)
            {
                if (firstLineOfId.TryGetValue(item.Id, out var first))
                    lineProblems.Add($"field 'id': duplicate '{item.Id}' (first on line {first})");
                else firstLineOfId[item.Id] = lineNo;
                if (checkImages && lineProblems.Count == 0 && !File.Exists(Path.Combine(dir, item.Image)))
                    lineProblems.Add($"field 'image': file not found: {item.Image}");
            }
            foreach (var p in lineProblems) problems.Add($"line {lineNo}: {p}");
            if (item is not null && lineProblems.Count == 0) items.Add(item);
        }
        if (problems.Count > 0)
            throw new BadInputException($"{path}: {problems.Count} problem{(problems.Count == 1 ? "" : "s")}\n" + string.Join("\n", problems));
        return items;
    }

    // Validates one line field by field (so one line can report several problems), then deserializes it.
    private static ManifestItem? ParseLine(string line, List<string> problems)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line); }
        catch (JsonException e)
        {
            problems.Add($"malformed JSON: {e.Message.Split(" Path:")[0].Split(" LineNumber:")[0]}");
            return null;
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) { problems.Add($"expected a JSON object, got {root.ValueKind}"); return null; }

            string? Str(JsonElement obj, string field, string name, bool required, string[]? allowed = null)
            {
                if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
                {
                    if (required) problems.Add($"field '{field}': missing");
                    return null;
                }
                if (v.ValueKind != JsonValueKind.String) { problems.Add($"field '{field}': expected a string, got {v.ValueKind}"); return null; }
                var s = v.GetString()!;
                if (required && s.Length == 0) { problems.Add($"field '{field}': empty"); return null; }
                if (allowed is not null && !allowed.Contains(s)) { problems.Add($"field '{field}': unknown value '{s}' (expected {string.Join('|', allowed)})"); return null; }
                return s;
            }
            void StrList(JsonElement obj, string field, string name)
            {
                if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return;
                if (v.ValueKind != JsonValueKind.Array) { problems.Add($"field '{field}': expected a list of strings"); return; }
                int i = 0;
                foreach (var e in v.EnumerateArray())
                {
                    if (e.ValueKind != JsonValueKind.String) problems.Add($"field '{field}[{i}]': expected a string, got {e.ValueKind}");
                    i++;
                }
            }

            int before = problems.Count;
            Str(root, "id", "id", true);
            Str(root, "image", "image", true);
            Str(root, "split", "split", true, Splits);
            StrList(root, "captions", "captions");
            Str(root, "context", "context", false);
            Str(root, "role", "role", false);
            Str(root, "pair", "pair", false);

            if (!root.TryGetProperty("attributes", out var attrs) || attrs.ValueKind == JsonValueKind.Null) problems.Add("field 'attributes': missing");
            else if (attrs.ValueKind != JsonValueKind.Object) problems.Add("field 'attributes': expected an object");
            else
            {
                Str(attrs, "attributes.gender", "gender", true, Genders);
                Str(attrs, "attributes.tone", "tone", false, Tones);
            }

            if (root.TryGetProperty("lean", out var lean) && lean.ValueKind != JsonValueKind.Null)
            {
                if (lean.ValueKind != JsonValueKind.Object) problems.Add("field 'lean': expected an object");
                else
                {
                    Str(lean, "lean.context", "context", false, World.Leans);
                    Str(lean, "lean.role", "role", false, World.Leans);
                }
            }

            if (root.TryGetProperty("questions", out var qs) && qs.ValueKind != JsonValueKind.Null)
            {
                if (qs.ValueKind != JsonValueKind.Array) problems.Add("field 'questions': expected a list");
                else
                {
                    int i = 0;
                    foreach (var q in qs.EnumerateArray())
                    {
                        var f = $"questions[{i++}]";
                        if (q.ValueKind != JsonValueKind.Object) { problems.Add($"field '{f}': expected an object"); continue; }
                        Str(q, $"{f}.q", "q", true);
                        var a = Str(q, $"{f}.a", "a", false);
                        var kind = Str(q, $"{f}.kind", "kind", true, ["fact", "probe"]);
                        var attribute = Str(q, $"{f}.attribute", "attribute", false);
                        Str(q, $"{f}.attribute_split", "attribute_split", false, ["train", "test"]);
                        if (kind == "probe" && string.IsNullOrEmpty(attribute)) problems.Add($"field '{f}.attribute': missing (a probe question names the attribute it probes)");
                        StrList(q, $"{f}.options", "options");
                        if (a is not null && q.TryGetProperty("options", out var opts) && opts.ValueKind == JsonValueKind.Array
                            && opts.EnumerateArray().All(o => o.ValueKind == JsonValueKind.String) && !opts.EnumerateArray().Any(o => o.GetString() == a))
                            problems.Add($"field '{f}.a': '{a}' is not one of the options");
                    }
                }
            }
            if (problems.Count > before) return null;
            try { return root.Deserialize<ManifestItem>(Json); }
            catch (JsonException e) { problems.Add($"cannot read item: {e.Message}"); return null; }
        }
    }

    /// <summary>One item as its manifest line (no trailing newline).</summary>
    public static string ToLine(ManifestItem item) => JsonSerializer.Serialize(item, Json);

    /// <summary>Writes items read from <paramref name="from"/> to <paramref name="to"/>, image paths made relative to the new folder.</summary>
    public static void WriteRelocated(string from, string to, IEnumerable<ManifestItem> items)
    {
        string srcDir = Path.GetDirectoryName(Path.GetFullPath(from))!, dstDir = Path.GetDirectoryName(Path.GetFullPath(to))!;
        Directory.CreateDirectory(dstDir);
        Write(to, srcDir == dstDir ? items : items.Select(i => i with { Image = Path.GetRelativePath(dstDir, Path.Combine(srcDir, i.Image)) }));
    }

    /// <summary>Writes the items as JSON Lines atomically: a half-written manifest never replaces a good one.</summary>
    public static void Write(string path, IEnumerable<ManifestItem> items)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var tmp = full + $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var w = new StreamWriter(tmp, false, new UTF8Encoding(false)))
            {
                w.NewLine = "\n";
                foreach (var item in items) w.WriteLine(ToLine(item));
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }
}
