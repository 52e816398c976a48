// `vlatune pretrain`: trains a LLaVA-architecture model from scratch on a manifest's `pretrain` split — captions
// and question answering — the way checkpoints/tiny-base is made (checkpoints/tiny-base/MODEL_CARD.md). Data flow: manifest → ImageBank
// (images decoded once) + tokenized (prompt, target) examples → shuffled batches per epoch (seeded) → AdamW with
// warmup + cosine → atomic checkpoints in OUT/_checkpoint (resume continues at the saved step with the same data
// order) → final HF-layout checkpoint in OUT (weights, config, tokenizer, preprocessor config).
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Serilog;
using TorchSharp;
using VlaBias.Data;
using VlaBias.Images;
using VlaBias.Model;
using VlaBias.Recipes;
using VlaBias.Text;
using static TorchSharp.torch;

namespace VlaBias.Training;

public sealed record PretrainConfig(
    string Data, string Out, string World,
    int ImageSize, int PatchSize, int VisionHidden, int VisionLayers, int VisionHeads,
    int Hidden, int Layers, int Heads, int KvHeads, int Intermediate,
    int Epochs, int BatchSize, double Lr, double MinLrRatio, int WarmupSteps, double WeightDecay, double GradClip,
    long Seed, int SaveEvery, int EvalEvery, int EvalItems, bool Resume)
{
    public static PretrainConfig From(Recipe r) => new(
        r.Str("data", "data/generated/scenes/manifest.jsonl"), r.Str("out", "checkpoints/tiny-base"), r.Str("world", "data/scenes/world.json"),
        r.Int("image_size", 48), r.Int("patch_size", 12), r.Int("vision_hidden", 96), r.Int("vision_layers", 3), r.Int("vision_heads", 4),
        r.Int("hidden", 128), r.Int("layers", 4), r.Int("heads", 4), r.Int("kv_heads", 2), r.Int("intermediate", 384),
        r.Int("epochs", 4), r.Int("batch_size", 64), r.Dbl("lr", 2e-3), r.Dbl("min_lr_ratio", 0.05), r.Int("warmup_steps", 100),
        r.Dbl("weight_decay", 0.01), r.Dbl("grad_clip", 1.0), r.Long("seed", 0), r.Int("save_every", 200), r.Int("eval_every", 250),
        r.Int("eval_items", 96), r.Bool("resume", false));

    public LlavaConfig ModelConfig(int vocab, int imageToken, int bos, int eos, int pad) =>
        RandomCheckpoint.ClipLlama(vocab, ImageSize, PatchSize, VisionHidden, VisionLayers, Hidden, Layers, Heads, KvHeads, Intermediate,
            imageToken, VisionHeads, maxPositions: 256) is var c
            ? c with { Text = c.Text with { BosTokenId = bos, EosTokenId = eos, PadTokenId = pad } }
            : throw new InvalidOperationException();
}

public sealed record PretrainProgress(long Step, long TotalSteps, double Loss, double Lr, string? Note);

public sealed record PretrainResult(string Out, long Steps, double FinalLoss, TimeSpan Elapsed, JsonObject LastCheck);

public static class Pretrainer
{
    private const string CheckpointDir = "_checkpoint";

