using System.Runtime.CompilerServices;

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

    /// <summary>
    /// CIDEr-D of many subsets of one evaluated set (bootstrap resamples, given as image indices with repeats), each
    /// equal to <see cref="Compute"/> on the subset's lists. The n-grams are counted once; per subset only the document
    /// frequencies (an image drawn twice counts twice, as it does in the lists) and the tf-idf weights are recomputed,
    /// in the same order as <see cref="PerImage"/> computes them.
    /// </summary>
    public sealed class Corpus
    {
        readonly int _n;
        readonly double _sigma;
        readonly Text[] _hyps;            // [image]
        readonly Text[][] _refs;          // [image][reference]
        readonly int[][] _refGrams;       // [image]: the distinct n-grams of all its references (what df counts)
        readonly Match[][] _matches;      // [image][reference]: hypothesis n-grams the reference also has
        readonly int _gramCount;
        readonly int _longest;            // the most n-grams of any one caption

        // A caption's n-grams of all orders in one array (order k at Start[k]..Start[k + 1]), each order in first-occurrence
        // order as NGrams.Count enumerates them; Length is pycocoevalcap's length (the bigram count).
        sealed record Text(int[] Grams, int[] Tf, int[] Start, int Length);

        // Pairs (index in the hypothesis' Grams, index in the reference's Grams) of equal n-grams, hypothesis order; order k at Start[k]..
        sealed record Match(int[] Hyp, int[] Ref, int[] Start);

        public Corpus(IReadOnlyList<IReadOnlyList<string>> refsPerImage, IReadOnlyList<string> hypPerImage, int n = 4, double sigma = 6.0)
        {
            NGrams.CheckInputs(refsPerImage, hypPerImage);
            if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "n-gram order must be at least 1");
            _n = n;
            _sigma = sigma;
            var ids = new Dictionary<string, int>(StringComparer.Ordinal);
            Text Encode(string caption)
            {
                var counts = NGrams.Count(NGrams.Words(caption), n);
                var start = new int[n + 1];
                for (int k = 0; k < n; k++) start[k + 1] = start[k] + counts[k].Count;
                var grams = new int[start[n]];
                var tf = new int[start[n]];
                int length = 0, at = 0;
                for (int k = 0; k < n; k++)
                    foreach (var (gram, count) in counts[k])
                    {
                        if (!ids.TryGetValue(gram, out int id)) ids[gram] = id = ids.Count;
                        grams[at] = id;
                        tf[at++] = count;
                        if (k == 1) length += count;
                    }
                return new Text(grams, tf, start, length);
            }
            _hyps = hypPerImage.Select(Encode).ToArray();
            _refs = refsPerImage.Select(rs => rs.Select(Encode).ToArray()).ToArray();
            _refGrams = _refs.Select(rs => rs.SelectMany(r => r.Grams).Distinct().ToArray()).ToArray();
            _matches = new Match[_hyps.Length][];
            for (int i = 0; i < _hyps.Length; i++)
            {
                var hyp = _hyps[i];
                _matches[i] = _refs[i].Select(reference =>
                {
                    var hypIndex = new List<int>();
                    var refIndex = new List<int>();
                    var start = new int[n + 1];
                    for (int k = 0; k < n; k++)
                    {
                        var at = new Dictionary<int, int>();
                        for (int j = reference.Start[k]; j < reference.Start[k + 1]; j++) at[reference.Grams[j]] = j;
                        for (int j = hyp.Start[k]; j < hyp.Start[k + 1]; j++)
                            if (at.TryGetValue(hyp.Grams[j], out int r)) { hypIndex.Add(j); refIndex.Add(r); }
                        start[k + 1] = hypIndex.Count;
                    }
                    return new Match([.. hypIndex], [.. refIndex], start);
                }).ToArray();
            }
            _gramCount = ids.Count;
            _longest = _hyps.Concat(_refs.SelectMany(r => r)).Select(t => t.Grams.Length).DefaultIfEmpty(0).Max();
        }

        /// <summary>Corpus CIDEr-D of the images at <paramref name="sample"/> (indices into the set, repeats allowed), as
        /// <see cref="Compute"/> gives on those images' lists. Safe to call from several threads.</summary>
        public double Mean(IReadOnlyList<int> sample)
        {
            ArgumentNullException.ThrowIfNull(sample);
            return Mean(sample.ToArray());
        }

        /// <summary><see cref="Mean(IReadOnlyList{int})"/> of positions.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public double Mean(ReadOnlySpan<int> sample)
        {
            if (sample.Length == 0) throw new ArgumentException("an empty sample has no mean CIDEr-D");
            var df = new int[_gramCount];
            foreach (int i in sample)
                foreach (int g in _refGrams[i]) df[g]++;
            double logN = Math.Log(sample.Length);
            var idf = new double[_gramCount];
            for (int g = 0; g < idf.Length; g++) idf[g] = logN - Math.Log(Math.Max(1.0, df[g]));

            // An image drawn twice has the same score both times: compute it once, add it every time.
            var score = new double[_hyps.Length];
            var scored = new bool[_hyps.Length];
            var scratch = new double[2 * _longest];
            double sum = 0;
            foreach (int i in sample)
            {
                if (!scored[i]) { score[i] = Score(i, idf, scratch); scored[i] = true; }
                sum += score[i];
            }
            return sum / sample.Length;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        double Score(int image, double[] idf, double[] scratch)
        {
            var hyp = _hyps[image];
            var hypWeights = scratch.AsSpan(0, hyp.Grams.Length);
            Span<double> hypNorms = stackalloc double[_n], refNorms = stackalloc double[_n], sum = stackalloc double[_n];
            Weights(hyp, idf, hypWeights, hypNorms);
            sum.Clear();
            var refs = _refs[image];
            for (int r = 0; r < refs.Length; r++)
            {
                var reference = refs[r];
                var refWeights = scratch.AsSpan(_longest, reference.Grams.Length);
                Weights(reference, idf, refWeights, refNorms);
                double delta = hyp.Length - reference.Length;
                double penalty = Math.Exp(-(delta * delta) / (2 * _sigma * _sigma));
                var match = _matches[image][r];
                for (int k = 0; k < _n; k++)
                {
                    // PerImage also adds min(vh, 0)·0 for n-grams the reference lacks: +0 to a non-negative sum, no change.
                    double val = 0;
                    for (int m = match.Start[k]; m < match.Start[k + 1]; m++)
                    {
                        double vh = hypWeights[match.Hyp[m]], vr = refWeights[match.Ref[m]];
                        val += Math.Min(vh, vr) * vr;
                    }
                    if (hypNorms[k] != 0 && refNorms[k] != 0) val /= hypNorms[k] * refNorms[k];
                    sum[k] += val * penalty;
                }
            }
            double mean = 0;
            for (int k = 0; k < _n; k++) mean += sum[k];   // as Enumerable.Average: in order, then divided
            return mean / _n / refs.Length * 10.0;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        void Weights(Text text, double[] idf, Span<double> weights, Span<double> norms)
        {
            for (int k = 0; k < _n; k++)
            {
                double norm = 0;
                for (int j = text.Start[k]; j < text.Start[k + 1]; j++)
                {
                    double w = text.Tf[j] * idf[text.Grams[j]];
                    weights[j] = w;
                    norm += w * w;
                }
                norms[k] = Math.Sqrt(norm);
            }
        }
    }
}
