// Counterfactual image sets (SocialCounterfactuals-style): ROOT/<scene>/<value>.<png|jpg|jpeg|webp>, where the images
// of one scene differ only in the protected attribute named by the file's stem (man, woman, male, female, unclear).
// → one item per image; the items of a scene share `pair` = the scene folder's name (and go to the same split).
namespace VlaBias.Data.Importers;

public static class CounterfactualFolders
{
    private static readonly string[] Extensions = [".png", ".jpg", ".jpeg", ".webp"];

    public static List<ManifestItem> Read(ImportContext ctx)
    {
        if (!Directory.Exists(ctx.Source)) throw new BadInputException($"{ctx.Source}: folder not found (expected ROOT/<scene>/<man|woman>.png)");
        var problems = new List<string>();
        var items = new List<ManifestItem>();
        foreach (var scene in Directory.EnumerateDirectories(ctx.Source).Order(StringComparer.Ordinal))
        {
            string sceneName = Path.GetFileName(scene);
            var files = Directory.EnumerateFiles(scene).Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal).ToList();
            var genders = new HashSet<string>();
            foreach (var f in files)
            {
                var stem = Path.GetFileNameWithoutExtension(f);
                var gender = DatasetImport.Gender(stem);
                if (gender is not { } parsed) { problems.Add($"{sceneName}/{Path.GetFileName(f)}: file name '{stem}' is not a gender value (expected man, woman, male, female or unclear)"); continue; }
                string g = parsed.Name();
                if (!genders.Add(g)) { problems.Add($"{sceneName}/{Path.GetFileName(f)}: a second '{g}' image in the scene"); continue; }
                items.Add(new ManifestItem
                {
                    Id = $"{ImportContext.IdOf("cf", sceneName)}-{g}", Image = Path.GetRelativePath(ctx.ManifestDir, Path.GetFullPath(f)).Replace('\\', '/'),
                    Split = null, Pair = sceneName, Attributes = new ItemAttributes { Gender = parsed },
                });
            }
            if (files.Count > 0 && genders.Count < 2) problems.Add($"{sceneName}: a counterfactual scene needs at least two images of different genders");
        }
        ctx.ThrowIf(problems, ctx.Source);
        return items;
    }
}
