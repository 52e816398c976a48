// The decoder: greedy and beam search written once, over any engine (IEngine.cs), batched with left padding and masks,
// with per-token log-probabilities; and option scoring (p(yes) vs p(no) renormalized over the options) from one
// forward pass per batch. Each step turns the engine's last-position logits into fp32 log-probabilities, never picks
// a suppressed token (PromptFormat.Suppressed; nor the stop token before MinNewTokens), and feeds one token per row.
// Beam search keeps its hypotheses in BeamSearch and asks the engine to reorder rows.
using TorchSharp;
using static TorchSharp.torch;
using VlaBias.Model;

namespace VlaBias.Generation;

/// <param name="MinNewTokens">The stop token cannot be chosen before this many new tokens (benchmarks force a fixed length with it).</param>
public sealed record GenerationOptions(int MaxNewTokens = 24, int NumBeams = 1, double LengthPenalty = 1.0, int MinNewTokens = 0)
{
    public static GenerationOptions Greedy(int maxNew = 24) => new(maxNew);
}

/// <summary>One output sequence: its new token ids (without the stop token), their log-probabilities, and its text.</summary>
public sealed record Generated(int[] Tokens, float[] LogProbs, string Text)
{
    public double SumLogProb => LogProbs.Sum(x => (double)x);
}

/// <summary>A decoding-time penalty added to the log-probability of appending <c>next</c> after <c>prefix</c> (0 = none).</summary>
public delegate double TokenPenalty(IReadOnlyList<int> prefix, int next);

public sealed class TextGenerator(IEngine engine)
{
    /// <summary>Decodes with the TorchSharp model and its KV cache.</summary>
    public TextGenerator(Vla vla) : this(new TorchEngine(vla)) { }

    public IEngine Engine => engine;
    private PromptFormat Prompts => engine.Prompts;

    private Tensor Choosable(Tensor logProbs, bool allowEos) =>
        logProbs.index_fill(1, tensor(allowEos ? Prompts.Suppressed : [.. Prompts.Suppressed, Prompts.EosId]), Scalars.MinusInfinity);

    public IReadOnlyList<Generated> Generate(Batch batch, GenerationOptions options, TokenPenalty? penalty = null)
    {
        using var _ = no_grad();
        return options.NumBeams > 1 ? Beam(batch, options, penalty) : Greedy(batch, options.MaxNewTokens, options.MinNewTokens);
    }

    private IReadOnlyList<Generated> Greedy(Batch batch, int maxNew, int minNew)
    {
        long b = batch.Size;
        int eos = Prompts.EosId;
        var tokens = Enumerable.Range(0, (int)b).Select(_ => new List<int>()).ToArray();
        var logps = Enumerable.Range(0, (int)b).Select(_ => new List<float>()).ToArray();
        var done = new bool[b];
        using (var scope = NewDisposeScope())
        {
            using var decoding = engine.Prefill(batch, maxNew, out var last);
            for (int step = 0; step < maxNew; step++)
            {
                using var stepScope = NewDisposeScope();
                var lp = last.to_type(ScalarType.Float32).log_softmax(-1);
                var next = Choosable(lp, step >= minNew).argmax(-1);
                var nextLp = lp.gather(1, next.unsqueeze(1)).squeeze(1);
                var ids = next.data<long>().ToArray();
                var lps = nextLp.data<float>().ToArray();
                bool all = true;
                for (int r = 0; r < b; r++)
                {
                    if (done[r]) continue;
                    if (ids[r] == eos) { done[r] = true; continue; }
                    tokens[r].Add((int)ids[r]); logps[r].Add(lps[r]);
                    all = false;
                }
                if (all || step == maxNew - 1) break;
                last = decoding.Step(ids).MoveToOuterDisposeScope();
            }
        }
        return tokens.Select((t, i) => new Generated(t.ToArray(), logps[i].ToArray(), Prompts.Decode(t))).ToList();
    }

    /// <summary>Beam search (B inputs × K beams in one batch), scores = sum log p / length^lengthPenalty at the end.</summary>
    private IReadOnlyList<Generated> Beam(Batch batch, GenerationOptions o, TokenPenalty? penalty)
    {
        int k = o.NumBeams, b = (int)batch.Size;
        var search = new BeamSearch(b, k, Prompts.EosId, o.LengthPenalty);
        using (var scope = NewDisposeScope())
        {
            using var decoding = engine.Prefill(batch, o.MaxNewTokens, out var prefill);
            var last = prefill.repeat_interleave(k, dim: 0);                      // [B*K, V]
            decoding.Reorder(Enumerable.Range(0, b * k).Select(i => (long)(i / k)).ToArray());
            for (int step = 0; step < o.MaxNewTokens; step++)
            {
                using var stepScope = NewDisposeScope();
                var lp = last.to_type(ScalarType.Float32).log_softmax(-1);         // [B*K, V]
                long v = lp.shape[1];
                var lpArr = Choosable(lp, step >= o.MinNewTokens).data<float>().ToArray();
                bool live = search.Advance(lpArr, v, penalty, out var nextRows, out var nextTokens);
                if (!live || step == o.MaxNewTokens - 1) break;
                decoding.Reorder(nextRows);
                last = decoding.Step(nextTokens).MoveToOuterDisposeScope();
            }
        }
        return search.Results(Prompts.Decode);
    }

    /// <summary>
    /// For each row, the probabilities of the answer options at the next position, renormalized over the options
    /// (each option scored by its first token), from one forward pass. Returns [B, options].
    /// </summary>
    public float[][] ScoreOptions(Batch batch, IReadOnlyList<string> options)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        return OptionProbabilities(engine.LastLogits(batch), options);
    }

    /// <summary>The renormalized option probabilities [B, options] of last-position logits [B, V] (from any forward, e.g. a shared prefix's).</summary>
    public float[][] OptionProbabilities(Tensor lastLogits, IReadOnlyList<string> options)
    {
        using var scope = NewDisposeScope();
        var ids = OptionTokenIds(options);
        var probs = lastLogits.to_type(ScalarType.Float32).index_select(1, tensor(ids.Select(i => (long)i).ToArray())).softmax(-1);
        var arr = probs.data<float>().ToArray();
        return Enumerable.Range(0, (int)lastLogits.shape[0]).Select(r => arr.AsSpan(r * ids.Length, ids.Length).ToArray()).ToArray();
    }

    public int[] OptionTokenIds(IReadOnlyList<string> options)
    {
        var ids = options.Select(opt =>
        {
            var t = Prompts.Tokenizer.Encode(opt);
            if (t.Length == 0) throw new BadInputException($"option '{opt}' encodes to no tokens");
            return t[0];
        }).ToArray();
        if (ids.Distinct().Count() != ids.Length)
            throw new BadInputException($"options {string.Join(",", options)} share their first token; they cannot be scored apart");
        return ids;
    }
}
