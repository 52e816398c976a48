using TorchSharp;
using NUnit.Framework;
using VlaBias.Adapters;
using VlaBias.Bench;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Tests.Model;

/// <summary>--dtype auto (size and CPU flags), and what bf16 costs: p_yes and logits against f32 on the bench sizes, LoRA kept in f32 on a bf16 base.</summary>
public class ComputeDTypeTests
{
    private string dir = "";

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("dtype");
        // the bench sizes (LM hidden 512 × 8 layers) with a vocabulary that has "yes" and "no"
        RandomCheckpoint.Write(dir, TestPaths.Words, seed: 5, std: 0.05, config: v => BenchConfig.Bench.Llava(v));
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private static CpuInfo Cpu(params string[] flags) => new("test cpu", "6", "207", flags.ToHashSet());

    private static double NotAsked() => throw new AssertionException("the bf16 speed was measured although the rule did not need it");

    [Test]
    public void Auto_picks_bf16_only_above_100M_parameters_on_a_cpu_with_bf16_matmuls_that_measured_faster()
    {
        const long gb = 1L << 30;
        Assert.That(ComputeDType.Resolve("auto", () => 7_000_000_000, Cpu("avx512f", "avx512_bf16"), () => 2.7, 20 * gb).DType, Is.EqualTo(ScalarType.BFloat16));
        Assert.That(ComputeDType.Resolve("auto", () => 500_000_000, Cpu("amx_bf16", "amx_tile"), () => 4.0, 20 * gb).DType, Is.EqualTo(ScalarType.BFloat16));
        var noFlags = ComputeDType.Resolve("auto", () => 7_000_000_000, Cpu("avx512f"), NotAsked, 20 * gb);
        Assert.That(noFlags.DType, Is.EqualTo(ScalarType.Float32));
        Assert.That(noFlags.Reason, Does.Contain("neither avx512_bf16 nor amx_bf16"));
        var small = ComputeDType.Resolve("auto", () => 1_100_000, Cpu("avx512_bf16"), NotAsked, 20 * gb);
        Assert.That(small.DType, Is.EqualTo(ScalarType.Float32), "tiny-base stays f32");
        Assert.That(small.Reason, Does.Contain("1.1 M"));
        Assert.That(ComputeDType.Resolve("bf16", () => throw new AssertionException("an explicit dtype reads no checkpoint"), Cpu(), NotAsked, null).DType, Is.EqualTo(ScalarType.BFloat16));
        Assert.Throws<BadInputException>(() => ComputeDType.Resolve("fp8", () => 1, Cpu(), NotAsked, null));
    }

    [Test]
    public void Auto_keeps_f32_where_bf16_measured_slower_unless_f32_weights_would_not_fit()
    {
        const long gb = 1L << 30;
        var slow = ComputeDType.Resolve("auto", () => 860_000_000, Cpu("avx512_bf16"), () => 0.8, 20 * gb);
        Assert.That(slow.DType, Is.EqualTo(ScalarType.Float32));
        Assert.That(slow.Reason, Does.Contain("0.80×"));
        // 7 B parameters are 28 GB in f32: more than half of 20 GB, so bf16 although it is not faster
        var big = ComputeDType.Resolve("auto", () => 7_000_000_000, Cpu("avx512_bf16"), () => 0.8, 20 * gb);
        Assert.That(big.DType, Is.EqualTo(ScalarType.BFloat16));
        Assert.That(big.Reason, Does.Contain("over half"));
        Assert.That(ComputeDType.Resolve("auto", () => 860_000_000, Cpu("avx512_bf16"), () => 1.09, null).DType, Is.EqualTo(ScalarType.Float32), "below 1.1x");
    }

    [Test]
    public void The_bf16_calibration_is_measured_once_per_cpu_and_shape_and_not_cached_under_load()
    {
        string file = Path.Combine(dir, "dtype.json");
        var first = new DTypeCalibration(file, "cpu A", () => true);
        double s = first.Speedup(64, 32);
        Assert.That(s, Is.GreaterThan(0).And.LessThan(1000));
        Assert.That(first.Measured, Is.EqualTo(1));
        var again = new DTypeCalibration(file, "cpu A", () => true);
        Assert.That(again.Speedup(64, 32), Is.EqualTo(s).Within(s * 0.01), "read back (rounded to 0.001 µs)");
        Assert.That(again.Measured, Is.EqualTo(0));
        var other = new DTypeCalibration(file, "cpu B", () => false);
        other.Speedup(64, 32);
        Assert.That(other.Measured, Is.EqualTo(1), "another CPU measures itself");
        Assert.That(File.ReadAllText(file), Does.Not.Contain("cpu B"), "a measurement under load is not cached");
        File.WriteAllText(file, "{not json");
        var broken = new DTypeCalibration(file, "cpu A", () => true);
        Assert.That(broken.Speedup(64, 32), Is.GreaterThan(0));
        Assert.That(broken.Measured, Is.EqualTo(1), "an unreadable cache is measured again and rewritten");
        Assert.That(File.ReadAllText(file), Does.Contain("cpu A"));
    }

