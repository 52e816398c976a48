// Inference figures of `vlatune bench` on a random checkpoint of the bench sizes (written to a scratch folder):
// generation tokens/s with and without the KV cache (batch 1, a fixed number of new tokens: the stop token is
// suppressed until then, so both paths do the same work), captioning images/s at batch 1 and 32 (vision tower +
// prefill + forced caption length), and the same captions through ONNX Runtime (exported once with OnnxExporter).
// Each TorchSharp figure is taken twice in a row, with the model's kernel choice as loaded (Auto by default) and with
// it forced to libtorch (the `_plain` twins), so a kernel choice that loses to libtorch shows in one run.
using System.Text.Json.Nodes;
using VlaBias.Export;
using VlaBias.Generation;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Bench;

public static class InferenceBench
{
    public sealed record Result(JsonObject Details, double? TokensPerSCache, double? TokensPerSNoCache,
        double? ImagesPerSB1, double? ImagesPerSB32, double? OnnxOverTorchB1, double? OnnxOverTorchB32,
        double? CaptionGflopsB1, double? CaptionGflopsB32,
        double? TokensPerSCachePlain = null, double? ImagesPerSB1Plain = null, double? ImagesPerSB32Plain = null);

    /// <summary>
    /// Language-model matmul FLOPs of captioning <paramref name="rows"/> images: prefill of the prompt through every
    /// projection with lm_head on the last position only (what TextGenerator runs), then CaptionTokens − 1 decode steps
    /// through every projection and lm_head. The vision tower and attention scores are left out (under 1% at bench sizes).
    /// </summary>
    public static double CaptionFlops(BenchConfig bc, long promptTokens, long rows)
    {
        var text = bc.Llava(bc.Vocab).Text;
        double n = TrainingFlops.MatmulParams(text), head = (double)text.HiddenSize * text.VocabSize;
        return rows * (2.0 * promptTokens * (n - head) + 2.0 * head + 2.0 * (bc.CaptionTokens - 1) * n);
    }

