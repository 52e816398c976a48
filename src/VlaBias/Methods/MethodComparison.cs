// `vlatune methods`: every debiasing method of the field on one base model, measured by the SAME evaluator (one suite,
// one split, the same bootstrap), written as one table (OUT/comparison.md) with bias, accuracy (95% CIs) and cost.
// Methods, in order: base; LoRA (the recipe); prompt tuning (the recipe with method prompt); steering (mean-diff,
// remove s = 1; and the data-free gradient vector); prompt engineering (our fairness instruction, plus an
// in-vocabulary wording when the tokenizer has a closed vocabulary); beam search (λ = 0, the control) and penalty
// decoding (λ > 0); optionally a model pretrained on rebalanced + augmented data (data side; its pretraining is the cost).
// Cost: extra parameters (trained or stored), training/build time, and inference time of the evaluation (forward passes
// and decoding of every prompt, without image loading and metrics) relative to base; the evaluation runs without its
// result cache so every method is timed on the same work. Wall-clock times: on a shared machine they are noisy.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Serilog;
using VlaBias.Adapters;
using VlaBias.Data;
using VlaBias.Evaluation;
using VlaBias.Recipes;
using VlaBias.Steering;
using VlaBias.Training;

namespace VlaBias.Methods;

public sealed record MethodsRequest(
    string Model, string Data, string Suite, string Recipe, string Out,
    int? MaxSteps = null, int? EvalEvery = null, double PromptLr = 3e-3, int PromptTokens = 8,
    string SteerLayers = "all", double Penalty = 2.0, int Beams = 3, int? Bootstrap = null,
    string? DataModel = null, double? DataModelSeconds = null, IReadOnlyCollection<string>? Skip = null);

public sealed record MethodRow(string Name, string Description, JsonObject Metrics, long ExtraParameters, double TrainSeconds, double EvalSeconds);

public static class MethodComparison
{
    /// <summary>Our in-vocabulary approximation of the fairness instruction for closed vocabularies (tiny-base).</summary>
    public const string InVocabularyInstruction = "describe the person. the person is unknown.";

