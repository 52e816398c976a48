// The objectives of a debiasing run: a list of named, weighted loss terms, summed in list order each micro-batch
// (loss = Σ weight · term), every term's value logged under its name. One micro-batch draws P counterfactual pairs
// (x = man image, x' = woman image of one scene) and then, term by term, what the term needs, from one Random that is a
// function of (seed, step, micro-batch), so a resumed run sees the same batches.
//   parity      (p_yes(x,q) − p_yes(x',q))² over pairs × K probe prompts, p_yes renormalized over yes/no; the
//               prompt prefix through the image tokens runs once per image and its K probes continue from it
//   caption_kl  symmetric KL of the next-token distributions of x and x' teacher-forced on x's gold caption, skipping
//               positions whose target is a gender word (data/words/gender_words.json)
//   unknown     −log p(unknown) on probes offered with a yes/no/unknown choice (Girrbach et al.)
//   retain      cross-entropy on truthful captions (stratified by presented gender) and factual answers
//   retain_kl   KL(base ‖ tuned) of the next-token distributions on the retain examples' target positions, the base
//               being the same model with the tuner disabled (computed once per micro-batch without gradients)
using TorchSharp;
using VlaBias.Adapters;
using VlaBias.Generation;
using VlaBias.Images;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Training;

/// <summary>One weighted term of the loss; <paramref name="Compute"/> returns a scalar tensor.</summary>
internal sealed record LossTerm(string Name, double Weight, Func<MicroBatch, Tensor> Compute);

internal static class Objectives
{
    /// <summary>The terms <paramref name="cfg"/> asks for (objective list, weights), in the order they are summed.</summary>
    /// <param name="phases">When given, each term's forward is timed under "step: forward NAME".</param>
    public static IReadOnlyList<LossTerm> For(TuneConfig cfg, TuneData data, PhaseClock? phases = null)
    {
        var terms = Terms(cfg, data);
        return phases is null ? terms : terms.Select(t => t with { Compute = mb => { using (phases.Time("step: forward " + t.Name)) return t.Compute(mb); } }).ToList();
    }

    private static List<LossTerm> Terms(TuneConfig cfg, TuneData data)
    {
        var objectives = cfg.Objectives;
        bool parity = objectives.Contains("parity"), unknown = objectives.Contains("unknown");
        bool retain = cfg.RetainWeight > 0 && (objectives.Contains("retain") || parity || unknown);
        var terms = new List<LossTerm>();
        if (parity)
        {
            terms.Add(new("parity", cfg.ParityWeight, Parity));
            terms.Add(new("caption_kl", cfg.CaptionKlWeight, CaptionKl));
        }
        if (unknown && data.UnknownProbes.Count > 0) terms.Add(new("unknown", cfg.UnknownWeight, Unknown));
        if (retain && data.Retain.Count > 0) terms.Add(new("retain", cfg.RetainWeight, Retain));
        if (cfg.RetainKlWeight > 0 && data.Retain.Count > 0) terms.Add(new("retain_kl", cfg.RetainKlWeight, RetainKl));
        return terms;
    }

    /// <summary>Σ weight · term in list order; each term's value / <paramref name="gradAccum"/> is added to <paramref name="values"/>.</summary>
    public static Tensor Loss(IReadOnlyList<LossTerm> terms, MicroBatch mb, Dictionary<string, double> values, int gradAccum)
    {
        Tensor loss = zeros(1);
        var computed = new List<(string name, Tensor value)>();
        foreach (var term in terms)
        {
            var value = term.Compute(mb);
            loss = loss + term.Weight * value;
            computed.Add((term.Name, value));
        }
        foreach (var (name, value) in computed) values[name] = values.GetValueOrDefault(name) + value.ToDouble() / gradAccum;
        return loss;
    }

