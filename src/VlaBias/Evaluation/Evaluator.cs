// The evaluator: runs a suite on a model (+ optional adapter already applied to it) and produces samples,
// then metrics. Data flow:
//   manifest items of the suite's split → work units (caption / probe / fact prompts per item), in a fixed order and
//   fixed batches cut at image boundaries (ImageBatches) → each batch is answered by the model (greedy captions and
//   answers, option probabilities for probes, whose prompt prefix through the image tokens runs once per image of the
//   batch: Generation/SharedPrefix.cs)
//   unless the result cache already has it → samples (sorted by key) → Metrics.Compute → metrics.json.
// Sharding (--shard i/n) takes every n-th batch, so each unit is computed in the same batch, with the same padding,
// as in an unsharded run, and merged shards give the same numbers. The cache is an append-only JSONL file keyed by
// model identity + sample key, flushed per batch, so an interrupted run continues where it stopped.
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using VlaBias.Data;
using VlaBias.Generation;
using VlaBias.Images;
using static TorchSharp.torch;

namespace VlaBias.Evaluation;

public sealed record Shard(int Index, int Count)
{
    public static readonly Shard All = new(1, 1);

    public static Shard Parse(string? text)
    {
        if (string.IsNullOrEmpty(text)) return All;
        var parts = text.Split('/');
        if (parts.Length == 2 && int.TryParse(parts[0], out var i) && int.TryParse(parts[1], out var n) && n >= 1 && i >= 1 && i <= n) return new(i, n);
        throw new BadInputException($"--shard: '{text}' is not i/n with 1 <= i <= n");
    }

    public bool Takes(int batchIndex) => batchIndex % Count == Index - 1;
}

/// <summary>One prompt to answer about one item.</summary>
internal sealed record WorkUnit(int Item, SampleKind Kind, string Prompt, IReadOnlyList<string>? Options, ManifestQuestion? Question);

