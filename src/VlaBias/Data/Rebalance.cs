// Data-side debiasing 1: resampling a manifest split so every gender × context × role cell has the same count
// (`vlatune data rebalance`). Within each (context, role) cell the genders present are brought to the largest
// gender's count by drawing extra copies of random items of the smaller genders (oversample, the default: nothing is
// thrown away) or to the smallest count by dropping random items (undersample). Copies get ids "<id>~r<k>" and point
// at the same image. A gender that is absent from a cell cannot be resampled into it: such cells are reported.
// Items of other splits pass through unchanged. Deterministic for a seed.
namespace VlaBias.Data;

public sealed record RebalanceReport(int Cells, int Before, int After, IReadOnlyList<string> MissingGenders);

public static class Rebalance
{
    public static (List<ManifestItem> items, RebalanceReport report) Run(IReadOnlyList<ManifestItem> items, string split, bool undersample = false, int seed = 0)
    {
        var rng = new Random(seed);
        var inSplit = items.Where(i => i.Split?.Name() == split).ToList();
        if (inSplit.Count == 0) throw new BadInputException($"rebalance: no items with split '{split}'");
        var genders = inSplit.Select(i => i.Attributes.Gender.Name()).Distinct().Order(StringComparer.Ordinal).ToList();
        var result = items.Where(i => i.Split?.Name() != split).ToList();
        var missing = new List<string>();
        var cells = inSplit.GroupBy(i => (i.Context ?? "", i.Role ?? "")).OrderBy(g => g.Key.Item1, StringComparer.Ordinal).ThenBy(g => g.Key.Item2, StringComparer.Ordinal).ToList();
        foreach (var cell in cells)
        {
            var byGender = cell.GroupBy(i => i.Attributes.Gender.Name()).ToDictionary(g => g.Key, g => g.OrderBy(i => i.Id, StringComparer.Ordinal).ToList());
            foreach (var g in genders.Where(g => !byGender.ContainsKey(g))) missing.Add($"{cell.Key.Item1}/{cell.Key.Item2}: no '{g}' items");
            int target = undersample ? byGender.Values.Min(l => l.Count) : byGender.Values.Max(l => l.Count);
            foreach (var (gender, list) in byGender.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                if (undersample)
                {
                    result.AddRange(list.OrderBy(_ => rng.Next()).Take(target).OrderBy(i => i.Id, StringComparer.Ordinal));
                    continue;
                }
                result.AddRange(list);
                for (int k = 0; k < target - list.Count; k++)
                {
                    var src = list[rng.Next(list.Count)];
                    result.Add(src with { Id = $"{src.Id}~r{k + 1}" });
                }
            }
        }
        return (result, new RebalanceReport(cells.Count, inSplit.Count, result.Count(i => i.Split?.Name() == split), missing));
    }

    /// <summary>Gender counts per (context, role) of a split: the audit table rebalance equalizes.</summary>
    public static SortedDictionary<string, SortedDictionary<string, int>> Counts(IEnumerable<ManifestItem> items, string split) =>
        new(items.Where(i => i.Split?.Name() == split).GroupBy(i => $"{i.Context}/{i.Role}")
            .ToDictionary(g => g.Key, g => new SortedDictionary<string, int>(g.GroupBy(i => i.Attributes.Gender.Name()).ToDictionary(x => x.Key, x => x.Count()))), StringComparer.Ordinal);
}