    /// <summary>
    /// Mean squared p_yes difference over pairs × probes. The K probes of each image continue from that image's prompt
    /// prefix, computed once (Generation/SharedPrefix.cs, gradients flowing through it), when the prompts allow it.
    /// </summary>
    private static Tensor Parity(MicroBatch mb)
    {
        var rows = new List<int>();
        var prompts = new List<int[]>();
        var images = new List<int>();           // the prefixes: man, woman of each pair with probes
        var prefixOfRow = new List<long>();
        foreach (var (man, woman) in mb.Pairs)
        {
            var qs = mb.Data.ProbesOf[man];
            if (qs.Count > 0 && mb.ProbesPerPair > 0) { images.Add(man); images.Add(woman); }
            for (int j = 0; j < mb.ProbesPerPair && qs.Count > 0; j++)
            {
                var q = qs[mb.Rng.Next(qs.Count)];
                rows.Add(man); prompts.Add(q); prefixOfRow.Add(images.Count - 2);
                rows.Add(woman); prompts.Add(q); prefixOfRow.Add(images.Count - 1);
            }
        }
        if (rows.Count == 0) return zeros(1);
        Tensor logits;
        // With gradient checkpointing the prefix forward is checkpointed too (Model/CheckpointedLayer.cs): it keeps each
        // layer's input and the prefix keys and values, not the layers' activations.
        if (mb.SharePrefix && SharedPrefix.Split(prompts, mb.Vla.Model.Config.ImageTokenIndex) is int p)
            logits = SharedPrefix.LastLogits(mb.Vla.Model, prompts, p, mb.Features(images), prefixOfRow, mb.Vla.Tokenizer.PadId, mb.Vla.Prompts.VirtualTokens);
        else
        {
            using var batch = mb.Vla.Batch(prompts, null, mb.Features(rows));
            logits = mb.Vla.Model.call(batch.Input(LogitsMode.Last)).LastLogits;
        }
        var pYes = (logits.select(1, mb.Data.Yes) - logits.select(1, mb.Data.No)).to_type(ScalarType.Float32).sigmoid();  // softmax over {yes, no}
        var pairsView = pYes.view(-1, 2);
        return (pairsView.select(1, 0) - pairsView.select(1, 1)).pow(2).mean();
    }

    /// <summary>Symmetric KL of x and x' teacher-forced on x's gold caption, on positions whose target is not a gender word.</summary>
    private static Tensor CaptionKl(MicroBatch mb)
    {
        var capRows = new List<int>();
        var seqs = new List<(int[] prompt, int[] target)>();
        foreach (var (man, woman) in mb.Pairs)
        {
            var cap = mb.Data.CaptionOf[man];
            if (cap is null) continue;
            capRows.Add(man); seqs.Add((mb.Data.CaptionPrompt, cap));
            capRows.Add(woman); seqs.Add((mb.Data.CaptionPrompt, cap));
        }
        if (capRows.Count == 0) return zeros(1);
        using var sb = mb.Vla.TeacherForced(seqs);
        var feats = mb.Features(capRows);
        var lg = mb.Vla.Model.call(sb.Input() with { ImageFeatures = feats, Labels = null }).Logits!.to_type(ScalarType.Float32).log_softmax(-1);
        var labels = sb.Labels!;
        // positions that are scored (label != -100) and whose target is not a protected word
        var keep = labels.ne(Batch.IgnoreIndex).logical_and(mb.Data.Protected.index_select(0, labels.clamp_min(0).flatten()).view_as(labels).logical_not());
        var a = lg.view(-1, 2, lg.shape[1], lg.shape[2]).select(1, 0);
        var b = lg.view(-1, 2, lg.shape[1], lg.shape[2]).select(1, 1);
        var mask = keep.view(-1, 2, keep.shape[1]).select(1, 0).to_type(ScalarType.Float32);
        var symKl = ((a.exp() * (a - b)) + (b.exp() * (b - a))).sum(-1);   // [P, L]
        return (symKl * mask).sum() / mask.sum().clamp_min(1);
    }

    private static Tensor Unknown(MicroBatch mb)
    {
        var data = mb.Data;
        var picks = Enumerable.Range(0, mb.PairsPerStep * mb.ProbesPerPair).Select(_ => data.UnknownProbes[mb.Rng.Next(data.UnknownProbes.Count)]).ToList();
        using var batch = mb.Vla.Batch(picks.Select(p => p.prompt).ToList(), null, mb.Features(picks.Select(p => p.image).ToList()));
        var logits = mb.Vla.Model.call(batch.Input(LogitsMode.Last)).LastLogits.to_type(ScalarType.Float32);
        return -logits.log_softmax(-1).select(1, data.Unknown).mean();
    }

    private static Tensor Retain(MicroBatch mb) => mb.RetainForward().output.Loss!;