/// <summary>
/// <paramref name="beams"/> and <paramref name="penalty"/> change how captions are decoded (beam search, penalty
/// decoding); the default is greedy. Facts stay greedy, probes are scored.
/// </summary>
public sealed class Evaluator(Vla vla, Suite suite, int beams = 1, TokenPenalty? penalty = null)
{
    /// <summary>A string that changes when the model or adapter weights change (folder, file sizes and times).</summary>
    public static string ModelIdentity(string? modelDir, string? adapterDir)
    {
        var sb = new StringBuilder();
        foreach (var d in new[] { modelDir, adapterDir })
        {
            if (d is null || !Directory.Exists(d)) { sb.Append("|none"); continue; }
            sb.Append('|').Append(Path.GetFullPath(d));
            foreach (var f in Directory.GetFiles(d).Where(f => f.EndsWith(".safetensors") || f.EndsWith(".json")).Order(StringComparer.Ordinal))
            {
                var info = new FileInfo(f);
                sb.Append(';').Append(info.Name).Append(':').Append(info.Length).Append(':').Append(info.LastWriteTimeUtc.Ticks);
            }
        }
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..16];
    }

    /// <summary>
    /// Answers every unit of the items (images from <paramref name="bank"/>, rows aligned with items), reusing and
    /// extending the cache file when given. <paramref name="probeFilter"/> limits probe questions (e.g. train attributes).
    /// <paramref name="imageFeatures"/>: the bank's image features computed by the caller for this model as it is now
    /// (a trainer whose vision side is frozen computes them once for all its validations); null = computed here.
    /// </summary>
    public List<Sample> Collect(IReadOnlyList<ManifestItem> items, ImageBank bank, Shard? shard = null, string? cacheFile = null,
        string identity = "", Func<ManifestQuestion, bool>? probeFilter = null, IProgress<(int done, int total)>? progress = null,
        Tensor? imageFeatures = null)
    {
        using var cache = ResultCache.Open(cacheFile, identity);
        return Collect(items, bank, shard, cache, probeFilter, progress, imageFeatures);
    }

    /// <summary><see cref="Collect(IReadOnlyList{ManifestItem}, ImageBank, Shard?, string?, string, Func{ManifestQuestion, bool}?, IProgress{ValueTuple{int, int}}?, Tensor?)"/>
    /// with a result cache the caller opened (one cache may serve calls on several threads).</summary>
    internal List<Sample> Collect(IReadOnlyList<ManifestItem> items, ImageBank bank, Shard? shard, ResultCache cache,
        Func<ManifestQuestion, bool>? probeFilter = null, IProgress<(int done, int total)>? progress = null, Tensor? imageFeatures = null)
    {
        shard ??= Shard.All;
        var units = Units(items, probeFilter);
        var gen = new TextGenerator(vla);
        var samples = new List<Sample>();
        int bs = Math.Max(1, suite.BatchSize);
        // Batches group units of one kind (and option set), in a fixed order independent of sharding and caching.
        var batches = units.GroupBy(u => (u.Kind, Opts: u.Options is null ? "" : string.Join(",", u.Options)))
            .SelectMany(g => ImageBatches(g.ToList(), u => u.Item, bs)).ToList();
        var mine = batches.Where((_, i) => shard.Takes(i)).ToList();
        int total = mine.Sum(b => b.Length), done = 0;
        bool wasTraining = vla.Model.training;
        vla.Model.eval();
        Tensor? features = null;
        try
        {
            // Image features once per image: every prompt about an image reuses them.
            if (mine.Count > 0) features = imageFeatures ?? ImageFeatures(bank);
            foreach (var batch in mine)
            {
                var fresh = new List<WorkUnit>();
                foreach (var u in batch)
                {
                    var key = MakeSample(items[u.Item], u, null, null, null).Key;
                    if (cache.TryGet(key, out var hit)) samples.Add(hit); else fresh.Add(u);
                }
                if (fresh.Count > 0)
                {
                    var answered = Answer(gen, items, features!, fresh);
                    samples.AddRange(answered);
                    cache.Append(answered);
                }
                done += batch.Length;
                progress?.Report((done, total));
            }
        }
        finally
        {
            if (!ReferenceEquals(features, imageFeatures)) features?.Dispose();
            if (wasTraining) vla.Model.train();
        }
        return samples.OrderBy(s => s.Key, StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// Consecutive rows cut into batches at image boundaries (<paramref name="image"/> gives each row's image), so one
    /// image's prompts share one prefix computation: a batch takes whole images until it holds at least
    /// <paramref name="size"/> rows (at most size − 1 more), and an image with more than <paramref name="size"/> rows is
    /// cut into pieces of that size first.
    /// </summary>
    public static List<T[]> ImageBatches<T>(IReadOnlyList<T> rows, Func<T, int> image, int size)
    {
        var pieces = rows.GroupBy(image).SelectMany(g => g.Chunk(size));   // groups come in order of their first row
        var batches = new List<T[]>();
        var current = new List<T>();
        foreach (var piece in pieces)
        {
            current.AddRange(piece);
            if (current.Count >= size) { batches.Add(current.ToArray()); current.Clear(); }
        }
        if (current.Count > 0) batches.Add(current.ToArray());
        return batches;
    }

    internal List<WorkUnit> Units(IReadOnlyList<ManifestItem> items, Func<ManifestQuestion, bool>? probeFilter)
    {
        var units = new List<WorkUnit>();
        for (int i = 0; i < items.Count; i++)
        {
            var it = items[i];
            if (suite.Captions && it.Captions.Count > 0) units.Add(new WorkUnit(i, SampleKind.Caption, suite.CaptionPrompt, null, null));
            foreach (var q in it.Questions)
            {
                if (q.Kind == QuestionKind.Fact && suite.Facts && q.A is not null) units.Add(new WorkUnit(i, SampleKind.Fact, q.Q, null, q));
                else if (q.Kind == QuestionKind.Probe && suite.Probes && (probeFilter?.Invoke(q) ?? true))
                {
                    var opts = q.Options is { Count: > 0 } o ? o : suite.ProbeOptions;
                    if (!suite.ProbesWithUnknown && opts.Contains("unknown")) continue;
                    units.Add(new WorkUnit(i, SampleKind.Probe, q.Q, opts, q));
                }
            }
        }
        return units;
    }

    /// <summary>Image features [N, tokens, C] of every image of the bank, in batches, without gradients.</summary>
    public Tensor ImageFeatures(ImageBank bank)
    {
        using var _ = no_grad();
        var parts = new List<Tensor>();
        for (int start = 0; start < bank.Count; start += 128)
            parts.Add(vla.Model.ImageFeatures(bank.Pixels.narrow(0, start, Math.Min(128, bank.Count - start))));
        var all = cat(parts, 0).DetachFromDisposeScope();
        foreach (var p in parts) p.Dispose();
        return all;
    }

    /// <summary>
    /// Probes are scored with the prompt prefix through the image tokens computed once per image of the batch
    /// (Generation/SharedPrefix.cs) when the prompts allow it; false = every prompt in full (the reference path).
    /// </summary>
    public bool SharePrefix { get; init; } = true;

    /// <summary>
    /// The option probabilities [B, options] of prompts about images (rows <paramref name="imageOfRow"/> of
    /// <paramref name="features"/>), as the evaluator scores probes: with <paramref name="share"/> the prefix through the
    /// image tokens runs once per distinct image when every prompt has the same prefix ids, else every prompt in full.
    /// </summary>
    public static float[][] ScoreOptions(Vla vla, TextGenerator gen, IReadOnlyList<int[]> prompts, Tensor features,
        IReadOnlyList<int> imageOfRow, IReadOnlyList<string> options, bool share)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        if (share && SharedPrefix.Split(prompts, vla.Model.Config.ImageTokenIndex) is int p)
        {
            var images = imageOfRow.Distinct().ToList();
            var slot = images.Select((img, k) => (img, k)).ToDictionary(x => x.img, x => (long)x.k);
            var prefixFeatures = features.index_select(0, tensor(images.Select(i => (long)i).ToArray()));
            var logits = SharedPrefix.LastLogits(vla.Model, prompts, p, prefixFeatures, imageOfRow.Select(i => slot[i]).ToList(),
                vla.Tokenizer.PadId, vla.Prompts.VirtualTokens);
            return gen.OptionProbabilities(logits, options);
        }
        var feats = features.index_select(0, tensor(imageOfRow.Select(i => (long)i).ToArray()));
        using var batch = vla.Batch(prompts, null, feats);
        return gen.ScoreOptions(batch, options);
    }

    private List<Sample> Answer(TextGenerator gen, IReadOnlyList<ManifestItem> items, Tensor features, List<WorkUnit> units)
    {
        using var scope = NewDisposeScope();
        var prompts = units.Select(u => PromptIds(u.Prompt)).ToList();
        var result = new List<Sample>();
        if (units[0].Kind == SampleKind.Probe)
        {
            var probs = ScoreOptions(vla, gen, prompts, features, units.Select(u => u.Item).ToList(), units[0].Options!, SharePrefix);
            for (int k = 0; k < units.Count; k++)
                result.Add(MakeSample(items[units[k].Item], units[k], null, probs[k].Select(p => Math.Round((double)p, 7)).ToArray(), null));
            return result;
        }
        var feats = features.index_select(0, tensor(units.Select(u => (long)u.Item).ToArray()));
        using var batch = vla.Batch(prompts, null, feats);
        int max = units[0].Kind == SampleKind.Caption ? suite.MaxNewTokens : 4;
        var opts = units[0].Kind == SampleKind.Caption && (beams > 1 || penalty is not null)
            ? new GenerationOptions(max, Math.Max(beams, 2)) : GenerationOptions.Greedy(max);
        var outs = gen.Generate(batch, opts, units[0].Kind == SampleKind.Caption ? penalty : null);
        for (int k = 0; k < units.Count; k++)
            result.Add(MakeSample(items[units[k].Item], units[k], outs[k].Text, null, Math.Round(outs[k].SumLogProb, 5)));
        return result;
    }

    // Prompt ids by text, for the prompt format (and soft-prompt state) they were made with: a trainer's validator asks
    // the same prompts at every validation.
    private readonly Dictionary<string, int[]> promptIds = new(StringComparer.Ordinal);
    private (Generation.PromptFormat format, bool soft)? promptIdsFor;

    private int[] PromptIds(string prompt)
    {
        var now = (vla.Prompts, vla.Prompts.Soft is { Enabled: true });
        if (promptIdsFor is not { } f || !ReferenceEquals(f.format, now.Prompts) || f.soft != now.Item2) { promptIds.Clear(); promptIdsFor = now; }
        return promptIds.TryGetValue(prompt, out var ids) ? ids : promptIds[prompt] = vla.PromptIds(prompt);
    }

    private static Sample MakeSample(ManifestItem it, WorkUnit u, string? output, IReadOnlyList<double>? probs, double? logprob) => new()
    {
        Id = it.Id, Kind = u.Kind, Prompt = u.Prompt, Output = output,
        References = u.Kind == SampleKind.Caption ? it.Captions : null,
        Answer = u.Kind == SampleKind.Fact ? u.Question?.A : null,
        Options = u.Options, Probs = probs, Attribute = u.Question?.Attribute, AttributeSplit = u.Question?.AttributeSplit,
        LogProb = logprob, Image = it.Image, Gender = it.Attributes.Gender, Tone = it.Attributes.Tone, Pair = it.Pair,
        Context = it.Context, Role = it.Role, LeanContext = it.Lean?.Context, LeanRole = it.Lean?.Role,
    };
}

