using System.Runtime.CompilerServices;

namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// The pycocoevalcap caption scores of one evaluated set, on pycocoevalcap's 0–1 scale (CIDEr-D 0–10):
/// metrics.json keys <c>bleu_1</c> … <c>bleu_4</c>, <c>rouge_l</c>, <c>cider_d</c>.
/// </summary>
public sealed record CaptionScores(double Bleu1, double Bleu2, double Bleu3, double Bleu4, double RougeL, double CiderD)
{
    /// <summary>
    /// Tokenizes raw captions with <see cref="CaptionTokenizer"/> (as pycocoevalcap's eval.py runs PTBTokenizer on
    /// references and hypotheses) and computes <see cref="Bleu"/>, <see cref="Metrics.RougeL"/> and
    /// <see cref="Metrics.CiderD"/>.
    /// </summary>
    public static CaptionScores Compute(IReadOnlyList<IReadOnlyList<string>> rawRefsPerImage, IReadOnlyList<string> rawHypPerImage)
    {
        NGrams.CheckInputs(rawRefsPerImage, rawHypPerImage);
        IReadOnlyList<IReadOnlyList<string>> refs =
            rawRefsPerImage.Select(rs => (IReadOnlyList<string>)rs.Select(CaptionTokenizer.Tokenize).ToArray()).ToArray();
        IReadOnlyList<string> hyps = rawHypPerImage.Select(CaptionTokenizer.Tokenize).ToArray();
        var bleu = Bleu.Compute(refs, hyps, 4);
        return new CaptionScores(bleu[0], bleu[1], bleu[2], bleu[3],
                                 Metrics.RougeL.Compute(refs, hyps), Metrics.CiderD.Compute(refs, hyps));
    }

    /// <summary>
    /// The scores of many subsets of one set of images (bootstrap resamples, as image indices with repeats), each
    /// equal to <see cref="Compute"/> on the subset's captions: the captions are tokenized and counted once, BLEU's
    /// per-image counts and ROUGE-L's per-image scores are reused, and CIDEr-D recounts its document frequencies
    /// (<see cref="CiderD.Corpus"/>). Safe to call from several threads.
    /// </summary>
    public sealed class Prepared
    {
        readonly Bleu.ImageCounts[] _bleu;
        readonly double[] _rouge;
        readonly CiderD.Corpus _cider;

        public Prepared(IReadOnlyList<IReadOnlyList<string>> rawRefsPerImage, IReadOnlyList<string> rawHypPerImage)
        {
            NGrams.CheckInputs(rawRefsPerImage, rawHypPerImage);
            IReadOnlyList<IReadOnlyList<string>> refs =
                rawRefsPerImage.Select(rs => (IReadOnlyList<string>)rs.Select(CaptionTokenizer.Tokenize).ToArray()).ToArray();
            IReadOnlyList<string> hyps = rawHypPerImage.Select(CaptionTokenizer.Tokenize).ToArray();
            _bleu = Enumerable.Range(0, hyps.Count).Select(i => Bleu.Image(refs[i], hyps[i], 4)).ToArray();
            _rouge = Metrics.RougeL.PerImage(refs, hyps);
            _cider = new CiderD.Corpus(refs, hyps);
        }

        /// <summary>The scores of the images at <paramref name="sample"/> (indices, repeats allowed).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public CaptionScores Compute(IReadOnlyList<int> sample)
        {
            ArgumentNullException.ThrowIfNull(sample);
            if (sample.Count == 0) throw new ArgumentException("an empty sample has no caption scores");
            var bleu = Bleu.Corpus(sample.Select(i => _bleu[i]).ToArray(), 4);
            double rouge = 0;
            foreach (int i in sample) rouge += _rouge[i];
            return new CaptionScores(bleu[0], bleu[1], bleu[2], bleu[3], rouge / sample.Count, _cider.Mean(sample));
        }
    }
}
