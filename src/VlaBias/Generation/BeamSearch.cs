// The engine-independent half of beam search: B inputs × K beams, each step picks the K best continuations per
// input from the rows' log-probabilities, collects finished hypotheses, and stops an input once no live beam can beat
// its K finished ones; results are length-normalised (score / length^penalty). TextGenerator (TorchSharp) and OnnxVla
// (ONNX Runtime) both drive it, so the two engines decode identically.
namespace VlaBias.Generation;

public sealed class BeamSearch
{
    private sealed record Hypothesis(List<int> Tokens, List<float> LogProbs, double Score);

    private readonly int b, k, eos;
    private readonly double lengthPenalty;
    private readonly List<Hypothesis>[] finished, beams;
    private readonly bool[] active;

    public BeamSearch(int inputs, int beamsPerInput, int eos, double lengthPenalty)
    {
        b = inputs; k = beamsPerInput; this.eos = eos; this.lengthPenalty = lengthPenalty;
        finished = Enumerable.Range(0, b).Select(_ => new List<Hypothesis>()).ToArray();
        // Only the first copy of each input's beam is live at the start (the others start at -inf).
        beams = Enumerable.Range(0, b).Select(_ => Enumerable.Range(0, k).Select(j => new Hypothesis([], [], j == 0 ? 0 : double.NegativeInfinity)).ToList()).ToArray();
        active = Enumerable.Repeat(true, b).ToArray();
    }

    /// <summary>
    /// One step over log-probabilities [B·K, V] (row-major; unselectable tokens already −inf). Returns, per new row,
    /// the old row it continues and the token fed next; false when every input is done.
    /// </summary>
    public bool Advance(float[] lp, long v, TokenPenalty? penalty, out long[] nextRows, out long[] nextTokens)
    {
        nextRows = new long[b * k];
        nextTokens = new long[b * k];
        for (int i = 0; i < b; i++)
        {
            if (!active[i]) { for (int j = 0; j < k; j++) { nextRows[i * k + j] = i * k; nextTokens[i * k + j] = eos; } continue; }
            var candidates = new List<(double score, int beam, int token, float lp)>();
            for (int j = 0; j < k; j++)
            {
                var h = beams[i][j];
                if (double.IsNegativeInfinity(h.Score)) continue;
                long row = i * k + j;
                // top 2K tokens of this beam are enough to fill K survivors after EOS hits
                foreach (var t in TopIndices(lp, row * v, v, 2 * k))
                {
                    float l = lp[row * v + t];
                    double pen = penalty?.Invoke(h.Tokens, t) ?? 0;
                    candidates.Add((h.Score + l + pen, j, t, l));
                }
            }
            candidates.Sort((x, y) => y.score.CompareTo(x.score));
            var next = new List<Hypothesis>();
            int rank = 0;
            foreach (var c in candidates)
            {
                var parent = beams[i][c.beam];
                if (c.token == eos)
                {
                    if (rank < k) finished[i].Add(new Hypothesis([.. parent.Tokens], [.. parent.LogProbs], c.score));
                }
                else if (next.Count < k)
                {
                    nextRows[i * k + next.Count] = i * k + c.beam;
                    nextTokens[i * k + next.Count] = c.token;
                    next.Add(new Hypothesis([.. parent.Tokens, c.token], [.. parent.LogProbs, c.lp], c.score));
                }
                rank++;
                if (next.Count == k) break;
            }
            while (next.Count < k) { nextRows[i * k + next.Count] = i * k; nextTokens[i * k + next.Count] = eos; next.Add(new Hypothesis([], [], double.NegativeInfinity)); }
            beams[i] = next;
            // Done when K hypotheses are finished and no live beam can still beat the worst of them.
            if (finished[i].Count >= k)
            {
                double worst = finished[i].Select(Normalised).OrderByDescending(x => x).Take(k).Min();
                double bestLive = next.Max(h => double.IsNegativeInfinity(h.Score) ? double.NegativeInfinity : h.Score / Math.Pow(Math.Max(1, h.Tokens.Count), lengthPenalty));
                if (bestLive <= worst) active[i] = false;
            }
        }
        return active.Any(a => a);
    }

    /// <summary>The best hypothesis of each input (finished or still live), length-normalised.</summary>
    public List<Generated> Results(Func<IReadOnlyList<int>, string> decode)
    {
        var results = new List<Generated>();
        for (int i = 0; i < b; i++)
        {
            var pool = finished[i].Concat(beams[i].Where(h => !double.IsNegativeInfinity(h.Score))).ToList();
            var best = pool.OrderByDescending(Normalised).First();
            results.Add(new Generated(best.Tokens.ToArray(), best.LogProbs.ToArray(), decode(best.Tokens)));
        }
        return results;
    }

    private double Normalised(Hypothesis h) => h.Score / Math.Pow(Math.Max(1, h.Tokens.Count + 1), lengthPenalty);

    private static int[] TopIndices(float[] values, long offset, long count, int k)
    {
        var idx = new int[Math.Min(k, (int)count)];
        var best = new float[idx.Length];
        Array.Fill(best, float.NegativeInfinity);
        Array.Fill(idx, -1);
        for (int t = 0; t < count; t++)
        {
            float x = values[offset + t];
            if (x <= best[^1]) continue;
            int pos = best.Length - 1;
            while (pos > 0 && best[pos - 1] < x) { best[pos] = best[pos - 1]; idx[pos] = idx[pos - 1]; pos--; }
            best[pos] = x; idx[pos] = t;
        }
        return idx.Where(i => i >= 0).ToArray();
    }
}
