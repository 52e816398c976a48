// One evaluation run into a folder: suite → items of its split → ImageBank → Evaluator.Collect (with
// cache and shard) → samples.jsonl → metrics.json → report.md (+ report.html and plots from Reports). A shard run
// writes only its samples; `Merge` joins shard folders and writes the full outputs, computed by the same code.
// RunCached: the same, through the evaluation cache of finished folders (EvalCache.cs).
using System.Text.Json.Nodes;
using Serilog;
using VlaBias.Data;
using VlaBias.Images;

namespace VlaBias.Evaluation;

/// <summary><paramref name="Methods"/>: inference-time methods already applied to the model (their decoding settings are used here).
/// <paramref name="Items"/>: the items of the suite's manifest when the caller has already read that file (null = read here).</summary>
public sealed record EvalRequest(string Model, string? Adapter, Suite Suite, string Out, Shard Shard, bool UseCache = true, int? Limit = null,
    Methods.Interventions? Methods = null, IReadOnlyList<ManifestItem>? Items = null);

/// <summary><paramref name="Inference"/>: the time spent answering (model forward passes and decoding), without loading and metrics.
/// <paramref name="FromCache"/>: the folder was copied from the evaluation cache (EvalCache.cs).</summary>
public sealed record EvalOutcome(string Out, JsonObject? Metrics, int Samples, TimeSpan Elapsed, TimeSpan? Inference = null, bool FromCache = false);

public static class EvalRunner
{
    public const string SamplesFile = "samples.jsonl", MetricsFile = "metrics.json", CacheFile = "cache.jsonl", ShardFile = "shard.json";

