// Data-side debiasing 2: counterfactual caption augmentation (`vlatune data augment`). For figures whose gender the
// image does not show (attributes.gender = unclear), biased annotations name a gender anyway (the synthetic world's
// pretrain split does so 80 % of the time, following the context's stereotype). Every caption of such an item that
// contains a gendered word is kept, and two captions are added: the neutral one (gendered words → the neutral word,
// "person") and the gender-swapped one (man ↔ woman, he ↔ she, ...). The caption genders of unclear figures are then
// balanced and the truthful word is present. Items with a visible gender, questions and images are left unchanged
// (gender-swapping them would contradict the image; that needs re-rendered images, which `data synth` pairs provide).
namespace VlaBias.Data;

public sealed record AugmentReport(int UnclearItems, int CaptionsAdded);

public static class CounterfactualAugmentation
{
    private static readonly (string a, string b)[] Pairs =
    [
        ("man", "woman"), ("men", "women"), ("male", "female"), ("boy", "girl"), ("boys", "girls"), ("he", "she"), ("him", "her"),
        ("his", "her"), ("himself", "herself"), ("father", "mother"), ("son", "daughter"), ("brother", "sister"), ("husband", "wife"),
        ("gentleman", "lady"), ("gentlemen", "ladies"), ("guy", "gal"), ("king", "queen"), ("mr", "mrs"),
    ];

    public static (List<ManifestItem> items, AugmentReport report) Run(IReadOnlyList<ManifestItem> items, string? split, string neutralWord = "person",
        string manWord = "man", string womanWord = "woman")
    {
        var swap = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (a, b) in Pairs.Prepend((manWord, womanWord)))
        {
            swap.TryAdd(a, b);
            swap.TryAdd(b, a);
        }
        var result = new List<ManifestItem>();
        int unclear = 0, added = 0;
        foreach (var it in items)
        {
            if (it.Attributes.Gender != Gender.Unclear || (split is not null && it.Split?.Name() != split)) { result.Add(it); continue; }
            unclear++;
            var captions = new List<string>(it.Captions);
            foreach (var c in it.Captions)
            {
                var words = c.Split(' ');
                if (!words.Any(swap.ContainsKey)) continue;
                foreach (var extra in new[]
                         {
                             string.Join(' ', words.Select(w => swap.ContainsKey(w) ? neutralWord : w)),
                             string.Join(' ', words.Select(w => swap.TryGetValue(w, out var s) ? s : w)),
                         })
                    if (!captions.Contains(extra)) { captions.Add(extra); added++; }
            }
            result.Add(it with { Captions = captions });
        }
        return (result, new AugmentReport(unclear, added));
    }
}
