// `vlatune data import`: a data set in its own layout → a manifest (Data/Manifest.cs). Images are referenced, not
// copied: manifest paths are relative to the manifest's folder. Each importer reads its format and reports every bad
// row with its line number (or file name) in one BadInputException; this file holds what they share: options,
// gender labels, split assignment (items sharing a pair stay together), probe questions, and the write.
//
// Tuning needs counterfactual pairs (items sharing `pair`, one man and one woman). Only counterfactual-folders input
// has them; FairFace, UTKFace, COCO and plain CSV (without a pair column) give unpaired items, which the evaluator
// uses for group gaps (and a tune run needs a counterfactual set for its 'tune' and 'val' splits).
namespace VlaBias.Data.Importers;

public sealed record ImportOptions
{
    public string Format { get; init; } = "";
    public string Source { get; init; } = "";
    public string Out { get; init; } = "";
    /// <summary>Folder the source's image paths are relative to (default: the source's folder).</summary>
    public string? ImagesRoot { get; init; }
    public double SplitVal { get; init; } = 0.1;
    public double SplitTest { get; init; } = 0.1;
    /// <summary>The split of everything not in val or test: tune (a debiasing run trains on it) or train.</summary>
    public string RestSplit { get; init; } = "tune";
    public long Seed { get; init; }
    /// <summary>Probe questions added to every item; null adds none.</summary>
    public ProbingSuite? Probes { get; init; }
    /// <summary>Gender word lists (COCO: an image's gender comes from its captions' words).</summary>
    public string GenderWords { get; init; } = "data/words/gender_words.json";
    /// <summary>Check that every referenced image exists.</summary>
    public bool CheckImages { get; init; } = true;
}

public sealed record ImportResult(string ManifestPath, IReadOnlyList<ManifestItem> Items)
{
    public int Pairs => Items.Where(i => i.Pair is not null).Select(i => i.Pair).Distinct().Count();
}

public static class DatasetImport
{
    public static readonly string[] Formats = ["fairface", "utkface", "coco", "csv", "counterfactual-folders"];

    public static ImportResult Run(ImportOptions o)
    {
        if (o.SplitVal < 0 || o.SplitTest < 0 || o.SplitVal + o.SplitTest > 1)
            throw new BadInputException($"--split-val/--split-test: {o.SplitVal} and {o.SplitTest} must be ≥ 0 and sum to at most 1");
        if (o.RestSplit is not ("tune" or "train")) throw new BadInputException($"--rest-split: unknown value '{o.RestSplit}' (expected tune or train)");
        string outDir = Path.GetDirectoryName(Path.GetFullPath(o.Out))!;
        var ctx = new ImportContext(o, outDir);
        var items = o.Format switch
        {
            "fairface" => FairFace.Read(ctx),
            "utkface" => UtkFace.Read(ctx),
            "coco" => CocoCaptions.Read(ctx),
            "csv" => PlainCsv.Read(ctx),
            "counterfactual-folders" => CounterfactualFolders.Read(ctx),
            _ => throw new BadInputException($"--format: unknown value '{o.Format}' (expected {string.Join(", ", Formats)})"),
        };
        if (items.Count == 0) throw new BadInputException($"{o.Source}: no items found");
        var dupe = items.GroupBy(i => i.Id).FirstOrDefault(g => g.Count() > 1);
        if (dupe is not null) throw new BadInputException($"{o.Source}: two items would have id '{dupe.Key}'");
        items = AssignSplits(items, o);
        if (o.Probes is not null) items = items.Select(i => o.Probes.AddTo(i)).ToList();
        Manifest.Write(o.Out, items);
        return new ImportResult(o.Out, items);
    }

    /// <summary>man | woman | unclear for the labels data sets use; null when the label is not a gender.</summary>
    public static Gender? Gender(string label) => label.Trim().ToLowerInvariant() switch
    {
        "man" or "male" or "m" or "men" or "boy" => Data.Gender.Man,
        "woman" or "female" or "f" or "women" or "girl" => Data.Gender.Woman,
        "unclear" or "person" or "neutral" or "unknown" or "nonbinary" or "non-binary" => Data.Gender.Unclear,
        _ => null,
    };

    /// <summary>Val and test by fraction of groups (a pair is one group), shuffled by the seed; the rest is RestSplit.
    /// Items that name their own split keep it.</summary>
    public static List<ManifestItem> AssignSplits(List<ManifestItem> items, ImportOptions o)
    {
        var groups = items.Where(i => i.Split is null).Select(i => i.Pair ?? "\0" + i.Id).Distinct().OrderBy(g => g, StringComparer.Ordinal).ToList();
        var rng = new Random(unchecked((int)o.Seed));
        for (int i = groups.Count - 1; i > 0; i--) { int j = rng.Next(i + 1); (groups[i], groups[j]) = (groups[j], groups[i]); }
        int nVal = (int)Math.Round(groups.Count * o.SplitVal), nTest = (int)Math.Round(groups.Count * o.SplitTest);
        var rest = ManifestValues.ParseSplit(o.RestSplit, "--rest-split");
        var split = new Dictionary<string, Split>();
        for (int i = 0; i < groups.Count; i++) split[groups[i]] = i < nVal ? Data.Split.Val : i < nVal + nTest ? Data.Split.Test : rest;
        return items.Select(i => i.Split is not null ? i : i with { Split = split[i.Pair ?? "\0" + i.Id] }).ToList();
    }
}

/// <summary>What an importer needs: the options, the manifest's folder, and path helpers.</summary>
public sealed class ImportContext(ImportOptions options, string manifestDir)
{
    public ImportOptions Options { get; } = options;
    public string ManifestDir { get; } = manifestDir;
    public string Source => Options.Source;
    public string ImagesRoot => Path.GetFullPath(Options.ImagesRoot ?? (Directory.Exists(Source) ? Source : Path.GetDirectoryName(Path.GetFullPath(Source))!));

    /// <summary>The manifest path of an image given relative to the images root; null (and a problem) if missing.</summary>
    public string? ImagePath(string relative, List<string> problems, string where)
    {
        var full = Path.GetFullPath(Path.Combine(ImagesRoot, relative));
        if (Options.CheckImages && !File.Exists(full)) { problems.Add($"{where}: image not found: {full}"); return null; }
        return Path.GetRelativePath(ManifestDir, full).Replace('\\', '/');
    }

    public static string IdOf(string prefix, string relative) =>
        prefix + "-" + string.Concat(Path.ChangeExtension(relative, null)!.Select(c => char.IsLetterOrDigit(c) || c == '-' ? c : '_'));

    public void ThrowIf(List<string> problems, string path)
    {
        if (problems.Count > 0)
            throw new BadInputException($"{path}: {problems.Count} problem{(problems.Count == 1 ? "" : "s")}\n" + string.Join("\n", problems.Take(50))
                + (problems.Count > 50 ? $"\n… {problems.Count - 50} more" : ""));
    }
}
