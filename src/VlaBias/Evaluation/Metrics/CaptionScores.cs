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
    /// (<see cref="CiderD.Corpus"/>). Images with the same hypothesis and references (templated captions make most of
    /// them) have the same counts and scores: each such content is prepared once and a sample is read as its images'
    /// contents. Safe to call from several threads.
    /// </summary>
    public sealed class Prepared
    {
        readonly int[] _content;          // [image]: its content (hypothesis and references)
        readonly Bleu.ImageCounts[] _bleu; // [content]
        readonly double[] _rouge;          // [content]
        readonly CiderD.Corpus _cider;     // over the contents

        public Prepared(IReadOnlyList<IReadOnlyList<string>> rawRefsPerImage, IReadOnlyList<string> rawHypPerImage)
        {
            NGrams.CheckInputs(rawRefsPerImage, rawHypPerImage);
            // Contents keyed by the ids of their texts (hypothesis, then each reference): equal keys, equal captions.
            var textId = new Dictionary<string, int>(StringComparer.Ordinal);
            int Id(string text) => textId.TryGetValue(text, out int id) ? id : textId[text] = textId.Count;
            var contentOf = new Dictionary<string, int>(StringComparer.Ordinal);
            var firstImage = new List<int>();
            _content = new int[rawHypPerImage.Count];
            for (int i = 0; i < _content.Length; i++)
            {
                string key = string.Join(',', rawRefsPerImage[i].Select(Id).Prepend(Id(rawHypPerImage[i])));
                if (!contentOf.TryGetValue(key, out int c)) { contentOf[key] = c = firstImage.Count; firstImage.Add(i); }
                _content[i] = c;
            }
            var tokens = new Dictionary<string, string>(StringComparer.Ordinal);
            string Tokenize(string raw) => tokens.TryGetValue(raw, out var t) ? t : tokens[raw] = CaptionTokenizer.Tokenize(raw);
            IReadOnlyList<IReadOnlyList<string>> refs =
                firstImage.Select(i => (IReadOnlyList<string>)rawRefsPerImage[i].Select(Tokenize).ToArray()).ToArray();
            IReadOnlyList<string> hyps = firstImage.Select(i => Tokenize(rawHypPerImage[i])).ToArray();
            _bleu = Enumerable.Range(0, hyps.Count).Select(c => Bleu.Image(refs[c], hyps[c], 4)).ToArray();
            _rouge = Metrics.RougeL.PerImage(refs, hyps);
            _cider = new CiderD.Corpus(refs, hyps);
        }

        /// <summary>The scores of the images at <paramref name="sample"/> (indices, repeats allowed).</summary>
        public CaptionScores Compute(IReadOnlyList<int> sample)
        {
            ArgumentNullException.ThrowIfNull(sample);
            return Compute(sample.ToArray());
        }

        /// <summary>The scores of the images at <paramref name="sample"/> (indices, repeats allowed).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public CaptionScores Compute(ReadOnlySpan<int> sample)
        {
            if (sample.Length == 0) throw new ArgumentException("an empty sample has no caption scores");
            var contents = new int[sample.Length];
            for (int i = 0; i < contents.Length; i++) contents[i] = _content[sample[i]];
            var bleu = Bleu.Corpus(_bleu, (ReadOnlySpan<int>)contents, 4);
            double rouge = 0;
            foreach (int c in contents) rouge += _rouge[c];
            return new CaptionScores(bleu[0], bleu[1], bleu[2], bleu[3], rouge / contents.Length, _cider.Mean((ReadOnlySpan<int>)contents));
        }
    }
}
