// COCO captions JSON (captions_train2017.json shape): images [{id, file_name}] and annotations [{image_id, caption}].
// → one item per image with its captions. COCO has no gender labels: like Hendricks et al. (2018), an image is "man"
// or "woman" when its captions use gender words of exactly one list (data/words/gender_words.json), else "unclear".
using System.Text.Json;

namespace VlaBias.Data.Importers;

public static class CocoCaptions
{
    public static List<ManifestItem> Read(ImportContext ctx)
    {
        string wordsPath = ctx.Options.GenderWords;
        if (!File.Exists(ctx.Source)) throw new BadInputException($"{ctx.Source}: file not found (expected COCO captions JSON)");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(ctx.Source)); }
        catch (JsonException e) { throw new BadInputException($"{ctx.Source}: not valid JSON ({e.Message})"); }
        var (men, women) = GenderWords(wordsPath);
        var problems = new List<string>();
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("images", out var images) || images.ValueKind != JsonValueKind.Array)
                throw new BadInputException($"{ctx.Source}: field 'images': expected a list");
            if (!root.TryGetProperty("annotations", out var anns) || anns.ValueKind != JsonValueKind.Array)
                throw new BadInputException($"{ctx.Source}: field 'annotations': expected a list");
            var files = new Dictionary<long, string>();
            int i = 0;
            foreach (var im in images.EnumerateArray())
            {
                if (im.ValueKind != JsonValueKind.Object || !im.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.Number
                    || !im.TryGetProperty("file_name", out var fn) || fn.ValueKind != JsonValueKind.String)
                    problems.Add($"images[{i}]: expected {{\"id\": number, \"file_name\": string}}");
                else files[id.GetInt64()] = fn.GetString()!;
                i++;
            }
            var caps = new Dictionary<long, List<string>>();
            i = 0;
            foreach (var a in anns.EnumerateArray())
            {
                if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("image_id", out var id) || id.ValueKind != JsonValueKind.Number
                    || !a.TryGetProperty("caption", out var c) || c.ValueKind != JsonValueKind.String)
                    problems.Add($"annotations[{i}]: expected {{\"image_id\": number, \"caption\": string}}");
                else if (!files.ContainsKey(id.GetInt64())) problems.Add($"annotations[{i}]: image_id {id.GetInt64()} is not in 'images'");
                else (caps.TryGetValue(id.GetInt64(), out var l) ? l : caps[id.GetInt64()] = []).Add(c.GetString()!.Trim());
                i++;
            }
            var items = new List<ManifestItem>();
            foreach (var (id, file) in files.OrderBy(f => f.Key))
            {
                var image = ctx.ImagePath(file, problems, $"images id {id}");
                if (image is null) continue;
                var captions = caps.TryGetValue(id, out var l) ? l : [];
                items.Add(new ManifestItem
                {
                    Id = $"coco-{id}", Image = image, Split = null, Captions = captions,
                    Attributes = new ItemAttributes { Gender = GenderOfCaptions(captions, men, women) },
                });
            }
            ctx.ThrowIf(problems, ctx.Source);
            return items;
        }
    }

    public static (HashSet<string> men, HashSet<string> women) GenderWords(string path)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: gender word list not found");
        var o = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!;
        HashSet<string> L(string k) => o[k]!.AsArray().Select(x => x!.GetValue<string>().ToLowerInvariant()).ToHashSet();
        return (L("man"), L("woman"));
    }

    public static Gender GenderOfCaptions(IEnumerable<string> captions, HashSet<string> men, HashSet<string> women)
    {
        bool m = false, w = false;
        foreach (var c in captions)
            foreach (var word in c.ToLowerInvariant().Split([' ', ',', '.', '!', '?', ';', ':', '"', '\''], StringSplitOptions.RemoveEmptyEntries))
            {
                m |= men.Contains(word); w |= women.Contains(word);
            }
        return m == w ? Gender.Unclear : m ? Gender.Man : Gender.Woman;
    }
}