    public static EvalOutcome Run(Vla vla, EvalRequest req, IProgress<(int done, int total)>? progress = null)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var pieces = EvalPieces.Open(vla, req, 1);
        var samples = pieces.Collect(vla, 1, progress);
        if (req.Shard.Count > 1)
        {
            WriteSamples(Path.Combine(req.Out, SamplesFile), samples);
            AtomicFile.WriteAllText(Path.Combine(req.Out, ShardFile), new JsonObject
            {
                ["index"] = req.Shard.Index, ["count"] = req.Shard.Count, ["model"] = req.Model, ["adapter"] = req.Adapter,
                ["suite"] = req.Suite.SourcePath, ["split"] = req.Suite.Split, ["n_items"] = pieces.ItemCount,
                ["identity"] = pieces.Identity, ["bootstrap"] = req.Suite.Bootstrap, ["limit"] = req.Limit,
                ["model_s"] = Math.Round(pieces.ModelSeconds, 3),
            }.ToJsonString());
            Log.Information("eval: shard {Index}/{Count}: {Samples} samples in {Out}; join shards with `vlatune eval merge`", req.Shard.Index, req.Shard.Count, samples.Count, req.Out);
            return new EvalOutcome(req.Out, null, samples.Count, clock.Elapsed);
        }
        return pieces.Finish(clock);
    }

    /// <summary>
    /// <see cref="Run"/> for a whole, unfiltered evaluation of a model without adapter or methods, through the
    /// evaluation cache (EvalCache.cs): an entry whose key covers this model's files, the suite and its data, the code
    /// and the numerics settings is copied into the output folder; otherwise the evaluation runs and is stored.
    /// </summary>
    /// <param name="cacheRoot">The cache's folder (default <see cref="EvalCache.Root"/>).</param>
    public static EvalOutcome RunCached(Vla vla, EvalRequest req, IProgress<(int done, int total)>? progress = null, string? cacheRoot = null)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (entry, hit) = LookUp(vla, req, cacheRoot, clock);
        if (hit is not null) return hit;
        var outcome = Run(vla, req, progress);
        entry?.Store(req.Out);
        return outcome;
    }

    /// <summary>Where a finished evaluation folder of <paramref name="req"/> goes in the evaluation cache.</summary>
    public sealed record CacheEntry(string Root, string Key, JsonObject Parts)
    {
        public void Store(string evalDir) => EvalCache.Store(Root, Key, Parts, evalDir);
    }

    /// <summary>
    /// The evaluation cache's entry for <paramref name="req"/> (null when the cache is off or the request is not a whole,
    /// unfiltered evaluation of a model without adapter or methods) and, when the entry exists, its folder copied into
    /// req.Out (the outcome; null otherwise).
    /// </summary>
    public static (CacheEntry? entry, EvalOutcome? hit) LookUp(Vla vla, EvalRequest req, string? cacheRoot = null, System.Diagnostics.Stopwatch? clock = null)
    {
        clock ??= System.Diagnostics.Stopwatch.StartNew();
        var root = cacheRoot ?? EvalCache.Root();
        if (root is null || req.Adapter is not null || req.Methods is not null || req.Limit is not null || req.Shard != Shard.All)
            return (null, null);
        var parts = EvalCache.KeyParts(vla, req.Model, req.Suite);
        var entry = new CacheEntry(root, EvalCache.Key(parts), parts);
        if (EvalCache.TryRestore(root, entry.Key, req.Out) is not { } metrics) return (entry, null);
        Log.Information("eval: {Out} copied from the evaluation cache {Entry} (same model files, suite, data and code)", req.Out, Path.Combine(root, entry.Key));
        int n = File.ReadLines(Path.Combine(req.Out, SamplesFile)).Count(l => l.Length > 0);
        return (entry, new EvalOutcome(req.Out, metrics, n, clock.Elapsed, TimeSpan.Zero, FromCache: true));
    }

    /// <summary>What the result cache and shard.json key on: model and adapter files plus the inference-time methods.</summary>
    public static string Identity(string model, string? adapter, Methods.Interventions? methods) =>
        Evaluator.ModelIdentity(model, adapter) + (methods?.Identity() is { Length: > 0 } m ? "|" + m : "");

    /// <summary>Computes metrics from samples and writes metrics.json and the reports. metrics.json's <c>timing</c> holds
    /// <paramref name="modelSeconds"/> (answering, from the caller) and the seconds of the statistics and of the reports;
    /// it is written before the reports and again with their time once they are done.</summary>
    public static JsonObject WriteMetricsAndReports(string outDir, IReadOnlyList<Sample> samples, Suite suite, string model, string? adapter, int nItems, double modelSeconds = 0)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var words = WordLists.Load(suite.Words, suite.World);
        var metrics = MetricsCalculator.Compute(samples, words, suite.Bootstrap, suite.LicSeeds, suite.Seed);
        var doc = MetricsCalculator.Document(model, adapter, suite.Name, suite.Split, nItems, metrics);
        var timing = new JsonObject { ["model_s"] = Math.Round(modelSeconds, 3), ["statistics_s"] = Math.Round(clock.Elapsed.TotalSeconds, 3) };
        doc["timing"] = timing;
        AtomicFile.WriteAllText(Path.Combine(outDir, MetricsFile), MetricsCalculator.ToJson(doc));
        clock.Restart();
        Reports.WriteEvalReport(outDir, doc, samples, suite);
        timing["reports_s"] = Math.Round(clock.Elapsed.TotalSeconds, 3);
        AtomicFile.WriteAllText(Path.Combine(outDir, MetricsFile), MetricsCalculator.ToJson(doc));
        Log.Information("eval: model {Model:F1} s, statistics {Statistics:F1} s, reports {Reports:F1} s", modelSeconds,
            timing["statistics_s"]!.GetValue<double>(), timing["reports_s"]!.GetValue<double>());
        return doc;
    }

    public static void WriteSamples(string path, IEnumerable<Sample> samples) =>
        AtomicFile.Write(path, s =>
        {
            using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false), leaveOpen: true);
            foreach (var x in samples) w.WriteLine(x.ToLine());
        });

    /// <summary>
    /// Joins the samples of shard folders (all shards of one run, each exactly once) into a full evaluation folder.
    /// The suite is reloaded from its file with the split and bootstrap the shards recorded, so the merged metrics
    /// equal an unsharded run's.
    /// </summary>
    public static EvalOutcome Merge(IReadOnlyList<string> shardDirs, string outDir)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (shardDirs.Count == 0) throw new BadInputException("eval merge: no shard folders given");
        var infos = shardDirs.Select(ReadShardInfo).ToList();
        int count = infos[0].info["count"]!.GetValue<int>();
        foreach (var (dir, info) in infos)
            foreach (var key in new[] { "count", "model", "adapter", "suite", "split", "identity", "bootstrap", "limit" })
                if (info[key]?.ToJsonString() != infos[0].info[key]?.ToJsonString())
                    throw new BadInputException($"{dir}: field '{key}' of {ShardFile} differs from {infos[0].dir}'s: these shards are not of one run");
        var problems = new List<string>();
        foreach (var g in infos.GroupBy(x => x.info["index"]!.GetValue<int>()).Where(g => g.Count() > 1).OrderBy(g => g.Key))
            problems.Add($"shard {g.Key}/{count} given {g.Count()} times ({string.Join(", ", g.Select(x => x.dir))})");
        var given = infos.Select(x => x.info["index"]!.GetValue<int>()).ToHashSet();
        var missing = Enumerable.Range(1, count).Where(i => !given.Contains(i)).ToList();
        if (missing.Count > 0) problems.Add($"shard{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing.Select(i => $"{i}/{count}"))} missing");
        if (problems.Count > 0) throw new BadInputException($"eval merge: {string.Join("; ", problems)} (expected each of 1..{count} once)");
        var samples = infos.SelectMany(x => Sample.ReadAll(Path.Combine(x.dir, SamplesFile))).OrderBy(s => s.Key, StringComparer.Ordinal).ToList();
        var first = infos[0].info;
        var suite = Suite.Load(first["suite"]!.GetValue<string>()) with { Split = first["split"]!.GetValue<string>() };
        if (first["bootstrap"] is JsonNode b) suite = suite with { Bootstrap = b.GetValue<int>() };
        Directory.CreateDirectory(outDir);
        WriteSamples(Path.Combine(outDir, SamplesFile), samples);
        // The model time of a merged run is the shards' total (a shard written before shards recorded it counts 0).
        double modelSeconds = infos.Sum(x => x.info["model_s"]?.GetValue<double>() ?? 0);
        var doc = WriteMetricsAndReports(outDir, samples, suite, first["model"]!.GetValue<string>(), first["adapter"]?.GetValue<string>(), first["n_items"]!.GetValue<int>(), modelSeconds);
        return new EvalOutcome(outDir, doc, samples.Count, clock.Elapsed);
    }

    /// <summary>shard.json of a shard folder; bad input when the folder is not a finished shard.</summary>
    public static (string dir, JsonObject info) ReadShardInfo(string dir)
    {
        var f = Path.Combine(dir, ShardFile);
        if (!File.Exists(f)) throw new BadInputException($"{dir}: not a finished shard folder (no {ShardFile}); run `vlatune eval --shard i/n` first");
        JsonObject info;
        try { info = JsonNode.Parse(File.ReadAllText(f)) as JsonObject ?? throw new System.Text.Json.JsonException("not an object"); }
        catch (System.Text.Json.JsonException e) { throw new BadInputException($"{f}: not a shard description ({e.Message})"); }
        foreach (var key in new[] { "index", "count", "model", "suite", "split", "n_items" })
            if (info[key] is null) throw new BadInputException($"{f}: field '{key}' missing");
        if (!File.Exists(Path.Combine(dir, SamplesFile))) throw new BadInputException($"{dir}: {SamplesFile} missing beside {ShardFile}");
        return (dir, info);
    }
}

