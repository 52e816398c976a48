// Decoding (SPEC §3.5): greedy and beam search over a preallocated KV cache, batched with left padding and masks,
// with per-token log-probabilities; and option scoring (p(yes) vs p(no) renormalized over the options) in one
// forward pass per batch. Prefill runs the whole prompt (with images) once; each decode step feeds one token per row.
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Generation;

/// <param name="MinNewTokens">The stop token cannot be chosen before this many new tokens (benchmarks force a fixed length with it).</param>
public sealed record GenerationOptions(int MaxNewTokens = 24, int NumBeams = 1, double LengthPenalty = 1.0, bool UseCache = true, int MinNewTokens = 0)
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

public sealed class TextGenerator(Vla vla)
{
    private LlavaModel Model => vla.Model;
    private int Eos => vla.Tokenizer.EosId;

    /// <summary>Tokens never generated: the image placeholder, padding and BOS (their log-probs are still reported as the model gives them).</summary>
    private long[] Suppressed => suppressed ??= new long[] { vla.Tokenizer.ImageTokenId, vla.Tokenizer.PadId, vla.Tokenizer.BosId }.Where(t => t != Eos).Distinct().ToArray();
    private long[]? suppressed; // computed once: Choosable runs at every decode step

    private Tensor Choosable(Tensor logProbs, bool allowEos = true) =>
        logProbs.index_fill(1, tensor(allowEos ? Suppressed : [.. Suppressed, Eos]), double.NegativeInfinity);

    public IReadOnlyList<Generated> Generate(PromptBatch batch, GenerationOptions options, TokenPenalty? penalty = null)
    {
        using var _ = no_grad();
        if (options.NumBeams > 1) return Beam(batch, options, penalty);
        return options.UseCache ? GreedyCached(batch, options.MaxNewTokens, options.MinNewTokens) : GreedyRecompute(batch, options.MaxNewTokens, options.MinNewTokens);
    }

