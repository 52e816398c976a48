using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Bench;
using VlaBias.Model;
using VlaBias.Tests.Training;
using static TorchSharp.torch;

namespace VlaBias.Tests.Bench;

/// <summary>The real-size bench's code path on shrunken shapes of both architectures (SigLIP + Qwen2, CLIP + Llama).</summary>
public class RealSizeBenchTests
{
    private string dir = null!;

    [SetUp] public void SetUp() => dir = TestPaths.NewTempDir("realsize");
    [TearDown] public void TearDown() { try { Directory.Delete(dir, true); } catch (IOException) { } }

    private static RealSizeConfig Shrunk(RealSizeConfig rc) => rc with
    {
        Name = rc.Name + "-shrunk",
        Llava = rc.Llava with
        {
            Vision = rc.Llava.Vision with { HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, ImageSize = 28, PatchSize = 7 },
            Text = rc.Llava.Text with { HiddenSize = 32, IntermediateSize = 40, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 4, HeadDim = 8, VocabSize = 300 },
        },
        Preprocessor = rc.Preprocessor with { ResizeHeight = rc.Preprocessor.ResizeHeight is null ? null : 28, ResizeWidth = rc.Preprocessor.ResizeWidth is null ? null : 28,
            ShortestEdge = rc.Preprocessor.ShortestEdge is null ? null : 28, CropHeight = 28, CropWidth = 28 },
        ProbeImages = 2, ProbeQuestions = 3, CaptionTokens = 3,
    };

    // the SigLIP variant keeps a remainder the patch convolution drops (30 px, patch 7: 4 × 4 patches), as 384 / 14 does
    private static IEnumerable<RealSizeConfig> Configs() =>
    [
        Shrunk(RealSizeConfig.InterleaveQwen05B) is var q ? q with { Llava = q.Llava with { Vision = q.Llava.Vision with { ImageSize = 30 } },
            Preprocessor = q.Preprocessor with { ResizeHeight = 30, ResizeWidth = 30, CropHeight = 30, CropWidth = 30 } } : null!,
        Shrunk(RealSizeConfig.Llava15_7B),
    ];

    [Test]
    public void Real_size_shapes_are_those_of_the_published_configs()
    {
        var q = RealSizeConfig.InterleaveQwen05B.Llava;
        Assert.That(q.ImageSeqLength, Is.EqualTo(729));
        Assert.That((q.Text.ModelType, q.Text.HiddenSize, q.Text.NumHiddenLayers, q.Text.IntermediateSize, q.Text.VocabSize, q.Text.TieWordEmbeddings), Is.EqualTo(("qwen2", 1024, 24, 2816, 152000, true)));
        Assert.That((q.Vision.ModelType, q.Vision.HiddenSize, q.Vision.NumHiddenLayers, q.Vision.IntermediateSize), Is.EqualTo(("siglip_vision_model", 1152, 26, 4304)));
        var l = RealSizeConfig.Llava15_7B.Llava;
        Assert.That(l.ImageSeqLength, Is.EqualTo(576));
        Assert.That((l.Text.HiddenSize, l.Text.NumHiddenLayers, l.Text.IntermediateSize, l.Text.VocabSize, l.Text.TieWordEmbeddings), Is.EqualTo((4096, 32, 11008, 32064, false)));
        // published sizes: 1.73 GB of bf16 safetensors for the 0.5b; ~7.06 B parameters for llava-1.5-7b
        Assert.That(RealSizeConfig.InterleaveQwen05B.ParameterCount() * 2 / 1e9, Is.EqualTo(1.73).Within(0.02));
        Assert.That(RealSizeConfig.Llava15_7B.ParameterCount() / 1e9, Is.EqualTo(7.06).Within(0.02));
    }

