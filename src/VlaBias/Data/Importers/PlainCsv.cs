// A plain CSV of images: required columns image, gender; optional caption (rows of the same image add captions),
// id, split, pair, context, role, race, age. Gender labels man/woman/male/female/unclear.
namespace VlaBias.Data.Importers;

public static class PlainCsv
{
    public static List<ManifestItem> Read(ImportContext ctx)
    {
        var records = Csv.Read(ctx.Source);
        var col = Csv.Header(ctx.Source, records, "image", "gender");
        string? Get(CsvRecord r, string name) => col.TryGetValue(name, out var i) && i < r.Fields.Count && r.Fields[i].Trim().Length > 0 ? r.Fields[i].Trim() : null;
        var problems = new List<string>();
        var byImage = new Dictionary<string, ManifestItem>();
        var order = new List<string>();
        foreach (var r in records.Skip(1))
        {
            string where = $"line {r.Line}";
            if (r.Fields.Count != records[0].Fields.Count) { problems.Add($"{where}: expected {records[0].Fields.Count} fields, got {r.Fields.Count}"); continue; }
            var file = Get(r, "image");
            if (file is null) { problems.Add($"{where}: field 'image': empty"); continue; }
            var g = DatasetImport.Gender(Get(r, "gender") ?? "");
            if (g is null) { problems.Add($"{where}: field 'gender': unknown value '{Get(r, "gender")}' (expected man, woman or unclear)"); continue; }
            var split = Get(r, "split");
            if (split is not null && !Manifest.Splits.Contains(split)) { problems.Add($"{where}: field 'split': unknown value '{split}' (expected {string.Join('|', Manifest.Splits)})"); continue; }
            var caption = Get(r, "caption");
            if (byImage.TryGetValue(file, out var seen))
            {
                if (seen.Attributes.Gender != g) problems.Add($"{where}: field 'gender': '{g.Value.Name()}' differs from an earlier row of {file}");
                if (caption is not null) byImage[file] = seen with { Captions = seen.Captions.Append(caption).ToList() };
                continue;
            }
            var image = ctx.ImagePath(file, problems, where);
            if (image is null) continue;
            byImage[file] = new ManifestItem
            {
                Id = Get(r, "id") ?? ImportContext.IdOf("csv", file), Image = image, Split = split is null ? null : ManifestValues.ParseSplit(split),
                Captions = caption is null ? [] : [caption], Pair = Get(r, "pair"), Context = Get(r, "context"), Role = Get(r, "role"),
                Attributes = new ItemAttributes { Gender = g.Value, Race = Get(r, "race"), Age = Get(r, "age") },
            };
            order.Add(file);
        }
        ctx.ThrowIf(problems, ctx.Source);
        return order.Select(f => byImage[f]).ToList();
    }
}
