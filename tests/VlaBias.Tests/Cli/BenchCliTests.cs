using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Bench;
using VlaBias.Model;

namespace VlaBias.Tests.Cli;

public class BenchCliTests
{
    private static readonly string[] Keys =
        ["roof_gflops", "lora_step_ms", "full_step_ms", "lora_mfu", "lora_peak_rss_mb", "full_peak_rss_mb",
         "gen_tokens_per_s_cache", "gen_tokens_per_s_nocache", "caption_images_per_s_b1", "caption_images_per_s_b32",
         "onnx_over_torch_b1", "onnx_over_torch_b32", "peer_step_ratio", "probe_prompts_per_s_naive", "probe_prompts_per_s_shared"];

    [Test]
    public void Bench_quick_prints_json_with_every_key_of_spec_9()
    {
        var dir = TestPaths.NewTempDir("bench");
        try
        {
            var outFile = Path.Combine(dir, "bench.json");
            var r = CliRunner.Run(dir, "bench", "--quick", "--repeats", "1", "--warmup", "0", "--out", outFile);
            Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
            var o = JsonNode.Parse(r.Stdout.Trim())!.AsObject();
            foreach (var k in Keys)
            {
                Assert.That(o.ContainsKey(k), k);
                Assert.That(o[k] is null || o[k]!.GetValueKind() == System.Text.Json.JsonValueKind.Number, k);
            }
            // measured in a quick run: everything but ONNX and the peer
            foreach (var k in Keys.Where(k => !k.StartsWith("onnx") && k != "peer_step_ratio"))
                Assert.That(o[k]!.GetValue<double>(), Is.GreaterThan(0), k);
            // kernels and dtype: memory bandwidth, the bf16 LoRA step, the kernel-off twins, the decode bandwidth share
            foreach (var k in new[] { "membw_gbs", "lora_step_ms_bf16", "caption_images_per_s_b1_plain", "caption_images_per_s_b32_plain",
                                      "gen_tokens_per_s_cache_plain", "decode_bandwidth_fraction" })
                Assert.That(o[k]!.GetValue<double>(), Is.GreaterThan(0), k);
            Assert.That(o["lora_bf16"]!["dtype"]!.GetValue<string>(), Is.EqualTo("bf16"));
            Assert.That(o["onnx_over_torch_b1"], Is.Null);
            Assert.That(o["peer_step_ratio"], Is.Null);
            Assert.That(o["lora"]!["mode"]!.GetValue<string>(), Is.EqualTo("lora"));
            var probing = o["inference"]!["probing"]!;
            Assert.That(probing["max_prob_diff"]!.GetValue<double>(), Is.LessThan(1e-5), "naive and shared probing give the same probabilities");
            Assert.That(probing["images"]!.GetValue<int>() * probing["questions_per_image"]!.GetValue<int>(), Is.EqualTo(4 * 48));
            Assert.That(o["full"]!["trainable_params"]!.GetValue<long>(), Is.GreaterThan(o["lora"]!["trainable_params"]!.GetValue<long>()));
            // which shapes auto gave the small-row kernel, and the note that says when the twins ran the same code
            var auto = o["inference"]!["kernel_auto"]!;
            Assert.That(auto["available"]!.GetValue<bool>(), Is.EqualTo(LinearKernels.SmallRowsSupported));
            if (!LinearKernels.SmallRowsSupported) Assert.That(auto["small_row_shapes"]!.AsArray(), Is.Empty, "no AVX-512: never chosen");
            if (LinearKernels.SmallRowsSupported && LinearKernels.EnvironmentChoice == KernelChoice.Auto)
                Assert.That(auto["shapes_asked"]!.GetValue<int>(), Is.GreaterThan(0), "auto measured the shapes it ran");
            bool sameCode = auto["small_row_shapes"]!.AsArray().Count == 0;
            Assert.That(o["notes"]!.AsArray().Any(n => n!.GetValue<string>().Contains("ran the same libtorch code")), Is.EqualTo(sameCode));
            Assert.That(JsonNode.Parse(File.ReadAllText(outFile))!["roof_gflops"], Is.Not.Null);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void Bench_rejects_an_unknown_config()
    {
        var r = CliRunner.Run(Path.GetTempPath(), "bench", "--config", "huge");
        Assert.That(r.ExitCode, Is.EqualTo(2));
        Assert.That(r.Stderr, Does.Contain("--config"));
        Assert.That(r.Stderr, Does.Contain("llava-1.5-7b"), "the error lists the real-size configs");
    }

    [Test]
    public void Real_size_bench_rejects_bad_probe_counts_and_parts_before_writing_anything()
    {
        var dir = TestPaths.NewTempDir("bench-realsize");
        try
        {
            var root = Path.Combine(dir, "random");
            var r = CliRunner.Run(dir, "bench", "--config", "llava-1.5-7b", "--random-checkpoints", root, "--probe-questions", "0");
            Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
            Assert.That(r.Stderr, Does.Contain("--probe-questions"));
            r = CliRunner.Run(dir, "bench", "--config", "llava-1.5-7b", "--random-checkpoints", root, "--worker", "nope");
            Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
            Assert.That(r.Stderr, Does.Contain("nope").And.Contain("lora-bf16"));
            r = CliRunner.Run(dir, "bench", "--config", "llava-1.5-7b", "--random-checkpoints", root, "--worker", "probe");
            Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
            Assert.That(r.Stderr, Does.Contain("no checkpoint"));
            Assert.That(Directory.Exists(root), Is.False, "nothing written");
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class TrainingFlopsTests
{
    [Test]
    public void Matmul_params_count_every_projection_and_lm_head()
    {
        // hidden 8, 2 heads (D 4), 1 kv head, intermediate 16, vocab 10, 2 layers:
        // per layer q 8·8 + k,v 2·8·4 + o 8·8 + mlp 3·8·16 = 64 + 64 + 64 + 384 = 576; ×2 + lm_head 80 = 1232
        var c = RandomCheckpoint.ClipLlama(10, hidden: 8, layers: 2, heads: 2, kvHeads: 1, intermediate: 16).Text;
        Assert.That(TrainingFlops.MatmulParams(c), Is.EqualTo(1232));
        // tokens (6N + 12·L·H·D·T) with B 1, T 3
        Assert.That(TrainingFlops.Model(c, 1, 3), Is.EqualTo(3 * (6.0 * 1232 + 12.0 * 2 * 2 * 4 * 3)));
        Assert.That(TrainingFlops.LoraHonest(c, 1, 3, 100), Is.EqualTo(3 * (4.0 * 1232 + 12.0 * 2 * 2 * 4 * 3 + 600)));
    }

    [Test]
    public void Caption_flops_count_prefill_without_lm_head_then_decode_steps()
    {
        // tiny sizes: N = 4·(128·128 + 2·128·64 + 128·128 + 3·128·384) + 128·200 = 4·(49152 + 147456) + 25600 = 812032
        var bc = BenchConfig.Tiny;
        double n = 812032, head = 128 * 200;
        Assert.That(TrainingFlops.MatmulParams(bc.Llava(bc.Vocab).Text), Is.EqualTo(n));
        // 2 rows, prompt 25: prefill 2·25·(N − head) + 2·head, then 15 decode steps of 2·N, per row
        double expected = 2 * (2 * 25 * (n - head) + 2 * head + 2 * 15 * n);
        Assert.That(InferenceBench.CaptionFlops(bc, 25, 2), Is.EqualTo(expected));
    }
}