    private static Tensor RetainKl(MicroBatch mb)
    {
        var (batch, output) = mb.RetainForward();
        var tuned = ScoredLogProbs(output.Logits!, batch.Labels!);
        Tensor reference;
        using (no_grad())
        using (mb.Tuner.Disable())
        {
            // the same examples as the base sees them: no soft-prompt positions, image features from the base
            var rows = mb.RetainPicks.Select(p => (p.prompt.Where(t => t != LlavaModel.VirtualTokenId).ToArray(), p.target)).ToList();
            using var baseBatch = mb.Vla.TeacherForced(rows, null, mb.Features(mb.RetainPicks.Select(p => p.image).ToList()));
            reference = ScoredLogProbs(mb.Vla.Model.call(baseBatch.Input() with { Labels = null }).Logits!, baseBatch.Labels!);
        }
        return (reference.exp() * (reference - tuned)).sum(-1).mean();
    }

    /// <summary>fp32 log-probabilities [P, V] at the scored positions (label != -100), in row-major order.</summary>
    private static Tensor ScoredLogProbs(Tensor logits, Tensor labels)
    {
        long v = logits.shape[^1];
        var lp = logits.to_type(ScalarType.Float32).log_softmax(-1);
        return lp.masked_select(labels.ne(Batch.IgnoreIndex).unsqueeze(-1).to(lp.device)).view(-1, v);
    }
}

/// <summary>
/// What the terms of one micro-batch share: the model and tuner, the tune data and images, the draws (pairs first, then
/// each term's own from <see cref="Rng"/>), and the retain examples' forward once both retain terms need it.
/// </summary>
internal sealed class MicroBatch(Vla vla, ITunable tuner, TuneData data, TuneConfig cfg, Random rng, ImageBank bank, Tensor? cachedFeatures) : IDisposable
{
    private (Batch batch, ModelOutput output)? retain;

    public Vla Vla => vla;
    public ITunable Tuner => tuner;
    public TuneData Data => data;
    public Random Rng => rng;
    public int PairsPerStep => cfg.PairsPerStep;
    public int ProbesPerPair => cfg.ProbesPerPair;

    /// <summary>Probe prompts of one image continue from its prefix computed once; false = every prompt in full (the reference path).</summary>
    public bool SharePrefix { get; init; } = true;
    public IReadOnlyList<(int man, int woman)> Pairs { get; } =
        Enumerable.Range(0, cfg.PairsPerStep).Select(_ => data.Pairs[rng.Next(data.Pairs.Count)]).ToList();

    /// <summary>Image features of bank rows: the cached ones when the vision side is frozen, else computed now (with gradients).</summary>
    public Tensor Features(IReadOnlyList<int> rows) =>
        cachedFeatures is not null
            ? cachedFeatures.index_select(0, tensor(rows.Select(r => (long)r).ToArray()))
            : vla.Model.ImageFeatures(bank.Select(rows));

    /// <summary>The retain examples of this micro-batch, drawn when first asked for.</summary>
    public IReadOnlyList<(int image, int[] prompt, int[] target)> RetainPicks => retainPicks ??= DrawRetain();
    private List<(int image, int[] prompt, int[] target)>? retainPicks;

    /// <summary>The tuned model's forward over the retain examples (with their cross-entropy), computed once.</summary>
    public (Batch batch, ModelOutput output) RetainForward()
    {
        if (retain is { } r) return r;
        var picks = RetainPicks;
        var batch = vla.TeacherForced(picks.Select(p => (p.prompt, p.target)).ToList());
        var feats = Features(picks.Select(p => p.image).ToList());
        retain = (batch, vla.Model.call(batch.Input() with { ImageFeatures = feats }));
        return retain.Value;
    }

    // Half truthful captions, stratified by presented gender (man, woman, unclear in turn, so figures whose gender the
    // image does not show get a third of the caption signal), half factual answers.
    private List<(int image, int[] prompt, int[] target)> DrawRetain()
    {
        int n = cfg.RetainPerStep;
        var pools = data.RetainCaptions.Values.Where(v => v.Count > 0).ToList();
        var picks = new List<(int image, int[] prompt, int[] target)>(n);
        for (int k = 0; k < n; k++)
        {
            bool caption = pools.Count > 0 && (k % 2 == 0 || data.RetainFacts.Count == 0);
            var pool = caption ? pools[(k / 2) % pools.Count] : data.RetainFacts;
            picks.Add(pool[rng.Next(pool.Count)]);
        }
        return picks;
    }

    public void Dispose() => retain?.batch.Dispose();
}