/// <summary>
/// One evaluation whose answering is cut into pieces (every n-th batch, as shards cut it) that run as separate calls:
/// one after another between other work, or on copies of the model on several threads at once, each call with its own
/// model. Open reads the items and images once; Collect answers one piece (any thread; the result cache is shared under
/// a lock; image features are computed once per model); Finish joins the pieces' samples in key order and writes
/// samples.jsonl, metrics.json and the reports. Every unit is answered in the batch it has in a whole run, so the outputs
/// equal an evaluation in one call. With one piece, the request's own shard is the piece.
/// </summary>
public sealed class EvalPieces : IDisposable
{
    private readonly EvalRequest req;
    private readonly List<ManifestItem> items;
    private readonly ImageBank bank;
    private readonly ResultCache cache;
    private readonly Methods.Interventions methods;
    private readonly List<Sample>?[] done;
    private readonly Dictionary<Vla, (Evaluator evaluator, TorchSharp.torch.Tensor features)> models = new();
    private readonly object gate = new();
    private double modelSeconds;

    public int Count { get; }
    public int ItemCount => items.Count;
    public string Identity { get; }

    /// <summary>Seconds spent answering, summed over the pieces collected so far.</summary>
    public double ModelSeconds { get { lock (gate) return modelSeconds; } }

