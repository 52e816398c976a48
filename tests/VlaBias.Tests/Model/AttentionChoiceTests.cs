using TorchSharp;
using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Model;

/// <summary>
/// The attention choice: the two-matmul form gives scaled_dot_product_attention's values and gradients (causal,
/// padded, grouped query heads, a decode step over a cache), and which one a reduced-precision call takes is measured
/// once per CPU and shape bucket, cached defensively, never measured in fp32, and forced by VLATUNE_ATTENTION.
/// </summary>
public class AttentionChoiceTests
{
    private string dir = "";
    private string File => Path.Combine(dir, "attention.json");

    [SetUp]
    public void TempDir() => dir = TestPaths.NewTempDir("attn");

    [TearDown]
    public void Remove() => Directory.Delete(dir, true);

    private static bool Quiet() => true;

    /// <summary>q (B, H, T, D), k and v (B, kvH, S, D) drawn from a seeded generator, in f64 so both paths' rounding is far below the tolerance.</summary>
    private static (Tensor q, Tensor k, Tensor v) Draw(long b, long h, long kvh, long t, long s, long d, ScalarType dtype, int seed)
    {
        var g = new Generator((ulong)seed);
        return (randn([b, h, t, d], generator: g).to_type(dtype), randn([b, kvh, s, d], generator: g).to_type(dtype), randn([b, kvh, s, d], generator: g).to_type(dtype));
    }

    public static IEnumerable<TestCaseData> Shapes()
    {
        // name, B, H, kvH, T, S, mask: none (causal) / padded (left padding, causal) / decode (one query over a cache)
        yield return new TestCaseData("causal, no grouping", 2, 4, 4, 6, 6, "none");
        yield return new TestCaseData("causal, 2 query heads per key head", 2, 4, 2, 6, 6, "none");
        yield return new TestCaseData("left-padded rows, 3 query heads per key head", 3, 6, 2, 7, 7, "padded");
        yield return new TestCaseData("a decode step over a 9-key cache", 2, 4, 2, 1, 9, "decode");
        yield return new TestCaseData("a 3-token continuation of a cache", 2, 4, 2, 3, 8, "decode");
    }

    private static Tensor? Mask(string kind, long b, long t, long s)
    {
        if (kind == "none") return null;
        var keyMask = ones(b, s, dtype: ScalarType.Int64);
        for (long row = 1; row < b; row++) keyMask[row, TensorIndex.Slice(0, row)] = tensor(0L); // row r: r padding keys on the left
        return AttentionMasks.Causal(keyMask, s - t, t);
    }

    [TestCaseSource(nameof(Shapes))]
    public void The_matmul_form_gives_the_values_and_gradients_of_scaled_dot_product_attention(string name, int b, int h, int kvh, int t, int s, string mask)
    {
        var m = Mask(mask, b, t, s);
        Tensor[] Run(Func<Tensor, Tensor, Tensor, Tensor?, Tensor> attend)
        {
            var (q, k, v) = Draw(b, h, kvh, t, s, 16, ScalarType.Float64, seed: 3);
            q.requires_grad = true; k.requires_grad = true; v.requires_grad = true;
            var o = attend(q, k, v, m);
            var w = randn(o.shape, dtype: ScalarType.Float64, generator: new Generator(9));
            (o * w).sum().backward();
            return [o.detach(), q.grad!, k.grad!, v.grad!];
        }
        var sdpa = Run(AttentionChoice.Sdpa);
        var matmul = Run(AttentionChoice.MatmulAttention);
        string[] what = ["output", "∂q", "∂k", "∂v"];
        for (int i = 0; i < 4; i++)
        {
            Assert.That(matmul[i].shape, Is.EqualTo(sdpa[i].shape), $"{name}: {what[i]} shape");
            double diff = (matmul[i] - sdpa[i]).abs().max().item<double>();
            Assert.That(diff, Is.LessThan(1e-6), $"{name}: {what[i]} max |Δ| (the fp32 softmax rounds to ~1e-7)");
        }
        Assert.That(sdpa[0].abs().max().item<double>(), Is.GreaterThan(0.1), "a non-trivial output");
    }

    [Test]
    public void In_bf16_the_matmul_form_stays_within_bf16_rounding_of_scaled_dot_product_attention()
    {
        var (q, k, v) = Draw(2, 8, 4, 32, 32, 64, ScalarType.BFloat16, seed: 4);
        var reference = AttentionChoice.Sdpa(q.to_type(ScalarType.Float64), k.to_type(ScalarType.Float64), v.to_type(ScalarType.Float64), null);
        double sdpa = (AttentionChoice.Sdpa(q, k, v, null).to_type(ScalarType.Float64) - reference).abs().max().item<double>();
        double matmul = (AttentionChoice.MatmulAttention(q, k, v, null).to_type(ScalarType.Float64) - reference).abs().max().item<double>();
        Assert.That(matmul, Is.LessThan(0.02), "bf16 keeps 8 bits: outputs of |x| ≲ 2 round by ≲ 0.008, the scores before them too");
        Assert.That(matmul, Is.LessThan(3 * sdpa + 1e-3), $"no worse than the flash kernel's own bf16 error ({sdpa:E2})");
    }

