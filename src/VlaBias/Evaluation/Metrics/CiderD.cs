namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// CIDEr-D exactly as pycocoevalcap's <c>cider/cider_scorer.py</c> computes it (the metric pycocoevalcap reports as
/// "CIDEr"). metrics.json key <c>cider_d</c>.
/// <para>
/// Inputs are tokenized captions split on whitespace; n-grams of orders 1..n (n = 4).
/// Document frequency df(g) = the number of images whose reference set contains g (over the evaluated images only,
/// so the score of one image depends on the whole evaluated set); N = number of images.
/// A caption's vector of order k has, for each of its k-grams, tf(g)·(ln N − ln max(1, df(g))), where tf is the raw
/// count. Its "length" is, as in the reference code, the total count of its bigrams (the code adds term frequencies
/// when the n-gram index is 1), i.e. max(0, words − 1), not the word count.
/// For hypothesis h and reference r, per order k:
/// s_k = Σ_{g in h} min(v_h(g), v_r(g))·v_r(g) / (‖v_h‖·‖v_r‖) (the division skipped when a norm is 0),
/// times exp(−δ² / (2σ²)) with δ = length(h) − length(r) and σ = 6.
/// Image score = 10 · mean_k(Σ_r s_k) / |refs|; corpus score = mean over images.
/// </para>
/// Source: Vedantam et al. 2015; salaniz/pycocoevalcap (ad63453) cider/cider_scorer.py, cider/cider.py.
/// </summary>
public static class CiderD
{
    /// <summary>Corpus CIDEr-D: the mean of <see cref="PerImage"/>.</summary>
    public static double Compute(IReadOnlyList<IReadOnlyList<string>> refsPerImage, IReadOnlyList<string> hypPerImage,
                                 int n = 4, double sigma = 6.0) =>
        PerImage(refsPerImage, hypPerImage, n, sigma).Average();

    /// <summary>CIDEr-D of each image, computed with document frequencies over all the given images.</summary>
    public static double[] PerImage(IReadOnlyList<IReadOnlyList<string>> refsPerImage, IReadOnlyList<string> hypPerImage,
                                    int n = 4, double sigma = 6.0)
    {
        NGrams.CheckInputs(refsPerImage, hypPerImage);
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "n-gram order must be at least 1");

        var hypCounts = hypPerImage.Select(h => NGrams.Count(NGrams.Words(h), n)).ToArray();
        var refCounts = refsPerImage.Select(rs => rs.Select(r => NGrams.Count(NGrams.Words(r), n)).ToArray()).ToArray();

        var documentFrequency = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var refs in refCounts)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var counts in refs)
                foreach (var order in counts)
                    seen.UnionWith(order.Keys);
            foreach (var gram in seen) documentFrequency[gram] = documentFrequency.GetValueOrDefault(gram) + 1;
        }
        double logN = Math.Log(refCounts.Length);

        var scores = new double[hypCounts.Length];
        for (int i = 0; i < scores.Length; i++)
        {
            var hyp = ToVector(hypCounts[i], documentFrequency, logN);
            var sum = new double[n];
            foreach (var refCount in refCounts[i])
            {
                var reference = ToVector(refCount, documentFrequency, logN);
                double delta = hyp.Length - reference.Length;
                double penalty = Math.Exp(-(delta * delta) / (2 * sigma * sigma));
                for (int k = 0; k < n; k++)
                {
                    double val = 0;
                    foreach (var (gram, vh) in hyp.Weights[k])
                    {
                        double vr = reference.Weights[k].GetValueOrDefault(gram);
                        val += Math.Min(vh, vr) * vr;
                    }
                    if (hyp.Norms[k] != 0 && reference.Norms[k] != 0) val /= hyp.Norms[k] * reference.Norms[k];
                    sum[k] += val * penalty;
                }
            }
            scores[i] = sum.Average() / refCounts[i].Length * 10.0;
        }
        return scores;
    }

    sealed record TfIdf(Dictionary<string, double>[] Weights, double[] Norms, int Length);

    static TfIdf ToVector(Dictionary<string, int>[] counts, Dictionary<string, int> documentFrequency, double logN)
    {
        int n = counts.Length;
        var weights = new Dictionary<string, double>[n];
        var norms = new double[n];
        int length = 0;
        for (int k = 0; k < n; k++)
        {
            weights[k] = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var (gram, tf) in counts[k])
            {
                double idf = logN - Math.Log(Math.Max(1.0, documentFrequency.GetValueOrDefault(gram)));
                double w = tf * idf;
                weights[k][gram] = w;
                norms[k] += w * w;
                if (k == 1) length += tf; // pycocoevalcap's quirk: the length is the bigram count
            }
            norms[k] = Math.Sqrt(norms[k]);
        }
        return new TfIdf(weights, norms, length);
    }
}