    [TestCaseSource(nameof(Configs))]
    public void Random_checkpoint_is_written_in_bf16_once_reused_and_rewritten_when_its_config_changes(RealSizeConfig rc)
    {
        var (folder, written) = rc.Ensure(dir);
        Assert.That(written, Is.True);
        var model = LlavaModel.FromPretrained(folder, ScalarType.BFloat16);
        // parameters() lists a tied lm_head and embed_tokens, one tensor, under both names; ParameterCount counts it once
        long tiedHead = rc.Llava.Text.TieWordEmbeddings ? (long)rc.Llava.Text.VocabSize * rc.Llava.Text.HiddenSize : 0;
        Assert.That(model.parameters().Sum(p => p.numel()) - tiedHead, Is.EqualTo(rc.ParameterCount()), "ParameterCount matches the model");
        Assert.That(LlavaConfig.Load(Path.Combine(folder, "config.json")).TorchDtype, Is.EqualTo("bfloat16"));
        Assert.That(Directory.GetFiles(dir).Concat(Directory.GetDirectories(dir)).Select(Path.GetFileName), Is.EqualTo(new[] { rc.Name }), "no temporary folder left");
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors"));
        Assert.That(rc.Ensure(dir).Written, Is.False, "same config: reused");
        Assert.That(File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors")), Is.EqualTo(stamp));
        var wider = rc with { Llava = rc.Llava with { Text = rc.Llava.Text with { IntermediateSize = 44 } } };
        Assert.That(wider.Ensure(dir).Written, Is.True, "changed shape: rewritten");
        Assert.That(LlavaConfig.Load(Path.Combine(folder, "config.json")).Text.IntermediateSize, Is.EqualTo(44));
    }

    [TestCaseSource(nameof(Configs))]
    public void Probe_caption_and_lora_parts_run_through_the_real_loading_path(RealSizeConfig rc)
    {
        var (folder, _) = rc.Ensure(dir);
        var probe = RealSizeBench.Probe(rc, folder, 0, 1, 0);
        Assert.That(probe["prompts"]!.GetValue<int>(), Is.EqualTo(6));
        Assert.That(probe["prompt_tokens"]!.GetValue<double>(), Is.GreaterThan(rc.Llava.ImageSeqLength));
        Assert.That(probe["max_p_yes_diff_bf16"]!.GetValue<double>(), Is.LessThan(0.05), "shared prefix vs full prompts, bf16");
        Assert.That(rc.Llava.ImageSeqLength, Is.EqualTo(16));
        Assert.That(probe["prompts_per_s"]!.GetValue<double>(), Is.GreaterThan(0));
        foreach (var p in probe["p_yes_first"]!.AsArray()) Assert.That(p!.GetValue<double>(), Is.InRange(0.0, 1.0));
        var caption = RealSizeBench.Caption(rc, folder, 0, 1, 0);
        Assert.That(caption["images_per_s_b8"]!.GetValue<double>(), Is.GreaterThan(0));
        string recipe = Path.Combine(TinyWorld.RepoRoot(), "recipes/default.yaml");
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float32 })
        {
            var lora = RealSizeBench.LoraStep(rc, folder, dtype, 0, 2, 0, recipe);
            Assert.That(lora["prompts"]!.GetValue<int>(), Is.EqualTo(8));
            Assert.That(lora["trainable_params"]!.GetValue<long>(), Is.GreaterThan(0));
            Assert.That(double.IsFinite(lora["final_loss"]!.GetValue<double>()), Is.True);
            Assert.That(lora["step_ms"]!["samples"]!.AsArray().Count, Is.EqualTo(2));
        }
    }

    // the parts' figures as the workers print them (only the keys Measure reads)
    private static JsonObject FakePart(string part) => part switch
    {
        RealSizeBench.WritePart => new JsonObject { ["written"] = false, ["seconds"] = 0.1 },
        RealSizeBench.ProbePart or RealSizeBench.ProbeF32Part => new JsonObject
            { ["prompts_per_s"] = 2.0, ["prompts_per_s_shared"] = 20.0, ["prompt_tokens"] = 40, ["shared_batches"] = 1, ["max_p_yes_diff"] = 1e-6 },
        RealSizeBench.CaptionPart => new JsonObject { ["images_per_s_b1"] = 1.0, ["images_per_s_b8"] = 4.0 },
        _ => new JsonObject { ["step_ms"] = new JsonObject { ["median"] = 1000.0 } },
    };

    [Test]
    public void The_report_says_when_bf16_runs_far_under_fp32_on_this_cpu_before_the_parts_start()
    {
        var rc = Configs().First();
        var asked = new List<string>();
        var json = RealSizeBench.Measure(rc, 1, 0, 1, 0, part => { asked.Add(part); return FakePart(part); });
        Assert.That(asked[0], Is.EqualTo(RealSizeBench.WritePart));
        double f32 = json["machine"]!["matmul_512_gflops_f32"]!.GetValue<double>(), bf16 = json["machine"]!["matmul_512_gflops_bf16"]!.GetValue<double>();
        Assert.That(f32, Is.GreaterThan(0));
        Assert.That(bf16, Is.GreaterThan(0));
        bool said = json["notes"]!.AsArray().Any(n => n!.GetValue<string>().Contains("no native bf16 matmul"));
        // on a CPU without avx512_bf16/AMX (e.g. AMD EPYC family 25 model 1) bf16 runs at about 1% of fp32: the note must be there
        Assert.That(said, Is.EqualTo(bf16 < f32 / 4), $"bf16 {bf16} against fp32 {f32} GFLOP/s");
        Assert.That(json["lora_step_ms_bf16_realsize"]!.GetValue<double>(), Is.EqualTo(1000.0));
    }
}