    public static Result Run(BenchConfig bc, string scratch, int warmup, int repeats, bool onnx, int threads, long seed = 0)
    {
        string ckpt = Path.Combine(scratch, "model");
        RandomCheckpoint.Write(ckpt, bc.Words(), seed, std: 0.02, config: v => bc.Llava(v));
        var vla = Vla.Load(ckpt);
        var gen = new TextGenerator(vla);
        var recompute = new TextGenerator(new RecomputeEngine(vla));
        var prompt = vla.PromptIds("describe the image.");
        manual_seed(seed);
        var pixels = Enumerable.Range(0, bc.CaptionBatch).Select(_ => randn(3, bc.ImageSize, bc.ImageSize).DetachFromDisposeScope()).ToList();
        var details = new JsonObject { ["prompt_tokens"] = prompt.Length };

        // generation: batch 1, GenerationTokens new tokens, cached vs recomputed
        int newTokens = bc.GenerationTokens;
        Action Generate(bool cache) => () =>
        {
            using var batch = vla.Batch([prompt], [pixels[0]]);
            var g = (cache ? gen : recompute).Generate(batch, new GenerationOptions(newTokens, MinNewTokens: newTokens));
            if (g[0].Tokens.Length != newTokens) throw new InvalidOperationException($"generated {g[0].Tokens.Length} tokens, expected {newTokens}");
        };
        var (cached, cachedPlain) = Paired(vla, warmup, repeats, Generate(true));
        var recomputed = Timings.TimeMs(warmup, repeats, Generate(false));
        double tpsCache = newTokens * 1000.0 / cached.Median, tpsNoCache = newTokens * 1000.0 / recomputed.Median;
        details["generation"] = new JsonObject
        {
            ["batch"] = 1, ["new_tokens"] = newTokens,
            ["cache_ms"] = cached.ToJson(), ["nocache_ms"] = recomputed.ToJson(),
            ["cache_speedup"] = Timings.Round(tpsCache / tpsNoCache),
            ["cache_plain_ms"] = cachedPlain.ToJson(),
            ["kernel_choice"] = vla.Model.Kernels.Choice.ToString(),
        };

        // captioning through TorchSharp at batch 1 and CaptionBatch
        var options = new GenerationOptions(bc.CaptionTokens, MinNewTokens: bc.CaptionTokens);
        Action Caption(int n) => () =>
        {
            using var batch = vla.Batch(Enumerable.Repeat(prompt, n).ToList(), pixels.Take(n).ToList());
            gen.Generate(batch, options);
        };
        var (torchB1, torchB1Plain) = Paired(vla, warmup, repeats, Caption(1));
        var (torchBn, torchBnPlain) = Paired(vla, warmup, repeats, Caption(bc.CaptionBatch));
        double ipsB1 = 1000.0 / torchB1.Median, ipsBn = bc.CaptionBatch * 1000.0 / torchBn.Median;
        double gflopsB1 = CaptionFlops(bc, prompt.Length, 1) / (torchB1.Median * 1e-3) / 1e9;
        double gflopsBn = CaptionFlops(bc, prompt.Length, bc.CaptionBatch) / (torchBn.Median * 1e-3) / 1e9;
        details["captioning"] = new JsonObject
        {
            ["engine"] = "torch", ["new_tokens"] = bc.CaptionTokens, ["large_batch"] = bc.CaptionBatch,
            ["b1_ms"] = torchB1.ToJson(), ["b32_ms"] = torchBn.ToJson(),
            ["b32_over_b1"] = Timings.Round(ipsBn / ipsB1),
            // how close each batch size runs to the machine: language-model matmul FLOPs of the work per second
            ["b1_gflops"] = Timings.Round(gflopsB1, 2),
            ["b32_gflops"] = Timings.Round(gflopsBn, 2),
            ["b1_plain_ms"] = torchB1Plain.ToJson(), ["b32_plain_ms"] = torchBnPlain.ToJson(),
        };

        // Which linear shapes Auto gave the small-row kernel in this run: where none, the figures and their _plain twins
        // ran the same libtorch code, and their ratios measure the machine's noise, not a kernel.
        var asked = vla.Model.Kernels.Calibration.Asked().Where(kv => kv.Key.StartsWith("caller ", StringComparison.Ordinal)).ToList();
        details["kernel_auto"] = new JsonObject
        {
            ["available"] = LinearKernels.SmallRowsSupported,   // false without AVX-512: the kernel is never chosen
            ["shapes_asked"] = asked.Count,
            ["small_row_shapes"] = new JsonArray(asked.Where(kv => LinearKernels.Chooses(kv.Value)).Select(kv => (JsonNode)kv.Key).ToArray()),
        };

        double? onnxB1 = null, onnxBn = null;
        if (onnx)
        {
            string dir = Path.Combine(scratch, "onnx");
            OnnxExporter.Export(vla, dir);
            using var ort = OnnxVla.Load(dir, threads);
            var captioner = new Captioner(ort, ort.Images);
            Timings OrtCaption(int n) => Timings.TimeMs(warmup, repeats, () => captioner.Caption(pixels.Take(n).ToList(), "describe the image.", options));
            var ortB1 = OrtCaption(1);
            var ortBn = OrtCaption(bc.CaptionBatch);
            double oIpsB1 = 1000.0 / ortB1.Median, oIpsBn = bc.CaptionBatch * 1000.0 / ortBn.Median;
            onnxB1 = oIpsB1 / ipsB1;
            onnxBn = oIpsBn / ipsBn;
            details["onnx"] = new JsonObject
            {
                ["b1_ms"] = ortB1.ToJson(), ["b32_ms"] = ortBn.ToJson(),
                ["images_per_s_b1"] = Timings.Round(oIpsB1), ["images_per_s_b32"] = Timings.Round(oIpsBn),
                ["threads"] = threads,
            };
        }
        else details["onnx"] = "skipped (--quick)";
        foreach (var p in pixels) p.Dispose();
        return new Result(details, tpsCache, tpsNoCache, ipsB1, ipsBn, onnxB1, onnxBn, gflopsB1, gflopsBn,
            newTokens * 1000.0 / cachedPlain.Median, 1000.0 / torchB1Plain.Median, bc.CaptionBatch * 1000.0 / torchBnPlain.Median);
    }

    /// <summary>
    /// Times <paramref name="action"/> with the model's kernel choice as loaded and forced to libtorch, alternating run by
    /// run (ABBA…) so that drift and warm-up favour neither: timed one after the other, two identical libtorch runs
    /// differed by 0.86× (84 against 98 tokens/s), the first one slower.
    /// </summary>
    private static (Timings asLoaded, Timings plain) Paired(Vla vla, int warmup, int repeats, Action action)
    {
        var kernels = vla.Model.Kernels;
        var choice = kernels.Choice;
        double Once(KernelChoice c)
        {
            kernels.Choice = c;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            action();
            return sw.Elapsed.TotalMilliseconds;
        }
        try
        {
            for (int i = 0; i < warmup; i++) { Once(choice); Once(KernelChoice.Libtorch); }
            int n = Math.Max(1, repeats);
            var loaded = new double[n];
            var plain = new double[n];
            for (int i = 0; i < n; i++)
            {
                if (i % 2 == 0) { loaded[i] = Once(choice); plain[i] = Once(KernelChoice.Libtorch); }
                else { plain[i] = Once(KernelChoice.Libtorch); loaded[i] = Once(choice); }
            }
            return (new Timings(loaded), new Timings(plain));
        }
        finally { kernels.Choice = choice; }
    }
}