    [Test]
    public void Peak_memory_lines_parse_with_and_without_padding()
    {
        // the kernel pads to 8 digits: a 7B process's 14.5 GB has no space between the tab and the number
        Assert.That(ComputeDType.StatusKb("VmHWM:\t14563284 kB", "VmHWM"), Is.EqualTo(14563284));
        Assert.That(ComputeDType.StatusKb("VmHWM:\t    2196 kB", "VmHWM"), Is.EqualTo(2196));
        Assert.That(ComputeDType.StatusKb("VmRSS:\t    2196 kB", "VmHWM"), Is.Null);
        Assert.That(ComputeDType.StatusKb("VmHWM:\t kB", "VmHWM"), Is.Null);
        Assert.That(ComputeDType.PeakRssBytes(), Is.GreaterThan(1L << 20), "this test process");
    }

    [Test]
    public void Cpu_flags_and_model_are_read_from_cpuinfo()
    {
        string file = Path.Combine(dir, "cpuinfo");
        File.WriteAllText(file, "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\n" +
                                "flags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n\nprocessor\t: 1\nmodel name\t: other\n");
        var cpu = CpuInfo.Read(file);
        Assert.That(cpu.ModelName, Is.EqualTo("Intel(R) Xeon(R) Processor"));
        Assert.That(cpu.Key, Does.StartWith("Intel(R) Xeon(R) Processor | family 6 model 207"));
        Assert.That(cpu.HasBf16, Is.True);
        Assert.That(CpuInfo.Read(Path.Combine(dir, "missing")).HasBf16, Is.False);
    }

    [Test]
    public void Parameter_count_is_read_from_the_checkpoint_headers()
    {
        var model = LlavaModel.FromPretrained(dir);
        long expected = model.parameters().Sum(p => p.numel());
        Assert.That(ComputeDType.ParameterCount(dir), Is.EqualTo(expected));
        Assert.That(ComputeDType.Resolve("auto", dir).DType, Is.EqualTo(ScalarType.Float32), $"{expected} parameters is below 100 M");
    }

    [Test]
    public void Bf16_p_yes_and_logits_stay_close_to_f32()
    {
        string[] questions = ["is the person a chef ?", "is the woman holding a wrench ?", "is the man in the kitchen ?", "is the person friendly ?"];
        (Tensor logits, Tensor pYes) Run(ScalarType dtype)
        {
            var vla = Vla.Load(dir, dtype: dtype);
            int yes = vla.Tokenizer.Encode("yes").Single(), no = vla.Tokenizer.Encode("no").Single();
            using var _ = no_grad();
            var g = new Generator(9);
            var pixels = questions.Select(_ => randn([3, 48, 48], generator: g)).ToList();
            using var batch = vla.Batch(questions.Select(q => vla.PromptIds(q)).ToList(), pixels);
            var logits = vla.Model.call(batch.Input(LogitsMode.Last)).LastLogits.to_type(ScalarType.Float32);
            return (logits, (logits.select(1, yes) - logits.select(1, no)).sigmoid());
        }
        var (l32, p32) = Run(ScalarType.Float32);
        var (l16, p16) = Run(ScalarType.BFloat16);
        double logitDiff = (l16 - l32).abs().max().ToDouble(), logitScale = l32.std().ToDouble();
        double pDiff = (p16 - p32).abs().max().ToDouble();
        TestContext.Out.WriteLine($"bench sizes, {questions.Length} prompts: max |Δlogit| {logitDiff:F4} (logit std {logitScale:F3}), max |Δp_yes| {pDiff:F5}; " +
                                  $"p_yes f32 [{string.Join(", ", p32.data<float>().Select(v => v.ToString("F4")))}] bf16 [{string.Join(", ", p16.data<float>().Select(v => v.ToString("F4")))}]");
        Assert.That(logitDiff, Is.GreaterThan(0), "bf16 really ran in bf16");
        Assert.That(logitDiff, Is.LessThan(0.1 * logitScale + 0.05), "bf16 logits within 10% of the logit spread");
        Assert.That(pDiff, Is.LessThan(0.02), "p_yes within 0.02");
    }

    [Test]
    public void Lora_on_a_bf16_base_keeps_adapter_gradients_and_loss_in_f32_and_trains()
    {
        var vla = Vla.Load(dir, dtype: ScalarType.BFloat16);
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(R: 4, Alpha: 8), seed: 1);
        Assert.That(adapter.Parameters().All(p => p.dtype == ScalarType.Float32), Is.True, "lora_A / lora_B in f32");
        Assert.That(vla.Model.DType, Is.EqualTo(ScalarType.BFloat16));
        var opt = optim.AdamW(adapter.Parameters(), lr: 1e-2);
        var g = new Generator(2);
        var pixels = new[] { randn([3, 48, 48], generator: g) };
        using var batch = vla.TeacherForced([(vla.PromptIds("describe the image."), vla.Tokenizer.Encode("a man in the kitchen ."))], stack(pixels));
        double first = 0, last = 0;
        for (int step = 0; step < 5; step++)
        {
            using var scope = NewDisposeScope();
            var loss = vla.Model.call(batch.Input()).Loss!;
            Assert.That(loss.dtype, Is.EqualTo(ScalarType.Float32), "the loss is computed in f32");
            loss.backward();
            Assert.That(adapter.Parameters().All(p => p.grad is not null && p.grad.dtype == ScalarType.Float32), Is.True, "f32 gradients");
            opt.step();
            opt.zero_grad();
            if (step == 0) first = loss.ToDouble();
            last = loss.ToDouble();
        }
        Assert.That(last, Is.LessThan(first), "five AdamW steps on one example lower its loss");
    }
}
