namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// ROUGE-L as pycocoevalcap's <c>rouge/rouge.py</c> computes it. metrics.json key <c>rouge_l</c>.
/// <para>
/// Per image, with the hypothesis c and references r_j split on single spaces (Python <c>split(" ")</c>):
/// P = max_j LCS(c, r_j) / |c| and R = max_j LCS(c, r_j) / |r_j| (the two maxima are taken separately, possibly over
/// different references), F = (1 + β²)·P·R / (R + β²·P) with β = 1.2, and F = 0 when P or R is 0.
/// The corpus score is the mean of F over images.
/// </para>
/// Source: Lin 2004 (ROUGE-L); salaniz/pycocoevalcap (ad63453) rouge/rouge.py.
/// </summary>
public static class RougeL
{
    public const double Beta = 1.2;

    /// <summary>Mean ROUGE-L F over images (inputs tokenized; see <see cref="CaptionTokenizer"/>).</summary>
    public static double Compute(IReadOnlyList<IReadOnlyList<string>> refsPerImage, IReadOnlyList<string> hypPerImage) =>
        PerImage(refsPerImage, hypPerImage).Average();

    /// <summary>ROUGE-L F of each image.</summary>
    public static double[] PerImage(IReadOnlyList<IReadOnlyList<string>> refsPerImage, IReadOnlyList<string> hypPerImage)
    {
        NGrams.CheckInputs(refsPerImage, hypPerImage);
        var scores = new double[hypPerImage.Count];
        for (int i = 0; i < scores.Length; i++) scores[i] = Score(refsPerImage[i], hypPerImage[i]);
        return scores;
    }

    /// <summary>ROUGE-L F of one hypothesis against its references.</summary>
    public static double Score(IReadOnlyList<string> refs, string hyp)
    {
        var c = (hyp ?? "").Split(' ');
        double precMax = 0, recMax = 0;
        foreach (var reference in refs)
        {
            var r = (reference ?? "").Split(' ');
            int lcs = Lcs(r, c);
            precMax = Math.Max(precMax, (double)lcs / c.Length);
            recMax = Math.Max(recMax, (double)lcs / r.Length);
        }
        if (precMax == 0 || recMax == 0) return 0.0;
        return (1 + Beta * Beta) * precMax * recMax / (recMax + Beta * Beta * precMax);
    }

    /// <summary>Length of the longest common subsequence of two token arrays.</summary>
    internal static int Lcs(string[] a, string[] b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
                cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : Math.Max(prev[j], cur[j - 1]);
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
