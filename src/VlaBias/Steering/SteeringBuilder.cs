// Builds steering vectors (SteeringVectors.cs) from residual-stream activations: the output of each chosen decoder
// layer at the LAST PROMPT POSITION (the token after which the answer or caption starts; prompts are left-padded, so it
// is column −1). That position has attended to the image and the whole instruction, and it is where the first output
// token is decided; the hooks then act on every position of the forward.
//   mean-diff: v_l = mean over counterfactual pairs (man image x, woman image x' of one scene, tune split) and prompts
//              (the caption prompt + the item's yes/no probe questions on train attributes) of h_l(x) − h_l(x').
//   gradient:  needs no data. Images are one blank image (pixel values 0 in the preprocessor's normalized space, i.e.
//              the mean colour) plus `images − 1` random ones (standard normal in that space). For each, the base
//              model's greedy caption is teacher-forced after the caption prompt and the loss is
//              L(f) = mean over the caption's predicted positions of log Σ_{w gendered} p(w | ·),
//              with f the image features (the inputs_embeds at the image positions). One normalized gradient step
//              lowers it: f' = f − α·‖f‖·∇L/‖∇L‖ (norms per image). v_l = mean over images of h_l(f) − h_l(f'), i.e. the
//              direction the step moved away from; it points towards gendered words.
using TorchSharp;
using VlaBias.Data;
using VlaBias.Evaluation;
using VlaBias.Generation;
using VlaBias.Images;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Steering;

public static class SteeringBuilder
{
    public const string Position = "last prompt token";

    /// <summary>Mean difference of man − woman activations over the counterfactual pairs of <paramref name="items"/>.</summary>
    public static SteeringVectors MeanDiff(Vla vla, IReadOnlyList<ManifestItem> items, string manifestDir, IReadOnlyList<int> layers, string captionPrompt, int batchSize = 64)
    {
        var pairs = items.Where(i => i.Pair is not null).GroupBy(i => i.Pair!)
            .Select(g => (man: g.FirstOrDefault(x => x.Attributes.Gender == Gender.Man), woman: g.FirstOrDefault(x => x.Attributes.Gender == Gender.Woman)))
            .Where(p => p.man is not null && p.woman is not null).OrderBy(p => p.man!.Id, StringComparer.Ordinal).ToList();
        if (pairs.Count == 0) throw new BadInputException("steer build: the data has no counterfactual pairs (items sharing 'pair' with genders man and woman)");
        var bankItems = pairs.SelectMany(p => new[] { p.man!, p.woman! }).ToList();
        using var bank = ImageBank.Load(bankItems, manifestDir, vla.Images);
        using var features = new Evaluator(vla, EmptySuite).ImageFeatures(bank);
        // rows: (image row in bank, prompt ids); man and woman alternate so row 2k − row 2k+1 is one difference
        var rows = new List<(int image, int[] prompt)>();
        for (int p = 0; p < pairs.Count; p++)
        {
            var prompts = new List<string> { captionPrompt };
            prompts.AddRange(pairs[p].man!.Questions.Where(q => q.Kind == QuestionKind.Probe && q.AttributeSplit != Split.Test && (q.Options is null || !q.Options.Contains("unknown"))).Select(q => q.Q));
            foreach (var prompt in prompts)
            {
                var ids = vla.PromptIds(prompt);
                rows.Add((2 * p, ids)); rows.Add((2 * p + 1, ids));
            }
        }
        var sums = layers.ToDictionary(l => l, _ => zeros(vla.Config.Text.HiddenSize).DetachFromDisposeScope());
        using (no_grad())
            for (int start = 0; start < rows.Count; start += batchSize - batchSize % 2)
            {
                using var scope = NewDisposeScope();
                var chunk = rows.Skip(start).Take(batchSize - batchSize % 2).ToList();
                var feats = features.index_select(0, tensor(chunk.Select(r => (long)r.image).ToArray()));
                using var batch = vla.Batch(chunk.Select(r => r.prompt).ToList(), null, feats);
                var acts = LastPosition(vla, layers, () => vla.Model.call(batch.Input(LogitsMode.None)));
                foreach (var (l, a) in acts)
                {
                    var view = a.view(-1, 2, a.shape[1]);
                    sums[l].add_((view.select(1, 0) - view.select(1, 1)).sum(0));
                }
            }
        int n = rows.Count / 2;
        var vectors = sums.ToDictionary(kv => kv.Key, kv => kv.Value.div_(n));
        return new SteeringVectors(vectors, new Dictionary<string, string>
        {
            ["method"] = "mean-diff", ["position"] = Position, ["direction"] = "man minus woman",
            ["pairs"] = pairs.Count.ToString(), ["differences"] = n.ToString(), ["caption_prompt"] = captionPrompt,
        });
    }