/// <summary>
/// An evaluation's result cache: the samples an append-only JSONL file holds for one model identity, and the appending
/// of new ones (each batch's lines written and flushed together). Calls on several threads may share one (a lock).
/// No file = nothing cached, nothing written.
/// </summary>
internal sealed class ResultCache : IDisposable
{
    private readonly Dictionary<string, Sample> samples;
    private readonly StreamWriter? writer;
    private readonly string identity;
    private readonly object gate = new();

    private ResultCache(Dictionary<string, Sample> samples, StreamWriter? writer, string identity)
    {
        this.samples = samples; this.writer = writer; this.identity = identity;
    }

    public static ResultCache Open(string? file, string identity) =>
        new(Load(file, identity), file is null ? null : OpenForAppend(file), identity);

    public bool TryGet(string key, out Sample sample)
    {
        lock (gate) return samples.TryGetValue(key, out sample!);
    }

    public void Append(IReadOnlyList<Sample> answered)
    {
        if (writer is null) return;
        lock (gate)
        {
            foreach (var s in answered) writer.WriteLine(JsonSerializer.Serialize(new CacheLine(identity, s), Sample.Json));
            writer.Flush();
        }
    }

    public void Dispose() => writer?.Dispose();

    private sealed record CacheLine(string Model, Sample Sample);

    /// <summary>Opens the cache for appending; a last line cut short by an interruption is ended first so new lines stay whole.</summary>
    private static StreamWriter OpenForAppend(string file)
    {
        bool needsNewline = false;
        if (File.Exists(file) && new FileInfo(file).Length > 0)
        {
            using var f = File.OpenRead(file);
            f.Seek(-1, SeekOrigin.End);
            needsNewline = f.ReadByte() != '\n';
        }
        var w = new StreamWriter(file, append: true);
        if (needsNewline) w.WriteLine();
        return w;
    }

    private static Dictionary<string, Sample> Load(string? file, string identity)
    {
        var d = new Dictionary<string, Sample>(StringComparer.Ordinal);
        if (file is null || !File.Exists(file)) return d;
        foreach (var line in File.ReadLines(file))
        {
            CacheLine? c;
            try { c = JsonSerializer.Deserialize<CacheLine>(line, Sample.Json); }
            catch (JsonException) { continue; }   // a line cut short by an interruption
            if (c?.Sample is not null && c.Model == identity) d[c.Sample.Key] = c.Sample;
        }
        return d;
    }
}