    private IReadOnlyList<Generated> GreedyCached(PromptBatch batch, int maxNew, int minNew)
    {
        long b = batch.Size, len = batch.Length;
        using var cache = Model.NewCache(b, len + maxNew);
        var tokens = Enumerable.Range(0, (int)b).Select(_ => new List<int>()).ToArray();
        var logps = Enumerable.Range(0, (int)b).Select(_ => new List<float>()).ToArray();
        var done = new bool[b];
        var mask = cat([batch.Mask, ones(b, maxNew, dtype: ScalarType.Int64)], 1);   // [B, L + maxNew]
        using (var scope = NewDisposeScope())
        {
            var last = Model.LastLogits(Model.Embed(batch.InputIds, batch.Pixels, batch.Features), mask.narrow(1, 0, len), null, cache, 0);
            using var decoding = SmallLinear.Decoding(b);
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
                    if (ids[r] == Eos) { done[r] = true; continue; }
                    tokens[r].Add((int)ids[r]); logps[r].Add(lps[r]);
                    all = false;
                }
                if (all || step == maxNew - 1) break;
                var feed = next.unsqueeze(1);
                var embeds = Model.Embed(feed, null);
                last = Model.LastLogits(embeds, mask.narrow(1, 0, len + step + 1), null, cache, len + step).MoveToOuterDisposeScope();
            }
        }
        mask.Dispose();
        return Finish(tokens, logps);
    }

    /// <summary>Greedy decoding that recomputes the whole sequence every step (the reference the cached path must equal).</summary>
    private IReadOnlyList<Generated> GreedyRecompute(PromptBatch batch, int maxNew, int minNew)
    {
        long b = batch.Size;
        var tokens = Enumerable.Range(0, (int)b).Select(_ => new List<int>()).ToArray();
        var logps = Enumerable.Range(0, (int)b).Select(_ => new List<float>()).ToArray();
        var done = new bool[b];
        var ids = batch.InputIds.clone();
        var mask = batch.Mask.clone();
        for (int step = 0; step < maxNew; step++)
        {
            using var scope = NewDisposeScope();
            var lp = Model.LastLogits(Model.Embed(ids, batch.Pixels, batch.Features), mask).to_type(ScalarType.Float32).log_softmax(-1);
            var next = Choosable(lp, step >= minNew).argmax(-1);
            var nextLp = lp.gather(1, next.unsqueeze(1)).squeeze(1);
            var nid = next.data<long>().ToArray();
            var nlp = nextLp.data<float>().ToArray();
            bool all = true;
            for (int r = 0; r < b; r++)
            {
                if (done[r]) continue;
                if (nid[r] == Eos) { done[r] = true; continue; }
                tokens[r].Add((int)nid[r]); logps[r].Add(nlp[r]);
                all = false;
            }
            if (all) break;
            var newIds = cat([ids, next.unsqueeze(1)], 1).DetachFromDisposeScope();
            var newMask = cat([mask, ones(b, 1, dtype: ScalarType.Int64)], 1).DetachFromDisposeScope();
            ids.Dispose(); mask.Dispose();
            ids = newIds; mask = newMask;
        }
        ids.Dispose(); mask.Dispose();
        return Finish(tokens, logps);
    }

    /// <summary>Beam search (B inputs × K beams in one batch), scores = sum log p / length^lengthPenalty at the end.</summary>
    private IReadOnlyList<Generated> Beam(PromptBatch batch, GenerationOptions o, TokenPenalty? penalty)
    {
        int k = o.NumBeams, b = (int)batch.Size;
        long len = batch.Length;
        using var cache = Model.NewCache(b, len + o.MaxNewTokens);
        var search = new BeamSearch(b, k, Eos, o.LengthPenalty);
        var mask = cat([batch.Mask, ones(b, o.MaxNewTokens, dtype: ScalarType.Int64)], 1).repeat_interleave(k, dim: 0).DetachFromDisposeScope();
        Tensor last;
        using (var scope = NewDisposeScope())
        {
            last = Model.LastLogits(Model.Embed(batch.InputIds, batch.Pixels, batch.Features), batch.Mask, null, cache, 0)
                .repeat_interleave(k, dim: 0).MoveToOuterDisposeScope(); // [B*K, V]
        }
        cache.Reorder(arange(b).repeat_interleave(k));
        using var decoding = SmallLinear.Decoding((long)b * k);
        for (int step = 0; step < o.MaxNewTokens; step++)
        {
            using var scope = NewDisposeScope();
            var lp = last.to_type(ScalarType.Float32).log_softmax(-1);       // [B*K, V]
            long v = lp.shape[1];
            var lpArr = Choosable(lp, step >= o.MinNewTokens).data<float>().ToArray();
            bool live = search.Advance(lpArr, v, penalty, out var nextRows, out var nextTokens);
            if (!live || step == o.MaxNewTokens - 1) break;
            cache.Reorder(tensor(nextRows));
            var feed = tensor(nextTokens).unsqueeze(1);
            var embeds = Model.Embed(feed, null);
            last = Model.LastLogits(embeds, mask.narrow(1, 0, len + step + 1), null, cache, len + step).MoveToOuterDisposeScope();
        }
        mask.Dispose();
        return search.Results(vla.Tokenizer.Decode);
    }

    private List<Generated> Finish(List<int>[] tokens, List<float>[] logps) =>
        tokens.Select((t, i) => new Generated(t.ToArray(), logps[i].ToArray(), vla.Tokenizer.Decode(t))).ToList();

    /// <summary>
    /// For each row, the probabilities of the answer options at the next position, renormalized over the options
    /// (each option scored by its first token), from one forward pass. Returns [B, options].
    /// </summary>
    public float[][] ScoreOptions(PromptBatch batch, IReadOnlyList<string> options)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = OptionTokenIds(options);
        var logits = Model.LastLogits(Model.Embed(batch.InputIds, batch.Pixels, batch.Features), batch.Mask).to_type(ScalarType.Float32);
        var probs = logits.index_select(1, tensor(ids.Select(i => (long)i).ToArray())).softmax(-1);
        var arr = probs.data<float>().ToArray();
        return Enumerable.Range(0, (int)batch.Size).Select(r => arr.AsSpan(r * ids.Length, ids.Length).ToArray()).ToArray();
    }

    public int[] OptionTokenIds(IReadOnlyList<string> options)
    {
        var ids = options.Select(opt =>
        {
            var t = vla.Tokenizer.Encode(opt);
            if (t.Length == 0) throw new BadInputException($"option '{opt}' encodes to no tokens");
            return t[0];
        }).ToArray();
        if (ids.Distinct().Count() != ids.Length)
            throw new BadInputException($"options {string.Join(",", options)} share their first token; they cannot be scored apart");
        return ids;
    }
}