    /// <summary>One gradient step on the image features that lowers the probability of gendered words (no data needed).</summary>
    public static SteeringVectors Gradient(Vla vla, WordLists words, IReadOnlyList<int> layers, string captionPrompt, int images = 16, double step = 0.5, long seed = 0, int maxNewTokens = 12)
    {
        if (images < 1) throw new BadInputException("--images: must be at least 1");
        var tok = vla.Tokenizer;
        var genderIds = words.Gender.Masculine.Concat(words.Gender.Feminine)
            .Select(w => tok.TryGetId(w, out var id) ? id : -1).Where(id => id >= 0 && id < vla.Config.Text.VocabSize).Distinct().Select(i => (long)i).ToArray();
        if (genderIds.Length == 0) throw new BadInputException("steer build --method gradient: none of the gendered words is a single token of this tokenizer");
        var vs = vla.Config.Vision;
        var gen = new Generator((ulong)seed);
        using var pixels = cat([zeros(1, 3, vs.ImageSize, vs.ImageSize), randn(images - 1, 3, vs.ImageSize, vs.ImageSize, generator: gen)], 0).to_type(vla.Model.DType);
        bool wasTraining = vla.Model.training;
        vla.Model.eval();
        try
        {
            Tensor f0;
            using (no_grad()) f0 = vla.Model.ImageFeatures(pixels).DetachFromDisposeScope();
            using var _f0 = f0;
            var prompt = vla.PromptIds(captionPrompt);
            // the base model's greedy captions, teacher-forced below
            List<int[]> captions;
            using (var b = vla.Batch(Enumerable.Repeat(prompt, images).ToList(), null, f0.clone()))
                captions = new TextGenerator(vla).Generate(b, GenerationOptions.Greedy(maxNewTokens)).Select(g => g.Tokens).ToList();
            Tensor f1;
            double lossBefore;
            using (var scope = NewDisposeScope())
            {
                var f = f0.detach().clone().requires_grad_(true);
                using var sb = vla.TeacherForced(captions.Select(c => (prompt, c)).ToList());
                var logp = vla.Model.call(sb.Input() with { ImageFeatures = f, Labels = null }).Logits!.to_type(ScalarType.Float32).log_softmax(-1);
                var gendered = logp.index_select(2, tensor(genderIds)).logsumexp(-1);      // (B, L): log Σ p(gendered)
                var scored = sb.Labels!.ne(Batch.IgnoreIndex).to_type(ScalarType.Float32);
                var loss = (gendered * scored).sum() / scored.sum().clamp_min(1);
                lossBefore = loss.ToDouble();
                loss.backward();
                var g = f.grad!;
                var fNorm = f0.flatten(1).pow(2).sum(1).sqrt().view(-1, 1, 1);
                var gNorm = g.flatten(1).pow(2).sum(1).sqrt().clamp_min(1e-12).view(-1, 1, 1);
                f1 = (f0 - g / gNorm * fNorm * step).detach().DetachFromDisposeScope();
            }
            vla.Model.zero_grad();
            using var _f1 = f1;
            Dictionary<int, Tensor> vectors;
            using (no_grad())
            using (var scope = NewDisposeScope())
            {
                using var b0 = vla.Batch(Enumerable.Repeat(prompt, images).ToList(), null, f0.clone());
                var a0 = LastPosition(vla, layers, () => vla.Model.call(b0.Input(LogitsMode.None)));
                using var b1 = vla.Batch(Enumerable.Repeat(prompt, images).ToList(), null, f1.clone());
                var a1 = LastPosition(vla, layers, () => vla.Model.call(b1.Input(LogitsMode.None)));
                vectors = layers.ToDictionary(l => l, l => (a0[l] - a1[l]).mean([0]).DetachFromDisposeScope());
            }
            return new SteeringVectors(vectors, new Dictionary<string, string>
            {
                ["method"] = "gradient", ["position"] = Position, ["direction"] = "towards gendered words",
                ["images"] = $"1 blank + {images - 1} random (standard normal in normalized pixel space, seed {seed})",
                ["step"] = step.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["loss_before"] = lossBefore.ToString("G6", System.Globalization.CultureInfo.InvariantCulture),
                ["caption_prompt"] = captionPrompt,
            });
        }
        finally { if (wasTraining) vla.Model.train(); }
    }

    /// <summary>Runs <paramref name="forward"/> with capture hooks: layer → its output at the last position [B, C] (float32).</summary>
    public static Dictionary<int, Tensor> LastPosition(Vla vla, IReadOnlyList<int> layers, Action forward)
    {
        var decoder = vla.Model.LanguageModel.Model.Layers;
        var captured = new Dictionary<int, Tensor>();
        var removers = new List<Action>();
        // The hooks run deep inside the forward's own dispose scopes: what they capture moves to this scope, which
        // hands it to the caller's.
        using var holder = NewDisposeScope();
        foreach (var l in layers)
        {
            if (l < 0 || l >= decoder.Count) throw new BadInputException($"--layers: layer {l} does not exist (the model has layers 0..{decoder.Count - 1})");
            var handle = decoder[l].register_forward_hook((_, _, output) =>
            {
                captured[l] = output.select(1, -1).to_type(ScalarType.Float32).detach().clone().MoveToOtherDisposeScope(holder);
                return output;
            });
            removers.Add(() => handle.remove());
        }
        try { forward(); }
        finally { foreach (var remove in removers) remove(); }
        holder.MoveToOuter(captured.Values);
        return captured;
    }

    /// <summary>"2,3" → [2, 3]; "all" or empty → every layer.</summary>
    public static IReadOnlyList<int> ParseLayers(string? text, int layerCount)
    {
        if (string.IsNullOrWhiteSpace(text) || text == "all") return Enumerable.Range(0, layerCount).ToList();
        var list = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, out var l) || l < 0 || l >= layerCount)
                throw new BadInputException($"--layers: '{part}' is not a layer index 0..{layerCount - 1}");
            list.Add(l);
        }
        return list.Distinct().Order().ToList();
    }

    private static Suite EmptySuite => new("steer", "", "", "", "", "", "", ["yes", "no"], false, false, false, false, 1, 64, 0, 1, 0);
}
