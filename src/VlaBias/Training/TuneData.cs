// The tune split as tokenized training material, built once per run after the tuner exists (so a soft prompt's
// positions are in every prompt): counterfactual pairs (item rows of the man and the woman image of one scene), the
// yes/no probe prompts of each item over train attributes, the gold caption of each item, the probes offered with an
// unknown option, the retain examples (truthful captions by presented gender, factual answers), the answer token ids,
// and which vocabulary entries are gender words (skipped by the caption KL).
using VlaBias.Data;
using VlaBias.Evaluation;
using static TorchSharp.torch;

namespace VlaBias.Training;

/// <summary>The tune split as tokenized training material.</summary>
internal sealed class TuneData
{
    public List<(int man, int woman)> Pairs { get; } = [];
    public Dictionary<int, List<int[]>> ProbesOf { get; } = [];          // yes/no probe prompts over train attributes
    public Dictionary<int, int[]?> CaptionOf { get; } = [];
    public List<(int image, int[] prompt)> UnknownProbes { get; } = [];
    public List<(int image, int[] prompt, int[] target)> Retain { get; } = [];
    public SortedDictionary<string, List<(int image, int[] prompt, int[] target)>> RetainCaptions { get; } = new(StringComparer.Ordinal);
    public List<(int image, int[] prompt, int[] target)> RetainFacts { get; } = [];
    public int[] CaptionPrompt { get; private set; } = [];
    public int Yes { get; private set; }
    public int No { get; private set; }
    public int Unknown { get; private set; }
    public Tensor Protected { get; private set; } = null!;               // [V] bool: gender words
    public int ProbeQuestions => ProbesOf.Values.Sum(v => v.Count);

    /// <summary>
    /// Tune data of given pairs and yes/no probe prompts only (no captions, retain or unknown examples), with the yes/no
    /// ids found as in <see cref="Build"/>: what `vlatune bench` needs to time the parity term on synthetic images.
    /// </summary>
    internal static TuneData ForProbes(Vla vla, IReadOnlyList<(int man, int woman)> pairs, IReadOnlyDictionary<int, List<int[]>> probes)
    {
        var d = new TuneData();
        var ids = new Generation.TextGenerator(vla).OptionTokenIds(["yes", "no"]);
        d.Yes = ids[0]; d.No = ids[1];
        d.Protected = zeros(vla.Config.Text.VocabSize, dtype: ScalarType.Bool).DetachFromDisposeScope();
        d.Pairs.AddRange(pairs);
        foreach (var (image, prompts) in probes) d.ProbesOf[image] = prompts;
        return d;
    }

    public static TuneData Build(Vla vla, IReadOnlyList<ManifestItem> tune, WordLists words, string captionPrompt)
    {
        var d = new TuneData();
        var tok = vla.Tokenizer;
        // Many items ask the same questions: each distinct text is tokenized once (the arrays are shared, never written).
        var promptIds = new Dictionary<string, int[]>(StringComparer.Ordinal);
        var textIds = new Dictionary<string, int[]>(StringComparer.Ordinal);
        int[] Prompt(string q) => promptIds.TryGetValue(q, out var v) ? v : promptIds[q] = vla.PromptIds(q);
        int[] Text(string t) => textIds.TryGetValue(t, out var v) ? v : textIds[t] = tok.Encode(t);
        var ids = new Generation.TextGenerator(vla).OptionTokenIds(["yes", "no"]);
        d.Yes = ids[0]; d.No = ids[1];
        d.Unknown = tok.TryGetId("unknown", out var u) ? u : tok.Encode("unknown").FirstOrDefault();
        d.CaptionPrompt = vla.PromptIds(captionPrompt);
        var prot = new bool[Math.Max(vla.Config.Text.VocabSize, tok.VocabSize)];
        foreach (var w in words.Gender.Masculine.Concat(words.Gender.Feminine))
            if (tok.TryGetId(w, out var id) && id < prot.Length) prot[id] = true;
        d.Protected = tensor(prot).DetachFromDisposeScope();
        for (int i = 0; i < tune.Count; i++)
        {
            var it = tune[i];
            d.ProbesOf[i] = it.Questions.Where(q => q.Kind == QuestionKind.Probe && q.AttributeSplit != Split.Test && (q.Options is null || !q.Options.Contains("unknown")))
                .Select(q => Prompt(q.Q)).ToList();
            foreach (var q in it.Questions.Where(q => q.Kind == QuestionKind.Probe && q.AttributeSplit != Split.Test && q.Options is { } o && o.Contains("unknown")))
                d.UnknownProbes.Add((i, Prompt(q.Q)));
            d.CaptionOf[i] = it.Captions.Count > 0 ? Text(it.Captions[0]) : null;
            foreach (var c in it.Captions)
            {
                var ex = (i, d.CaptionPrompt, Text(c));
                d.Retain.Add(ex);
                // keyed by the gender's name: the pools are taken in its ordinal order (man, unclear, woman)
                if (!d.RetainCaptions.TryGetValue(it.Attributes.Gender.Name(), out var list)) d.RetainCaptions[it.Attributes.Gender.Name()] = list = [];
                list.Add(ex);
            }
            foreach (var q in it.Questions.Where(q => q.Kind == QuestionKind.Fact && q.A is not null))
            {
                var ex = (i, Prompt(q.Q), Text(q.A!));
                d.Retain.Add(ex);
                d.RetainFacts.Add(ex);
            }
        }
        var byPair = tune.Select((it, i) => (it, i)).Where(x => x.it.Pair is not null).GroupBy(x => x.it.Pair!);
        foreach (var g in byPair)
        {
            var man = g.FirstOrDefault(x => x.it.Attributes.Gender == Gender.Man);
            var woman = g.FirstOrDefault(x => x.it.Attributes.Gender == Gender.Woman);
            if (man.it is not null && woman.it is not null) d.Pairs.Add((man.i, woman.i));
        }
        return d;
    }
}
