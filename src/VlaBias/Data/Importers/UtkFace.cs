// UTKFace (Zhang et al. 2017): a folder of images named age_gender_race_datetime.jpg[.chip.jpg], gender 0 = male,
// 1 = female, race 0..4 = White, Black, Asian, Indian, Others. → one unpaired item per image.
namespace VlaBias.Data.Importers;

public static class UtkFace
{
    private static readonly string[] Races = ["White", "Black", "Asian", "Indian", "Others"];

    public static List<ManifestItem> Read(ImportContext ctx)
    {
        if (!Directory.Exists(ctx.Source)) throw new BadInputException($"{ctx.Source}: folder not found (expected UTKFace images named age_gender_race_date.jpg)");
        var problems = new List<string>();
        var items = new List<ManifestItem>();
        var root = Path.GetFullPath(ctx.Source);
        foreach (var path in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(path);
            if (!name.EndsWith(".jpg", StringComparison.OrdinalIgnoreCase) && !name.EndsWith(".png", StringComparison.OrdinalIgnoreCase)) continue;
            var parts = name.Split('_');
            if (parts.Length < 4 || !int.TryParse(parts[0], out int age) || parts[1] is not ("0" or "1") || !int.TryParse(parts[2], out int race) || race is < 0 or > 4)
            {
                problems.Add($"{name}: expected age_gender_race_date.jpg with gender 0|1 and race 0..4");
                continue;
            }
            var rel = Path.GetRelativePath(root, path);
            items.Add(new ManifestItem
            {
                Id = ImportContext.IdOf("utkface", rel),
                Image = Path.GetRelativePath(ctx.ManifestDir, path).Replace('\\', '/'), Split = null,
                Attributes = new ItemAttributes { Gender = parts[1] == "0" ? Gender.Man : Gender.Woman, Race = Races[race], Age = age.ToString() },
            });
        }
        ctx.ThrowIf(problems, ctx.Source);
        return items;
    }
}