    private EvalPieces(EvalRequest req, List<ManifestItem> items, ImageBank bank, ResultCache cache, Methods.Interventions methods, string identity, int count)
    {
        this.req = req; this.items = items; this.bank = bank; this.cache = cache; this.methods = methods;
        Identity = identity; Count = count; done = new List<Sample>?[count];
    }

    /// <param name="vla">Any of the models that will answer (its image processor decodes the images).</param>
    public static EvalPieces Open(Vla vla, EvalRequest req, int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "at least one piece");
        if (count > 1 && req.Shard != Shard.All) throw new ArgumentException($"a shard ({req.Shard.Index}/{req.Shard.Count}) is not cut into pieces", nameof(req));
        var suite = req.Suite;
        var items = (req.Items ?? Manifest.Load(suite.Manifest)).Where(i => i.Split?.Name() == suite.Split).OrderBy(i => i.Id, StringComparer.Ordinal).ToList();
        if (items.Count == 0) throw new BadInputException($"{suite.Manifest}: no items with split '{suite.Split}' (suite {suite.SourcePath})");
        if (req.Limit is int lim) items = items.Take(lim).ToList();
        string manifestDir = Path.GetDirectoryName(Path.GetFullPath(suite.Manifest))!;
        Directory.CreateDirectory(req.Out);
        var bank = ImageBank.Load(items, manifestDir, vla.Images);
        var methods = req.Methods ?? Methods.Interventions.None;
        string identity = EvalRunner.Identity(req.Model, req.Adapter, methods);
        var cache = ResultCache.Open(req.UseCache ? Path.Combine(req.Out, EvalRunner.CacheFile) : null, identity);
        return new EvalPieces(req, items, bank, cache, methods, identity, count);
    }

    /// <summary>Answers piece <paramref name="piece"/> (1-based) with <paramref name="vla"/>, as it is now.</summary>
    public List<Sample> Collect(Vla vla, int piece, IProgress<(int done, int total)>? progress = null)
    {
        if (piece < 1 || piece > Count) throw new ArgumentOutOfRangeException(nameof(piece), piece, $"pieces are 1..{Count}");
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        (Evaluator evaluator, TorchSharp.torch.Tensor features) m;
        lock (gate) models.TryGetValue(vla, out m);
        if (m.evaluator is null)
        {
            var evaluator = new Evaluator(vla, req.Suite, methods.Beams, methods.PenaltyFor(vla, req.Suite.Words));
            m = (evaluator, evaluator.ImageFeatures(bank));
            lock (gate)
                if (!models.TryAdd(vla, m)) { m.features.Dispose(); m = models[vla]; }   // another call with this model was first
        }
        var shard = Count == 1 ? req.Shard : new Shard(piece, Count);
        var samples = m.evaluator.Collect(items, bank, shard, cache, progress: progress, imageFeatures: m.features);
        lock (gate)
        {
            done[piece - 1] = samples;
            modelSeconds += System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        return samples;
    }

    /// <summary>Writes the outputs of the collected pieces (all of them must be done).</summary>
    public EvalOutcome Finish(System.Diagnostics.Stopwatch? clock = null)
    {
        List<Sample> samples;
        lock (gate)
        {
            int missing = Array.FindIndex(done, d => d is null);
            if (missing >= 0) throw new InvalidOperationException($"piece {missing + 1} of {Count} was not collected");
            samples = done.SelectMany(d => d!).OrderBy(s => s.Key, StringComparer.Ordinal).ToList();
        }
        EvalRunner.WriteSamples(Path.Combine(req.Out, EvalRunner.SamplesFile), samples);
        var doc = EvalRunner.WriteMetricsAndReports(req.Out, samples, req.Suite, req.Model, req.Adapter, items.Count, ModelSeconds);
        return new EvalOutcome(req.Out, doc, samples.Count, clock?.Elapsed ?? TimeSpan.FromSeconds(ModelSeconds), TimeSpan.FromSeconds(ModelSeconds));
    }

    public void Dispose()
    {
        foreach (var (_, features) in models.Values) features.Dispose();
        bank.Dispose();
        cache.Dispose();
    }
}
