namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// N-gram counting shared by <see cref="Bleu"/> and <see cref="CiderD"/>: a caption is split on whitespace (Python's
/// <c>str.split()</c>) and the n-grams of each order 1..n are counted. An n-gram is keyed by its words joined with a
/// single space, which is unambiguous because words contain no whitespace.
/// </summary>
internal static class NGrams
{
    public static string[] Words(string caption) =>
        (caption ?? "").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    /// <summary>counts[k - 1][ngram] = how often the k-gram occurs, for k = 1..n.</summary>
    public static Dictionary<string, int>[] Count(string[] words, int n)
    {
        var counts = new Dictionary<string, int>[n];
        for (int k = 1; k <= n; k++)
        {
            var c = counts[k - 1] = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i + k <= words.Length; i++)
            {
                var key = string.Join(' ', words, i, k);
                c[key] = c.GetValueOrDefault(key) + 1;
            }
        }
        return counts;
    }

    public static void CheckInputs(IReadOnlyList<IReadOnlyList<string>> refsPerImage, IReadOnlyList<string> hypPerImage)
    {
        ArgumentNullException.ThrowIfNull(refsPerImage);
        ArgumentNullException.ThrowIfNull(hypPerImage);
        if (refsPerImage.Count != hypPerImage.Count)
            throw new ArgumentException(
                $"{refsPerImage.Count} reference sets but {hypPerImage.Count} hypotheses; need one hypothesis per image");
        for (int i = 0; i < refsPerImage.Count; i++)
            if (refsPerImage[i] is null || refsPerImage[i].Count == 0)
                throw new ArgumentException($"image {i} has no reference captions");
    }
}