    [Test]
    public void Fp32_never_measures_and_always_takes_scaled_dot_product_attention()
    {
        var choice = new AttentionChoice(File, "cpu A", Quiet);
        var (q, k, _) = Draw(2, 4, 2, 8, 8, 16, ScalarType.Float32, seed: 1);
        Assert.That(choice.UseMatmul(q, k), Is.False);
        Assert.That(choice.Measured, Is.EqualTo(0));
        Assert.That(System.IO.File.Exists(File), Is.False);
    }

    [Test]
    public void A_bf16_bucket_is_measured_once_cached_for_its_cpu_and_read_back_by_the_next_process()
    {
        var first = new AttentionChoice(File, "cpu A", Quiet);
        var (q, k, _) = Draw(2, 4, 2, 8, 8, 16, ScalarType.BFloat16, seed: 1);
        bool chosen = first.UseMatmul(q, k);
        Assert.That(first.Measured, Is.EqualTo(1));
        var (q7, k7, _) = Draw(2, 4, 2, 7, 7, 16, ScalarType.BFloat16, seed: 2);
        Assert.That(first.UseMatmul(q7, k7), Is.EqualTo(chosen), "7 positions share the bucket of 8");
        Assert.That(first.Measured, Is.EqualTo(1));
        using (no_grad()) first.UseMatmul(q, k);
        Assert.That(first.Measured, Is.EqualTo(1), "no gradient is recorded for these inputs either way: the same bucket");
        q.requires_grad = true;
        first.UseMatmul(q, k);
        Assert.That(first.Measured, Is.EqualTo(2), "recording a gradient is a bucket of its own (forward + backward)");

        var entries = JsonNode.Parse(System.IO.File.ReadAllText(File))!["cpus"]!["cpu A"]!.AsObject();
        Assert.That(entries.Select(kv => kv.Key), Is.EquivalentTo(new[]
        {
            "bf16 forward batch 2 heads 4/2 T 8 S 8 D 16 threads " + get_num_threads(),
            "bf16 forward+backward batch 2 heads 4/2 T 8 S 8 D 16 threads " + get_num_threads(),
        }));
        foreach (var (_, e) in entries)
        {
            Assert.That(e!["sdpa_us"]!.GetValue<double>(), Is.GreaterThan(0));
            Assert.That(e["matmul_us"]!.GetValue<double>(), Is.GreaterThan(0));
        }

        var again = new AttentionChoice(File, "cpu A", Quiet);
        q.requires_grad = false;
        Assert.That(again.UseMatmul(q, k), Is.EqualTo(chosen));
        Assert.That(again.Measured, Is.EqualTo(0), "read from the cache");
        var other = new AttentionChoice(File, "cpu B", Quiet);
        other.UseMatmul(q, k);
        Assert.That(other.Measured, Is.EqualTo(1), "another CPU model measures for itself");
    }

    [Test]
    public void The_choice_follows_the_measured_times_with_a_tenth_of_margin()
    {
        Assert.That(new AttentionChoice.Entry(SdpaUs: 100, MatmulUs: 80).MatmulFaster, Is.True);
        Assert.That(new AttentionChoice.Entry(SdpaUs: 100, MatmulUs: 95).MatmulFaster, Is.False, "within noise: stay on libtorch's kernel");
        Assert.That(new AttentionChoice.Entry(SdpaUs: 100, MatmulUs: 150).MatmulFaster, Is.False);
        string cpu = "cpu A", key = AttentionChoice.Key(ScalarType.BFloat16, false, 2, 4, 2, 8, 8, 16, get_num_threads());
        foreach (var (sdpaUs, matmulUs, expected) in new[] { (1000.0, 10.0, true), (10.0, 1000.0, false) })
        {
            var entry = new JsonObject { ["sdpa_us"] = sdpaUs, ["matmul_us"] = matmulUs };
            var root = new JsonObject { ["version"] = 1, ["cpus"] = new JsonObject { [cpu] = new JsonObject { [key] = entry } } };
            System.IO.File.WriteAllText(File, root.ToJsonString());
            var choice = new AttentionChoice(File, cpu, Quiet);
            var (q, k, _) = Draw(2, 4, 2, 8, 8, 16, ScalarType.BFloat16, seed: 1);
            Assert.That(choice.UseMatmul(q, k), Is.EqualTo(expected), $"sdpa {sdpaUs} µs, matmul {matmulUs} µs");
            Assert.That(choice.Measured, Is.EqualTo(0));
            Assert.That(choice.Asked()[key], Is.EqualTo(expected));
        }
    }