    public static IReadOnlyList<MethodRow> Run(MethodsRequest req, IProgress<string>? progress = null)
    {
        var skip = req.Skip ?? [];
        var suite = Suite.Load(req.Suite, o => { if (req.Bootstrap is int b) o.Override("bootstrap", b); });
        Directory.CreateDirectory(req.Out);
        var rows = new List<MethodRow>();
        string runs = Path.Combine(req.Out, "runs");

        MethodRow Eval(string name, string description, string model, string? adapter, Interventions methods, long extra, double train)
        {
            progress?.Report($"evaluating {name}");
            var vla = Vla.Load(model, adapter);
            using var applied = methods.Apply(vla);
            var outcome = EvalRunner.Run(vla, new EvalRequest(model, adapter, suite, Path.Combine(req.Out, name), Shard.All, UseCache: false, Methods: methods));
            var row = new MethodRow(name, description, outcome.Metrics!, extra, train, (outcome.Inference ?? outcome.Elapsed).TotalSeconds);
            Log.Information("methods: {Name}: pairwise probe gap (test attributes) {Gap}, CIDEr-D {Cider}, eval {Seconds:F1} s", name,
                Value(row.Metrics, "pairwise_probe_gap.test"), Value(row.Metrics, "cider_d"), row.EvalSeconds);
            rows.Add(row);
            WriteTable(req, rows);
            return row;
        }

        // Warm-up (JIT, native kernels) on a few items, so the first timed method is not charged for it.
        string warm = Path.Combine(req.Out, ".warmup");
        EvalRunner.Run(Vla.Load(req.Model), new EvalRequest(req.Model, null, suite with { Bootstrap = 2, LicSeeds = 1 }, warm, Shard.All, UseCache: false, Limit: 8));
        Directory.Delete(warm, true);

        Eval("base", "no intervention (greedy)", req.Model, null, Interventions.None, 0, 0);

        foreach (var method in new[] { "lora", "prompt" })
        {
            if (skip.Contains(method)) continue;
            progress?.Report($"training {method}");
            var r = Recipes.Recipe.Load(req.Recipe);
            r.Override("model", req.Model); r.Override("data", req.Data); r.Override("suite", req.Suite);
            r.Override("runs_dir", runs); r.Override("name", method); r.Override("final_eval", "false"); r.Override("method", method);
            if (req.MaxSteps is int ms) r.Override("max_steps", ms);
            if (req.EvalEvery is int ee) r.Override("eval_every", ee);
            if (method == "prompt") { r.Override("lr", req.PromptLr); r.Override("prompt_tokens", req.PromptTokens); }
            var cfg = TuneConfig.From(r);
            string runDir = Path.Combine(runs, method);
            if (Directory.Exists(runDir)) Directory.Delete(runDir, true);   // a comparison always trains afresh
            var result = DebiasTrainer.Run(cfg, r);
            var state = JsonNode.Parse(File.ReadAllText(Path.Combine(runDir, "trainer_state.json")))!;
            long extra = state["trainable_parameters"]?.GetValue<long>() ?? 0;
            string desc = method == "lora"
                ? $"LoRA r={cfg.LoraR} on {string.Join(",", cfg.TargetModules)}, {result.Steps} steps (best {result.BestStep}), lr {cfg.Lr}"
                : $"soft prefix of {cfg.PromptTokens} embeddings after BOS, {result.Steps} steps (best {result.BestStep}), lr {cfg.Lr}";
            if (method == "lora") Eval("lora", desc, req.Model, runDir, Interventions.None, extra, result.Elapsed.TotalSeconds);
            else Eval("prompt-tuning", desc, req.Model, null, new Interventions { SoftPrompt = runDir }, extra, result.Elapsed.TotalSeconds);
        }

        var buildVla = Vla.Load(req.Model);
        var layers = SteeringBuilder.ParseLayers(req.SteerLayers, buildVla.Config.Text.NumHiddenLayers);
        if (!skip.Contains("steer"))
        {
            progress?.Report("building steering vectors (mean-diff)");
            var items = Manifest.Load(req.Data).Where(i => i.Split == Split.Tune).ToList();
            var clock = Stopwatch.StartNew();
            using var v = SteeringBuilder.MeanDiff(buildVla, items, Path.GetDirectoryName(Path.GetFullPath(req.Data))!, layers, suite.CaptionPrompt);
            var file = Path.Combine(req.Out, "steer-mean-diff.safetensors");
            v.Save(file);
            double secs = clock.Elapsed.TotalSeconds;
            Eval("steer-mean-diff", $"remove s=1 at layers {string.Join(",", layers)}, man − woman at the last prompt token over tune pairs",
                req.Model, null, new Interventions { Steer = file }, v.ByLayer.Values.Sum(t => t.numel()), secs);

            progress?.Report("building steering vectors (gradient)");
            clock.Restart();
            var words = WordLists.Load(suite.Words, suite.World);
            using var g = SteeringBuilder.Gradient(buildVla, words, layers, suite.CaptionPrompt);
            var gfile = Path.Combine(req.Out, "steer-gradient.safetensors");
            g.Save(gfile);
            Eval("steer-gradient", $"remove s=1 at layers {string.Join(",", layers)}, one gradient step on blank/random image features (no data)",
                req.Model, null, new Interventions { Steer = gfile }, g.ByLayer.Values.Sum(t => t.numel()), clock.Elapsed.TotalSeconds);
        }

        if (!skip.Contains("prompt-engineering"))
        {
            var unknown = Interventions.UnknownWords(buildVla, Interventions.FairnessInstruction);
            Eval("fairness-instruction", $"\"{Interventions.FairnessInstruction}\"" + (unknown.Count > 0 ? $" ({unknown.Count} words out of vocabulary → <unk>)" : ""),
                req.Model, null, new Interventions { Fairness = true }, 0, 0);
            if (unknown.Count > 0)
                Eval("instruction-in-vocab", $"\"{InVocabularyInstruction}\" (only in-vocabulary words)", req.Model, null, new Interventions { PromptPrefix = InVocabularyInstruction }, 0, 0);
        }

        if (!skip.Contains("penalty"))
        {
            Eval($"beam{req.Beams}", $"beam search, {req.Beams} beams, no penalty (control for penalty decoding)", req.Model, null, new Interventions { Beams = req.Beams }, 0, 0);
            Eval("penalty-decoding", $"beam {req.Beams}, λ={req.Penalty.ToString(CultureInfo.InvariantCulture)} on every gendered word (data/words lists)",
                req.Model, null, new Interventions { Beams = req.Beams, Penalty = req.Penalty, PenaltyWords = "default" }, 0, 0);
        }

        if (req.DataModel is not null)
            Eval("data-rebalance-augment", $"base pretrained on rebalanced + augmented data ({req.DataModel})", req.DataModel, null, Interventions.None, 0, req.DataModelSeconds ?? double.NaN);

        WriteTable(req, rows);
        return rows;
    }

