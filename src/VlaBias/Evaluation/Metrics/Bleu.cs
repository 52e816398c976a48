using System.Runtime.CompilerServices;

namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// Corpus BLEU-1..n exactly as pycocoevalcap's <c>bleu/bleu_scorer.py</c> with option <c>'closest'</c> (what
/// <c>Bleu.compute_score</c> uses). metrics.json keys <c>bleu_1</c> … <c>bleu_4</c>.
/// <para>
/// Inputs are already tokenized (<see cref="CaptionTokenizer.Tokenize"/>) and split on whitespace. Per image i with
/// hypothesis length c_i: guess_k += max(0, c_i − k + 1); correct_k += Σ_g min(count_hyp(g), max_r count_r(g)) over the
/// hypothesis' k-grams g (clipping by the largest count in any one reference); r_i = the reference length closest to
/// c_i, ties to the shorter. Then, at corpus level, with c = Σ c_i and r = Σ r_i:
/// BLEU-n = Π_{k≤n} ((correct_k + 1e-15) / (guess_k + 1e-9))^(1/n), multiplied by exp(1 − 1/ratio) when
/// ratio = (c + 1e-15) / (r + 1e-9) &lt; 1.
/// </para>
/// Source: Papineni et al. 2002; salaniz/pycocoevalcap (ad63453) bleu/bleu_scorer.py, bleu/bleu.py.
/// </summary>
public static class Bleu
{
    const double Tiny = 1e-15, Small = 1e-9;

    /// <summary>BLEU-1..<paramref name="n"/> of the corpus; element k − 1 is BLEU-k.</summary>
    /// <param name="refsPerImage">the tokenized reference captions of each image (at least one each)</param>
    /// <param name="hypPerImage">the tokenized hypothesis caption of each image, in the same order</param>
    /// <param name="n">highest n-gram order (pycocoevalcap: 4)</param>
    public static double[] Compute(IReadOnlyList<IReadOnlyList<string>> refsPerImage, IReadOnlyList<string> hypPerImage, int n = 4)
    {
        NGrams.CheckInputs(refsPerImage, hypPerImage);
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "n-gram order must be at least 1");
        return Corpus(Enumerable.Range(0, hypPerImage.Count).Select(i => Image(refsPerImage[i], hypPerImage[i], n)).ToArray(), n);
    }

    /// <summary>One image's counts: hypothesis length c_i, closest reference length r_i, and per order k − 1 the
    /// guessed (max(0, c_i − k + 1)) and clipped-correct k-gram counts.</summary>
    public sealed record ImageCounts(int HypLength, int RefLength, int[] Guess, int[] Correct);

    /// <summary>The counts of one image (tokenized references and hypothesis).</summary>
    public static ImageCounts Image(IReadOnlyList<string> refs, string hyp, int n = 4)
    {
        // Largest count of each n-gram in any single reference, and the reference lengths.
        var maxRefCounts = new Dictionary<string, int>[n];
        for (int k = 0; k < n; k++) maxRefCounts[k] = new Dictionary<string, int>(StringComparer.Ordinal);
        var refLengths = new List<int>();
        foreach (var reference in refs)
        {
            var words = NGrams.Words(reference);
            refLengths.Add(words.Length);
            var counts = NGrams.Count(words, n);
            for (int k = 0; k < n; k++)
                foreach (var (gram, count) in counts[k])
                    maxRefCounts[k][gram] = Math.Max(maxRefCounts[k].GetValueOrDefault(gram), count);
        }

        var hypWords = NGrams.Words(hyp);
        int c = hypWords.Length;
        var guess = new int[n];
        var correct = new int[n];
        var hypCounts = NGrams.Count(hypWords, n);
        for (int k = 0; k < n; k++)
        {
            guess[k] = Math.Max(0, c - k);
            foreach (var (gram, count) in hypCounts[k])
                correct[k] += Math.Min(maxRefCounts[k].GetValueOrDefault(gram), count);
        }
        return new ImageCounts(c, ClosestRefLength(refLengths, c), guess, correct);
    }

    /// <summary>
    /// Corpus BLEU-1..n from per-image counts (an image listed twice counts twice). Every sum is of integers, so the
    /// result does not depend on the order of the images.
    /// </summary>
    public static double[] Corpus(IReadOnlyList<ImageCounts> images, int n = 4)
    {
        ArgumentNullException.ThrowIfNull(images);
        return Corpus(images.ToArray(), Enumerable.Range(0, images.Count).ToArray(), n);
    }

    /// <summary><see cref="Corpus(IReadOnlyList{ImageCounts}, int)"/> of the images at <paramref name="positions"/>
    /// (a bootstrap resample, repeats allowed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double[] Corpus(ImageCounts[] images, ReadOnlySpan<int> positions, int n = 4)
    {
        ArgumentNullException.ThrowIfNull(images);
        foreach (int i in positions) if (images[i].Guess.Length != n) throw new ArgumentException($"image counts are not of orders 1..{n}");
        double testLen = 0, refLen = 0;
        var guess = new double[n];
        var correct = new double[n];
        foreach (int i in positions)
        {
            var image = images[i];
            testLen += image.HypLength;
            refLen += image.RefLength;
            for (int k = 0; k < n; k++)
            {
                guess[k] += image.Guess[k];
                correct[k] += image.Correct[k];
            }
        }

        var bleus = new double[n];
        double product = 1.0;
        for (int k = 0; k < n; k++)
        {
            product *= (correct[k] + Tiny) / (guess[k] + Small);
            bleus[k] = Math.Pow(product, 1.0 / (k + 1));
        }
        double ratio = (testLen + Tiny) / (refLen + Small);
        if (ratio < 1)
            for (int k = 0; k < n; k++) bleus[k] *= Math.Exp(1 - 1 / ratio);
        return bleus;
    }

    /// <summary>The reference length closest to <paramref name="hypLength"/>; on a tie the shorter one.</summary>
    internal static int ClosestRefLength(IReadOnlyList<int> refLengths, int hypLength)
    {
        int best = refLengths[0];
        foreach (var l in refLengths)
        {
            int d = Math.Abs(l - hypLength), bestD = Math.Abs(best - hypLength);
            if (d < bestD || (d == bestD && l < best)) best = l;
        }
        return best;
    }
}
