// FairFace (Kärkkäinen & Joo 2021) label CSV: file,age,gender,race,service_test with file relative to the data set's
// root (e.g. "val/1.jpg"), gender Male|Female. → one unpaired item per row, gender man|woman, race and age kept.
namespace VlaBias.Data.Importers;

public static class FairFace
{
    public static List<ManifestItem> Read(ImportContext ctx)
    {
        var records = Csv.Read(ctx.Source);
        var col = Csv.Header(ctx.Source, records, "file", "gender");
        col.TryGetValue("race", out int race); col.TryGetValue("age", out int age);
        bool hasRace = col.ContainsKey("race"), hasAge = col.ContainsKey("age");
        var problems = new List<string>();
        var items = new List<ManifestItem>();
        foreach (var r in records.Skip(1))
        {
            string where = $"line {r.Line}";
            if (r.Fields.Count < records[0].Fields.Count) { problems.Add($"{where}: expected {records[0].Fields.Count} fields, got {r.Fields.Count}"); continue; }
            string file = r.Fields[col["file"]].Trim();
            if (file.Length == 0) { problems.Add($"{where}: field 'file': empty"); continue; }
            var g = DatasetImport.Gender(r.Fields[col["gender"]]);
            if (g is null) { problems.Add($"{where}: field 'gender': unknown value '{r.Fields[col["gender"]]}' (expected Male or Female)"); continue; }
            var image = ctx.ImagePath(file, problems, where);
            if (image is null) continue;
            items.Add(new ManifestItem
            {
                Id = ImportContext.IdOf("fairface", file), Image = image, Split = null,
                Attributes = new ItemAttributes { Gender = g.Value, Race = hasRace ? r.Fields[race].Trim() : null, Age = hasAge ? r.Fields[age].Trim() : null },
            });
        }
        ctx.ThrowIf(problems, ctx.Source);
        return items;
    }
}