    [Test]
    public void A_measurement_taken_while_other_processes_run_is_used_but_not_written()
    {
        var loaded = new AttentionChoice(File, "cpu A", () => false);
        var (q, k, _) = Draw(2, 4, 2, 8, 8, 16, ScalarType.BFloat16, seed: 1);
        loaded.UseMatmul(q, k);
        loaded.UseMatmul(q, k);
        Assert.That(loaded.Measured, Is.EqualTo(1), "measured once per process all the same");
        Assert.That(System.IO.File.Exists(File), Is.False, "nothing cached from a loaded machine");
    }

    [TestCase("")]
    [TestCase("{")]
    [TestCase("null")]
    [TestCase("[1, 2]")]
    [TestCase("{\"version\": 2, \"cpus\": {}}")]
    [TestCase("{\"version\": 1, \"cpus\": []}")]
    [TestCase("{\"version\": 1, \"cpus\": {\"cpu A\": 7}}")]
    [TestCase("{\"version\": 1, \"cpus\": {\"cpu A\": {\"bf16 forward batch 2 heads 4/2 T 8 S 8 D 16 threads 1\": {\"sdpa_us\": \"slow\", \"matmul_us\": 1}}}}")]
    [TestCase("{\"version\": 1, \"cpus\": {\"cpu A\": {\"bf16 forward batch 2 heads 4/2 T 8 S 8 D 16 threads 1\": {\"sdpa_us\": 0, \"matmul_us\": -3}}}}")]
    [TestCase("\u0000\u00ff binary")]
    public void A_corrupt_cache_is_ignored_and_rewritten(string text)
    {
        System.IO.File.WriteAllText(File, text);
        var choice = new AttentionChoice(File, "cpu A", Quiet);
        var (q, k, _) = Draw(2, 4, 2, 8, 8, 16, ScalarType.BFloat16, seed: 1);
        choice.UseMatmul(q, k);
        Assert.That(choice.Measured, Is.EqualTo(1), "nothing usable was read");
        var root = JsonNode.Parse(System.IO.File.ReadAllText(File))!;
        Assert.That(root["version"]!.GetValue<int>(), Is.EqualTo(1));
        Assert.That(root["cpus"]!["cpu A"]!.AsObject().Count, Is.EqualTo(1));
    }

    [Test]
    public void VLATUNE_ATTENTION_forces_one_path_in_every_dtype_and_rejects_other_values()
    {
        Assert.That(AttentionChoice.ParseMode(null), Is.EqualTo(AttentionChoice.Mode.Auto));
        Assert.That(AttentionChoice.ParseMode(""), Is.EqualTo(AttentionChoice.Mode.Auto));
        Assert.That(AttentionChoice.ParseMode("auto"), Is.EqualTo(AttentionChoice.Mode.Auto));
        var e = Assert.Throws<BadInputException>(() => AttentionChoice.ParseMode("flash"))!;
        Assert.That(e.Message, Does.Contain("VLATUNE_ATTENTION").And.Contain("'flash'"));
        var (q, k, _) = Draw(2, 4, 2, 8, 8, 16, ScalarType.Float32, seed: 1);
        var matmul = new AttentionChoice(File, "cpu A", Quiet, AttentionChoice.ParseMode("matmul"));
        var sdpa = new AttentionChoice(File, "cpu A", Quiet, AttentionChoice.ParseMode("sdpa"));
        Assert.That(matmul.UseMatmul(q, k), Is.True);
        Assert.That(sdpa.UseMatmul(q.to_type(ScalarType.BFloat16), k.to_type(ScalarType.BFloat16)), Is.False);
        Assert.That(matmul.Measured + sdpa.Measured, Is.EqualTo(0));
    }

    [Test]
    public void Scores_larger_than_the_cap_go_to_scaled_dot_product_attention_unmeasured()
    {
        var choice = new AttentionChoice(File, "cpu A", Quiet);
        long t = 1024, h = (AttentionChoice.MaxScoreBytes / (4 * t * t)) + 1; // one head over the cap at batch 1
        var q = empty([1, h, t, 8], dtype: ScalarType.BFloat16);
        var k = empty([1, h, t, 8], dtype: ScalarType.BFloat16);
        Assert.That(choice.UseMatmul(q, k), Is.False);
        Assert.That(choice.Measured, Is.EqualTo(0));
    }
}
