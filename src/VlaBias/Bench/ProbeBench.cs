// Probing throughput of `vlatune bench`: images × yes/no questions through the evaluator's probe scoring
// (Evaluator.ScoreOptions), naive (every question's full prompt, image tokens included, in batches of naiveBatchSize)
// against a shared prefix (the prompt through the image tokens once per image, every question continuing from its
// cache: Generation/SharedPrefix.cs, in the evaluator's batches: Evaluator.ImageBatches of the suite's size), timed in
// the same run on the same prompts, with the largest probability difference between the two paths' last timed runs.
// The image features are computed inside each timed run on both paths. Takes any loaded model, so the bench config and
// the real-size configs (RealSizeBench.cs) call it alike.
using System.Text.Json.Nodes;
using VlaBias.Evaluation;
using VlaBias.Generation;
using static TorchSharp.torch;

namespace VlaBias.Bench;

public static class ProbeBench
{
    /// <param name="MaxProbDiff">Largest |p(option)| difference, naive vs shared.</param>
    public sealed record Result(double NaivePromptsPerS, double SharedPromptsPerS, double MaxProbDiff, JsonObject Details);

    /// <summary>
    /// <paramref name="images"/> random images × <paramref name="questions"/> distinct yes/no questions (3 to 6 words),
    /// image-major. <paramref name="batchSize"/>: the evaluator's batch size (the suite default) for the shared path;
    /// <paramref name="naiveBatchSize"/>: rows per full-prompt forward (default the same).
    /// </summary>
    public static Result Run(Vla vla, int warmup, int repeats, int images = 4, int questions = 48, int batchSize = 64, long seed = 0,
        int? naiveBatchSize = null)
    {
        var gen = new TextGenerator(vla);
        // The bench's closed vocabulary has no "yes"/"no" (both are its unknown token); any two distinct tokens cost the same.
        string[] options = ["yes", "no"];
        if (vla.Tokenizer.Encode("yes").FirstOrDefault() == vla.Tokenizer.Encode("no").FirstOrDefault()) options = ["describe", "image"];
        gen.OptionTokenIds(options);
        var qs = Enumerable.Range(0, questions)
            .Select(k => "is the image " + string.Join(" ", Enumerable.Range(0, 1 + k % 4).Select(j => $"w{k * 4 + j}")) + " ?").ToList();
        var prompts = new List<int[]>();
        var imageOfRow = new List<int>();
        for (int i = 0; i < images; i++)
            foreach (var q in qs) { prompts.Add(vla.PromptIds(q)); imageOfRow.Add(i); }
        var rows = Enumerable.Range(0, prompts.Count).ToList();
        int naiveBatch = naiveBatchSize ?? batchSize;
        var naiveBatches = rows.Chunk(naiveBatch).ToList();
        var sharedBatches = Evaluator.ImageBatches(rows, r => imageOfRow[r], batchSize);
        int size = vla.Model.Config.Vision.ImageSize;
        manual_seed(seed);
        using var pixels = randn(images, 3, size, size).to_type(vla.Model.DType);
        int? prefix = SharedPrefix.Split(prompts, vla.Model.Config.ImageTokenIndex);
        if (prefix is null) throw new InvalidOperationException("the bench prompts do not share a prefix through the image tokens");

        float[][] naiveProbs = [], sharedProbs = [];
        float[][] Score(bool share)
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var features = vla.Model.ImageFeatures(pixels);
            return (share ? sharedBatches : naiveBatches).SelectMany(batch => Evaluator.ScoreOptions(vla, gen, batch.Select(r => prompts[r]).ToList(),
                features, batch.Select(r => imageOfRow[r]).ToList(), options, share)).ToArray();
        }

        var naive = Timings.TimeMs(warmup, repeats, () => naiveProbs = Score(false));
        var shared = Timings.TimeMs(warmup, repeats, () => sharedProbs = Score(true));
        double maxDiff = naiveProbs.Zip(sharedProbs).Max(r => r.First.Zip(r.Second).Max(x => Math.Abs(x.First - x.Second)));
        double naivePs = prompts.Count * 1000.0 / naive.Median, sharedPs = prompts.Count * 1000.0 / shared.Median;
        var details = new JsonObject
        {
            ["images"] = images, ["questions_per_image"] = questions, ["batch_size"] = batchSize, ["naive_batch_size"] = naiveBatch,
            ["shared_batches"] = sharedBatches.Count, ["prompt_tokens_mean"] = Timings.Round(prompts.Average(p => p.Length)), ["prefix_tokens"] = prefix,
            ["naive_ms"] = naive.ToJson(), ["shared_ms"] = shared.ToJson(),
            ["shared_over_naive"] = Timings.Round(sharedPs / naivePs),
            ["max_prob_diff"] = maxDiff,
            ["p_first"] = new JsonArray(naiveProbs.Take(4).Select(p => (JsonNode)Timings.Round(p[0], 6)).ToArray()),
            ["options"] = string.Join(",", options), ["dtype"] = vla.Model.DType.ToString(),
        };
        return new Result(naivePs, sharedPs, maxDiff, details);
    }
}
