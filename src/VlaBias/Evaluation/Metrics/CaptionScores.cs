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
}