    private static double? Value(JsonObject m, string metric) => m["metrics"]?[metric]?["value"]?.GetValue<double>();

    private static string Cell(JsonObject m, string metric)
    {
        var c = m["metrics"]?[metric];
        if (c?["value"] is not JsonNode v) return "–";
        string s = v.GetValue<double>().ToString("0.000", CultureInfo.InvariantCulture);
        if (c["ci95"] is JsonArray ci && ci[0] is not null)
            s += $" [{ci[0]!.GetValue<double>().ToString("0.000", CultureInfo.InvariantCulture)}, {ci[1]!.GetValue<double>().ToString("0.000", CultureInfo.InvariantCulture)}]";
        return s;
    }

    private static string Seconds(double s) => double.IsNaN(s) ? "–" : s == 0 ? "0" : s < 60 ? $"{s:F1} s" : $"{s / 60:F1} min";

    public static string Table(IReadOnlyList<MethodRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| method | pairwise probe gap, held-out attributes ↓ | pairwise probe gap, train attributes ↓ | stereotype rate, unclear figures ↓ | caption gender error ↓ | CIDEr-D ↑ | VQA accuracy ↑ | extra parameters | training / build | inference time (× base) |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        double baseEval = rows.Count > 0 ? rows[0].EvalSeconds : double.NaN;
        foreach (var r in rows)
            sb.AppendLine($"| {r.Name} | {Cell(r.Metrics, "pairwise_probe_gap.test")} | {Cell(r.Metrics, "pairwise_probe_gap.train")} | {Cell(r.Metrics, "caption_gender.stereotype_rate_unclear")} | " +
                          $"{Cell(r.Metrics, "caption_gender.error_rate")} | {Cell(r.Metrics, "cider_d")} | {Cell(r.Metrics, "vqa_accuracy")} | " +
                          $"{r.ExtraParameters:N0} | {Seconds(r.TrainSeconds)} | {Seconds(r.EvalSeconds)} ({(r.EvalSeconds / baseEval).ToString("0.00", CultureInfo.InvariantCulture)}×) |");
        return sb.ToString();
    }

    private static void WriteTable(MethodsRequest req, IReadOnlyList<MethodRow> rows)
    {
        var first = rows[0].Metrics;
        var sb = new StringBuilder("# Debiasing methods compared on one evaluator\n\n");
        sb.AppendLine($"Model `{req.Model}`, suite `{first["suite"]}` split `{first["split"]}` ({first["n_items"]} items), tuning data `{req.Data}`, recipe `{req.Recipe}`.");
        sb.AppendLine("Values with bootstrap 95% CIs in brackets. Generated by `vlatune methods` (see README).\n");
        sb.Append(Table(rows)).AppendLine();
        sb.AppendLine("Methods:\n");
        foreach (var r in rows) sb.AppendLine($"- **{r.Name}**: {r.Description}");
        sb.AppendLine("\nAll metrics, deltas against base (`*`: 95% intervals do not overlap):\n");
        sb.Append(Comparison.Table(rows.Select(r => (r.Name, r.Metrics)).ToList()));
        AtomicFile.WriteAllText(Path.Combine(req.Out, "comparison.md"), sb.ToString());
    }
}