    public static PretrainResult Run(PretrainConfig cfg, IProgress<PretrainProgress>? progress = null, CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        var items = Manifest.Load(cfg.Data);
        string manifestDir = Path.GetDirectoryName(Path.GetFullPath(cfg.Data))!;
        var train = items.Where(i => i.Split == Split.Pretrain).ToList();
        var val = items.Where(i => i.Split == Split.Val).Take(cfg.EvalItems).ToList();
        if (train.Count == 0) throw new BadInputException($"{cfg.Data}: no items with split 'pretrain'");

        // Closed vocabulary: every word of the world plus every word of the manifest's texts.
        var world = Data.World.Load(cfg.World);
        var words = new SortedSet<string>(world.Vocabulary(), StringComparer.Ordinal);
        foreach (var it in items)
        {
            foreach (var c in it.Captions) words.UnionWith(Data.World.Tokenize(c));
            foreach (var q in it.Questions) { words.UnionWith(Data.World.Tokenize(q.Q)); if (q.A is not null) words.UnionWith(Data.World.Tokenize(q.A)); }
        }
        words.UnionWith(["user", "assistant", ":"]);
        Directory.CreateDirectory(cfg.Out);
        VlaTokenizer.WriteWordLevel(cfg.Out, words);
        WriteTokenizerExtras(cfg.Out, world.Templates.CaptionPrompt);
        var pre = PreprocessorConfig.ForSize(cfg.ImageSize);
        AtomicFile.WriteAllText(Path.Combine(cfg.Out, "preprocessor_config.json"), pre.ToJson().ToJsonString(JsonFormat.Pretty));
        var tok = VlaTokenizer.FromFolder(cfg.Out);
        var modelConfig = cfg.ModelConfig(tok.VocabSize, tok.ImageTokenId, tok.BosId, tok.EosId, tok.PadId);

        manual_seed(cfg.Seed);
        var model = new LlavaModel(modelConfig);
        model.InitWeights(0.02, cfg.Seed);
        var vla = new Vla(model, tok, new ImagePreprocessor(pre), cfg.Out);

        Log.Information("pretrain: {Items} images, loading pixels", train.Count);
        using var bank = ImageBank.Load(train, manifestDir, vla.Images);
        using var valBank = val.Count > 0 ? ImageBank.Load(val, manifestDir, vla.Images) : null;
        var examples = new List<(int image, int[] prompt, int[] target)>();
        for (int i = 0; i < train.Count; i++)
        {
            var it = train[i];
            foreach (var c in it.Captions) examples.Add((i, vla.PromptIds(world.Templates.CaptionPrompt), tok.Encode(c)));
            foreach (var q in it.Questions.Where(q => q.A is not null)) examples.Add((i, vla.PromptIds(q.Q), tok.Encode(q.A!)));
        }
        long stepsPerEpoch = (examples.Count + cfg.BatchSize - 1) / cfg.BatchSize;
        long total = stepsPerEpoch * cfg.Epochs;
        Log.Information("pretrain: {Examples} examples, {Steps} steps ({Epochs} epochs of {PerEpoch})", examples.Count, total, cfg.Epochs, stepsPerEpoch);

        var parameters = model.parameters().ToList();
        var decay = model.named_parameters().Where(p => p.parameter.dim() >= 2 && !p.name.Contains("embedding")).Select(p => p.parameter).ToList();
        var noDecay = model.named_parameters().Where(p => !(p.parameter.dim() >= 2 && !p.name.Contains("embedding"))).Select(p => p.parameter).ToList();
        var opt = optim.AdamW([new TorchSharp.Modules.AdamW.ParamGroup(decay, new TorchSharp.Modules.AdamW.Options { weight_decay = cfg.WeightDecay }),
                               new TorchSharp.Modules.AdamW.ParamGroup(noDecay, new TorchSharp.Modules.AdamW.Options { weight_decay = 0 })],
                              lr: cfg.Lr, beta1: 0.9, beta2: 0.98, eps: 1e-8, weight_decay: cfg.WeightDecay);

        long step = 0;
        var ckpt = Path.Combine(cfg.Out, CheckpointDir);
        if (cfg.Resume && TrainingCheckpoint.Exists(ckpt))
        {
            step = TrainingCheckpoint.Load(ckpt, model, opt).Step;
            Log.Information("pretrain: resumed at step {Step} from {Dir}", step, ckpt);
        }

        double emaLoss = double.NaN;
        JsonObject lastCheck = new();
        model.train();
        while (step < total)
        {
            cancel.ThrowIfCancellationRequested();
            long epoch = step / stepsPerEpoch;
            var order = Permutation(examples.Count, cfg.Seed * 1000 + epoch);
            long within = step % stepsPerEpoch;
            var rows = order.Skip((int)(within * cfg.BatchSize)).Take(cfg.BatchSize).Select(k => examples[k]).ToList();
            double lr = LearningRate.WarmupCosine(step, cfg.WarmupSteps, total, cfg.Lr, cfg.MinLrRatio);
            foreach (var g in opt.ParamGroups) g.LearningRate = lr;
            double lossValue;
            using (var scope = NewDisposeScope())
            {
                using var batch = vla.TeacherForced(rows.Select(r => (r.prompt, r.target)).ToList(), bank.Select(rows.Select(r => r.image).ToList()));
                var loss = model.call(batch.Input()).Loss!;
                lossValue = loss.ToDouble();
                if (!double.IsFinite(lossValue))
                    throw new InvalidOperationException($"pretrain: loss is {lossValue} at step {step}; the last good checkpoint is in {ckpt}");
                opt.zero_grad();
                loss.backward();
                nn.utils.clip_grad_norm_(parameters, cfg.GradClip);
                opt.step();
            }
            step++;
            emaLoss = double.IsNaN(emaLoss) ? lossValue : 0.95 * emaLoss + 0.05 * lossValue;
            string? note = null;
            if (valBank is not null && (step % cfg.EvalEvery == 0 || step == total))
            {
                model.eval();
                lastCheck = QuickCheck(vla, valBank, world.Templates.CaptionPrompt);
                model.train();
                note = lastCheck.ToJsonString();
                Log.Information("pretrain: step {Step} loss {Loss:F4} check {Check}", step, emaLoss, note);
            }
            if (step % cfg.SaveEvery == 0 || step == total) TrainingCheckpoint.Save(ckpt, model, opt, new TrainingCheckpoint.State(step, emaLoss));
            progress?.Report(new PretrainProgress(step, total, emaLoss, lr, note));
        }
        model.eval();
        model.SavePretrained(cfg.Out);
        AtomicFile.WriteAllText(Path.Combine(cfg.Out, "training_summary.json"), new JsonObject
        {
            ["steps"] = step, ["examples"] = examples.Count, ["images"] = train.Count, ["final_loss_ema"] = emaLoss,
            ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1), ["last_check"] = JsonNode.Parse(lastCheck.ToJsonString()),
        }.ToJsonString(JsonFormat.Pretty));
        return new PretrainResult(cfg.Out, step, emaLoss, clock.Elapsed, lastCheck);
    }

    /// <summary>Greedy captions and factual answers on a few validation items: exact-match rates, as a progress signal.</summary>
    public static JsonObject QuickCheck(Vla vla, ImageBank bank, string captionPrompt)
    {
        var gen = new Generation.TextGenerator(vla);
        int capOk = 0, capN = 0, factOk = 0, factN = 0;
        for (int start = 0; start < bank.Count; start += 48)
        {
            var idx = Enumerable.Range(start, Math.Min(48, bank.Count - start)).ToList();
            using var px = bank.Select(idx);
            using (var b = vla.Batch(idx.Select(_ => vla.PromptIds(captionPrompt)).ToList(), [.. px.unbind(0)]))
            {
                var outs = gen.Generate(b, Generation.GenerationOptions.Greedy(16));
                for (int k = 0; k < idx.Count; k++) { capN++; if (bank.Items[idx[k]].Captions.Contains(outs[k].Text)) capOk++; }
            }
            var facts = idx.SelectMany(i => bank.Items[i].Questions.Where(q => q.Kind == QuestionKind.Fact && q.A is not null).Select(q => (i, q))).ToList();
            if (facts.Count == 0) continue;
            using var fpx = bank.Select(facts.Select(f => f.i).ToList());
            using var fb = vla.Batch(facts.Select(f => vla.PromptIds(f.q.Q)).ToList(), [.. fpx.unbind(0)]);
            var answers = gen.Generate(fb, Generation.GenerationOptions.Greedy(4));
            for (int k = 0; k < facts.Count; k++) { factN++; if (answers[k].Text == facts[k].q.A) factOk++; }
        }
        return new JsonObject
        {
            ["caption_exact"] = capN == 0 ? null : Math.Round((double)capOk / capN, 4),
            ["fact_accuracy"] = factN == 0 ? null : Math.Round((double)factOk / factN, 4),
        };
    }

    private static void WriteTokenizerExtras(string dir, string captionPrompt)
    {
        var path = Path.Combine(dir, "tokenizer_config.json");
        var tc = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        tc["vlatune_caption_prompt"] = captionPrompt;
        AtomicFile.WriteAllText(path, tc.ToJsonString(JsonFormat.Pretty));
    }

    public static int[] Permutation(int n, long seed)
    {
        var rng = new Random(unchecked((int)(seed * 2654435761L)));
        var p = Enumerable.Range(0, n).ToArray();
        rng.Shuffle(p);
        return p;
    }
}
