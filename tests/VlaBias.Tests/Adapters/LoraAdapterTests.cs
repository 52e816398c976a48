using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using VlaBias.Adapters;
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Tests.Adapters;

public class LoraAdapterTests
{
    private string dir = "";

    [OneTimeSetUp]
    public void Build()
    {
        dir = TestPaths.NewTempDir("lora");
        RandomCheckpoint.Write(dir, TestPaths.Words, seed: 11, std: 0.3);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(dir, true);

    private string Scratch(string name) => Path.Combine(dir, name + "-" + Guid.NewGuid().ToString("N")[..8]);

    private Vla LoadBase() => Vla.Load(dir);

    // In fp32 the forward pass itself reassociates sums differently once W and B·A are one matrix, which moves logits
    // of magnitude ~10 by ~2e-5; in fp64 that noise is far below the 1e-5 the merge is held to.
    private Vla LoadBase64() => Vla.Load(dir, dtype: ScalarType.Float64);

    private static Tensor Logits(Vla vla)
    {
        using var _ = no_grad();
        manual_seed(5);
        using var batch = vla.Batch([vla.PromptIds("describe the image."), vla.PromptIds("is the person friendly ?")], [randn(3, 32, 32), randn(3, 32, 32)]);
        return vla.Model.call(batch.Input()).Logits!;
    }

    private static float MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().ToSingle();

    /// <summary>Gives every lora_B random values so the adapter changes the outputs.</summary>
    private static void Randomize(LoraAdapter adapter, long seed = 3)
    {
        using var _ = no_grad();
        var gen = new Generator((ulong)seed);
        foreach (var m in adapter.Modules.Values) m.LoraB.weight.normal_(0, 0.2, generator: gen);
    }

    private static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    [Test]
    public void Fresh_adapter_leaves_outputs_unchanged()
    {
        var vla = LoadBase();
        var before = Logits(vla);
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(), seed: 1);
        Assert.That(adapter.Modules, Has.Count.EqualTo(2 * 7));
        Assert.That(MaxDiff(before, Logits(vla)), Is.EqualTo(0f));
    }

    [Test]
    public void Default_targets_are_every_attention_and_mlp_projection_of_the_language_model()
    {
        var vla = LoadBase();
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(R: 4), seed: 1);
        Assert.That(adapter.Modules.Keys, Does.Contain("language_model.model.layers.0.self_attn.q_proj"));
        Assert.That(adapter.Modules.Keys, Does.Contain("language_model.model.layers.1.mlp.down_proj"));
        Assert.That(adapter.Modules.Keys.Where(k => !k.StartsWith("language_model.model.layers.")), Is.Empty);
        // hidden 64, intermediate 128, kv heads 2 × head dim 16 = 32: per layer r·(in+out) summed over q,k,v,o,gate,up,down
        long perLayer = 4 * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64) + (64 + 128) + (64 + 128) + (128 + 64));
        Assert.That(adapter.ParameterCount, Is.EqualTo(2 * perLayer));
        Assert.That(adapter.Parameters().Count(), Is.EqualTo(2 * adapter.Modules.Count));
    }

    [Test]
    public void Vision_and_projector_modules_are_wrapped_only_when_opted_in()
    {
        var vla = LoadBase();
        Assert.Throws<BadInputException>(() => LoraAdapter.Apply(vla.Model, new LoraConfig(TargetModules: ["fc1", "linear_1"]), seed: 1));
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(TargetModules: ["q_proj", "fc1", "linear_1"], IncludeVision: true, IncludeProjector: true), seed: 1);
        Assert.That(adapter.Modules.Keys, Does.Contain("vision_tower.vision_model.encoder.layers.0.mlp.fc1"));
        Assert.That(adapter.Modules.Keys, Does.Contain("vision_tower.vision_model.encoder.layers.1.self_attn.q_proj"));
        Assert.That(adapter.Modules.Keys, Does.Contain("multi_modal_projector.linear_1"));
        Assert.That(adapter.Modules.Keys, Does.Contain("language_model.model.layers.0.self_attn.q_proj"));
        Assert.That(adapter.Modules, Has.Count.EqualTo(2 + 2 + 1 + 2));
    }

    [Test]
    public void Config_that_matches_no_module_is_rejected()
    {
        var vla = LoadBase();
        var e = Assert.Throws<BadInputException>(() => LoraAdapter.Apply(vla.Model, new LoraConfig(TargetModules: ["query_key_value"]), seed: 1));
        Assert.That(e!.Message, Does.Contain("query_key_value"));
        Assert.That(vla.Model.named_modules().Any(m => m.module is LoraLinear), Is.False);
    }

    [Test]
    public void Lora_A_is_kaiming_uniform_and_B_is_zero_and_the_seed_fixes_them()
    {
        var a = LoraAdapter.Apply(LoadBase().Model, new LoraConfig(), seed: 9);
        var b = LoraAdapter.Apply(LoadBase().Model, new LoraConfig(), seed: 9);
        var c = LoraAdapter.Apply(LoadBase().Model, new LoraConfig(), seed: 10);
        const string down = "language_model.model.layers.0.mlp.down_proj"; // in = 128
        var A = a.Modules[down].LoraA.weight;
        Assert.That(A.shape, Is.EqualTo(new long[] { 8, 128 }));
        Assert.That(A.abs().max().ToDouble(), Is.LessThanOrEqualTo(1 / Math.Sqrt(128)));
        Assert.That(A.abs().max().ToDouble(), Is.GreaterThan(0.8 / Math.Sqrt(128)));
        Assert.That(a.Modules[down].LoraB.weight.abs().max().ToDouble(), Is.EqualTo(0));
        Assert.That(MaxDiff(A, b.Modules[down].LoraA.weight), Is.EqualTo(0f));
        Assert.That(MaxDiff(A, c.Modules[down].LoraA.weight), Is.GreaterThan(0f));
    }

    [Test]
    public void Merged_weights_give_the_same_logits_as_base_plus_adapter()
    {
        var vla = LoadBase64();
        var baseLogits = Logits(vla);
        var keys = vla.Model.state_dict().Keys.ToList();
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(R: 4, Alpha: 8), seed: 2);
        Randomize(adapter);
        var withAdapter = Logits(vla);
        Assert.That(MaxDiff(withAdapter, baseLogits), Is.GreaterThan(1e-3f), "the randomized adapter should change the outputs");

        adapter.MergeInto();
        Assert.That(MaxDiff(Logits(vla), withAdapter), Is.LessThan(1e-5f));
        Assert.That(vla.Model.named_modules().Any(m => m.module is LoraLinear), Is.False);
        Assert.That(vla.Model.state_dict().Keys.ToList(), Is.EqualTo(keys), "merged model has the original names in the original order");
        Assert.That(vla.Model.parameters().All(p => p.requires_grad), Is.True);
    }

    [Test]
    public void Merged_model_saves_as_a_plain_checkpoint_with_the_adapter_folded_in()
    {
        var vla = LoadBase64();
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(), seed: 2);
        Randomize(adapter);
        var withAdapter = Logits(vla);
        adapter.MergeInto();
        var merged = Scratch("merged");
        vla.Model.SavePretrained(merged);
        var reloaded = LlavaModel.FromPretrained(merged, ScalarType.Float64);
        Assert.That(MaxDiff(Logits(new Vla(reloaded, vla.Tokenizer, vla.Images)), withAdapter), Is.LessThan(1e-5f));
    }

    [Test]
    public void Merge_of_a_diverged_adapter_fails_naming_the_module_and_changes_nothing()
    {
        var vla = LoadBase();
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(), seed: 2);
        Randomize(adapter);
        const string bad = "language_model.model.layers.1.mlp.up_proj";
        using (no_grad()) adapter.Modules[bad].LoraB.weight[0, 0] = float.NaN;
        var firstBase = adapter.Modules["language_model.model.layers.0.self_attn.q_proj"].BaseLayer.weight.clone();
        var e = Assert.Throws<InvalidOperationException>(() => adapter.MergeInto());
        Assert.That(e!.Message, Does.Contain(bad));
        Assert.That(MaxDiff(adapter.Modules["language_model.model.layers.0.self_attn.q_proj"].BaseLayer.weight, firstBase), Is.EqualTo(0f));
        Assert.That(vla.Model.named_modules().Count(m => m.module is LoraLinear), Is.EqualTo(14), "the adapter stays attached");
    }

    [Test]
    public void Remove_restores_the_original_modules_unmerged()
    {
        var vla = LoadBase();
        var baseLogits = Logits(vla);
        var keys = vla.Model.state_dict().Keys.ToList();
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(), seed: 2);
        Randomize(adapter);
        Assert.That(vla.Model.state_dict().Keys, Does.Contain("language_model.model.layers.0.self_attn.q_proj.base_layer.weight"));
        Assert.That(vla.Model.state_dict().Keys, Does.Contain("language_model.model.layers.0.self_attn.q_proj.lora_A.weight"));
        adapter.Remove();
        Assert.That(MaxDiff(Logits(vla), baseLogits), Is.EqualTo(0f));
        Assert.That(vla.Model.state_dict().Keys.ToList(), Is.EqualTo(keys));
        Assert.Throws<InvalidOperationException>(() => adapter.Remove());
    }

    [Test]
    public void Only_adapter_parameters_receive_gradients()
    {
        var vla = LoadBase();
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(), seed: 4);
        Randomize(adapter);
        manual_seed(5);
        using var batch = vla.Batch([vla.PromptIds("describe the image.")], [randn(3, 32, 32)]);
        var logits = vla.Model.call(batch.Input()).Logits!;
        logits.log_softmax(-1).select(-1, 3).mean().neg().backward();

        var trainable = adapter.Parameters().Select(p => p.Handle).ToHashSet();
        int lora = 0, frozen = 0;
        foreach (var (name, p) in vla.Model.named_parameters())
        {
            if (trainable.Contains(p.Handle))
            {
                lora++;
                Assert.That(name, Does.EndWith("lora_A.weight").Or.EndWith("lora_B.weight"));
                Assert.That(p.grad, Is.Not.Null, name);
                Assert.That(p.grad!.abs().sum().ToDouble(), Is.GreaterThan(0), name);
            }
            else
            {
                frozen++;
                Assert.That(p.requires_grad, Is.False, name);
                Assert.That(p.grad, Is.Null, name);
            }
        }
        Assert.That(lora, Is.EqualTo(28));
        Assert.That(frozen, Is.GreaterThan(30));
    }

    [Test]
    public void Base_checkpoint_file_is_unchanged_by_training_steps()
    {
        string weights = Path.Combine(dir, "model.safetensors");
        string hash = Sha256(weights);
        var vla = LoadBase();
        var snapshot = vla.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(), seed: 4);
        var opt = optim.AdamW(adapter.Parameters(), lr: 1e-2, weight_decay: 0.01);
        manual_seed(5);
        using var batch = vla.Batch([vla.PromptIds("describe the image.")], [randn(3, 32, 32)]);
        for (int step = 0; step < 3; step++)
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var loss = vla.Model.call(batch.Input()).Logits!.log_softmax(-1).select(-1, 3).mean().neg();
            loss.backward();
            opt.step();
        }
        Assert.That(adapter.Modules.Values.Max(m => m.LoraB.weight.abs().max().ToDouble()), Is.GreaterThan(0), "training moved the adapter");
        adapter.Save(Scratch("trained"));
        Assert.That(Sha256(weights), Is.EqualTo(hash));
        adapter.Remove();
        foreach (var (name, t) in vla.Model.state_dict())
            Assert.That(MaxDiff(t, snapshot[name]), Is.EqualTo(0f), name);
    }

    [Test]
    public void Saved_and_reloaded_adapter_gives_identical_outputs()
    {
        var vla = LoadBase();
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(R: 4, Alpha: 12, Dropout: 0.1, UseRsLora: true, BaseModelNameOrPath: dir), seed: 6);
        Randomize(adapter);
        var expected = Logits(vla);
        var saved = Scratch("adapter");
        adapter.Save(saved);

        var other = LoadBase();
        var loaded = LoraAdapter.Load(other.Model, saved);
        Assert.That(MaxDiff(Logits(other), expected), Is.EqualTo(0f));
        Assert.That(loaded.Modules.Keys, Is.EqualTo(adapter.Modules.Keys));
        Assert.That(loaded.Config.R, Is.EqualTo(4));
        Assert.That(loaded.Config.Alpha, Is.EqualTo(12));
        Assert.That(loaded.Config.Dropout, Is.EqualTo(0.1));
        Assert.That(loaded.Config.UseRsLora, Is.True);
        Assert.That(loaded.Config.BaseModelNameOrPath, Is.EqualTo(dir));
        Assert.That(loaded.Config.TargetModules, Is.EquivalentTo(LoraConfig.DefaultTargetModules));
    }

    [Test]
    public void Adapter_in_the_newer_llava_key_layout_loads()
    {
        var vla = LoadBase();
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(), seed: 6);
        Randomize(adapter);
        var expected = Logits(vla);
        var saved = Scratch("newer");
        adapter.Save(saved);
        // transformers ≥ 4.52 names the language model "model.language_model.layers…" (no inner ".model")
        var file = Path.Combine(saved, LoraFiles.WeightsFileName);
        var tensors = SafeTensors.Load(file).ToDictionary(
            kv => kv.Key.Replace("base_model.model.language_model.model.", "base_model.model.model.language_model."), kv => kv.Value);
        Assert.That(tensors.Keys, Has.Some.StartsWith("base_model.model.model.language_model.layers.0."));
        SafeTensors.Save(file, tensors, new Dictionary<string, string> { ["format"] = "pt" });

        var other = LoadBase();
        var loaded = LoraAdapter.Load(other.Model, saved);
        Assert.That(loaded.Modules.Keys, Is.EqualTo(adapter.Modules.Keys));
        Assert.That(MaxDiff(Logits(other), expected), Is.EqualTo(0f));
    }

    [Test]
    public void Adapter_for_another_base_is_rejected()
    {
        var folder = Scratch("foreign");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, LoraFiles.ConfigFileName), new LoraConfig(R: 2).ToPeftJson());
        const string key = "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight";
        SafeTensors.Save(Path.Combine(folder, LoraFiles.WeightsFileName),
            new Dictionary<string, Tensor> { [key] = zeros(2, 64), ["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"] = zeros(192, 2) },
            new Dictionary<string, string> { ["format"] = "pt" });
        var vla = LoadBase();
        var e = Assert.Throws<BadInputException>(() => LoraAdapter.Load(vla.Model, folder));
        Assert.That(e!.Message, Does.Contain(folder));
        Assert.That(e.Message, Does.Contain("base_model.model.transformer.h.0.attn.c_attn.lora_"));
        Assert.That(vla.Model.named_modules().Any(m => m.module is LoraLinear), Is.False);
    }

    [Test]
    public void Mis_shaped_adapter_tensor_is_rejected_naming_it()
    {
        var vla = LoadBase();
        var saved = Scratch("misshaped");
        LoraAdapter.Apply(vla.Model, new LoraConfig(), seed: 6).Save(saved);
        var file = Path.Combine(saved, LoraFiles.WeightsFileName);
        var tensors = SafeTensors.Load(file);
        const string key = "base_model.model.language_model.model.layers.1.mlp.gate_proj.lora_A.weight";
        tensors[key] = zeros(8, 63);
        SafeTensors.Save(file, tensors, new Dictionary<string, string> { ["format"] = "pt" });

        var other = LoadBase();
        var e = Assert.Throws<BadInputException>(() => LoraAdapter.Load(other.Model, saved));
        Assert.That(e!.Message, Does.Contain(key));
        Assert.That(e.Message, Does.Contain("[8, 63]"));
        Assert.That(other.Model.named_modules().Any(m => m.module is LoraLinear), Is.False, "a rejected adapter leaves the model untouched");
    }

    [Test]
    public void Rslora_scaling_is_alpha_over_sqrt_r()
    {
        Assert.That(new LoraConfig(R: 16, Alpha: 8, UseRsLora: true).Scaling, Is.EqualTo(8 / 4.0));
        Assert.That(new LoraConfig(R: 16, Alpha: 8).Scaling, Is.EqualTo(8 / 16.0));

        // and the layer applies it: y − base(x) = scaling · B·A·x
        var linear = new KernelLinear(6, 5, true, LinearKernels.LibtorchOnly);
        var lora = new LoraLinear("probe", linear, 4, new LoraConfig(R: 4, Alpha: 3, UseRsLora: true).Scaling, 0.0, new Generator(1));
        using var _ = no_grad();
        lora.LoraB.weight.normal_(0, 1, generator: new Generator(2));
        var x = randn(3, 6);
        var delta = lora.call(x) - linear.call(x);
        var expected = x.matmul(lora.LoraA.weight.t()).matmul(lora.LoraB.weight.t()) * (3 / 2.0);
        Assert.That(MaxDiff(delta, expected), Is.LessThan(1e-5f));
    }

    [Test]
    public void On_a_bf16_base_the_adapter_multiplies_in_bf16_and_its_fp32_weights_get_the_fp32_gradients_within_bf16_rounding()
    {
        // the same layer in f64 is the reference: y = base(x) + s·B·A·x, ∂A and ∂B of Σ w⊙y
        var linear = new KernelLinear(64, 48, false, LinearKernels.LibtorchOnly);
        var lora = new LoraLinear("probe", linear, 4, 2.0, 0.0, new Generator(1));
        using (no_grad()) lora.LoraB.weight.normal_(0, 0.5, generator: new Generator(2));
        var x = randn([16, 64], generator: new Generator(3));
        var w = randn([16, 48], generator: new Generator(4));
        var a64 = lora.LoraA.weight.detach().to_type(ScalarType.Float64).requires_grad_();
        var b64 = lora.LoraB.weight.detach().to_type(ScalarType.Float64).requires_grad_();
        var x64 = x.to_type(ScalarType.Float64);
        var y64 = x64.matmul(linear.weight.detach().to_type(ScalarType.Float64).t()) + x64.matmul(a64.t()).matmul(b64.t()) * 2.0;
        (y64 * w.to_type(ScalarType.Float64)).sum().backward();

        linear.to(ScalarType.BFloat16);
        Assert.That(lora.LoraA.weight.dtype, Is.EqualTo(ScalarType.Float32), "the adapter stays fp32 on a bf16 base");
        var y = lora.call(x.to_type(ScalarType.BFloat16));
        Assert.That(y.dtype, Is.EqualTo(ScalarType.BFloat16), "joined to the base output in its dtype");
        (y.to_type(ScalarType.Float32) * w).sum().backward();
        Assert.That(lora.LoraA.weight.grad!.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(lora.LoraB.weight.grad!.dtype, Is.EqualTo(ScalarType.Float32));
        double Rel(Tensor got, Tensor want) => (got.to_type(ScalarType.Float64) - want).abs().max().item<double>() / want.abs().max().item<double>();
        // bf16 keeps 8 significant bits (relative rounding 2⁻⁹ ≈ 0.002 per value); sums of 16-64 terms stay within ~2%
        Assert.That(Rel(y, y64.detach()), Is.LessThan(0.02), "output");
        Assert.That(Rel(lora.LoraA.weight.grad!, a64.grad!), Is.LessThan(0.02), "∂A");
        Assert.That(Rel(lora.LoraB.weight.grad!, b64.grad!), Is.LessThan(0.02), "∂B");
        Assert.That(b64.grad!.abs().max().item<double>(), Is.GreaterThan(0.1), "non-trivial gradients");
    }

    [Test]
    public void Dropout_acts_in_training_mode_only()
    {
        var linear = new KernelLinear(32, 8, true, LinearKernels.LibtorchOnly);
        var lora = new LoraLinear("probe", linear, 4, 2.0, 0.5, new Generator(1));
        using var _ = no_grad();
        lora.LoraB.weight.normal_(0, 1, generator: new Generator(2));
        var x = randn(4, 32);
        lora.eval();
        Assert.That(MaxDiff(lora.call(x), lora.call(x)), Is.EqualTo(0f));
        lora.train();
        Assert.That(MaxDiff(lora.call(x), lora.call(x)), Is.GreaterThan(0f));
    }

    [Test]
    public void Peft_layout_is_readable_by_an_independent_reader()
    {
        var vla = LoadBase();
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(R: 4, Alpha: 16, Dropout: 0.05, BaseModelNameOrPath: "tiny-base"), seed: 6);
        Randomize(adapter);
        var saved = Scratch("layout");
        adapter.Save(saved);

        // adapter_model.safetensors, parsed by hand: u64 LE header length, JSON header, then the data bytes
        byte[] bytes = File.ReadAllBytes(Path.Combine(saved, "adapter_model.safetensors"));
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.That(n % 8, Is.EqualTo(0));
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
        var metadata = header.RootElement.GetProperty("__metadata__");
        Assert.That(metadata.EnumerateObject().Select(p => (p.Name, p.Value.GetString())), Is.EqualTo(new[] { ("format", "pt") }));
        var entries = header.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__").ToList();
        Assert.That(entries, Has.Count.EqualTo(28));
        long end = 0;
        foreach (var e in entries.OrderBy(e => e.Value.GetProperty("data_offsets")[0].GetInt64()))
        {
            var shape = e.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            var offsets = e.Value.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            Assert.That(e.Name, Does.StartWith("base_model.model.language_model.model.layers."));
            Assert.That(e.Value.GetProperty("dtype").GetString(), Is.EqualTo("F32"));
            Assert.That(offsets[0], Is.EqualTo(end));
            Assert.That(offsets[1] - offsets[0], Is.EqualTo(shape[0] * shape[1] * 4));
            end = offsets[1];
            string path = e.Name["base_model.model.".Length..^".lora_A.weight".Length];
            var m = adapter.Modules[path];
            var (weight, expected) = e.Name.EndsWith(".lora_A.weight")
                ? (m.LoraA.weight, new long[] { 4, m.BaseLayer.weight.shape[1] })
                : (m.LoraB.weight, new long[] { m.BaseLayer.weight.shape[0], 4 });
            Assert.That(e.Name, Does.EndWith(".lora_A.weight").Or.EndWith(".lora_B.weight"));
            Assert.That(shape, Is.EqualTo(expected), e.Name);
            var onDisk = new float[shape[0] * shape[1]];
            Buffer.BlockCopy(bytes, (int)(8 + n + offsets[0]), onDisk, 0, onDisk.Length * 4);
            Assert.That(onDisk, Is.EqualTo(weight.data<float>().ToArray()), e.Name);
        }
        Assert.That(8 + n + end, Is.EqualTo(bytes.LongLength));

        // adapter_config.json as PEFT writes it: json.dumps(indent=2, sort_keys=True)
        string text = File.ReadAllText(Path.Combine(saved, "adapter_config.json"));
        using var config = JsonDocument.Parse(text);
        var keys = config.RootElement.EnumerateObject().Select(p => p.Name).ToList();
        Assert.That(keys, Is.Ordered.Using((IComparer<string>)StringComparer.Ordinal));
        var c = config.RootElement;
        Assert.That(c.GetProperty("peft_type").GetString(), Is.EqualTo("LORA"));
        Assert.That(c.GetProperty("r").GetInt32(), Is.EqualTo(4));
        Assert.That(c.GetProperty("lora_alpha").GetRawText(), Is.EqualTo("16"));
        Assert.That(c.GetProperty("lora_dropout").GetRawText(), Is.EqualTo("0.05"));
        Assert.That(c.GetProperty("bias").GetString(), Is.EqualTo("none"));
        Assert.That(c.GetProperty("task_type").GetString(), Is.EqualTo("CAUSAL_LM"));
        Assert.That(c.GetProperty("fan_in_fan_out").GetBoolean(), Is.False);
        Assert.That(c.GetProperty("use_rslora").GetBoolean(), Is.False);
        Assert.That(c.GetProperty("inference_mode").GetBoolean(), Is.True);
        Assert.That(c.GetProperty("base_model_name_or_path").GetString(), Is.EqualTo("tiny-base"));
        Assert.That(c.GetProperty("modules_to_save").ValueKind, Is.EqualTo(JsonValueKind.Null));
        Assert.That(c.GetProperty("target_modules").EnumerateArray().Select(t => t.GetString()),
            Is.EqualTo(new[] { "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj" }));
        Assert.That(text, Does.StartWith("{\n  \"alpha_pattern\": {},\n  \"auto_mapping\": null,\n"));
        Assert.That(text, Does.Contain("\"target_modules\": [\n    \"down_proj\",\n"));
    }

    [Test]
    public void Config_written_by_peft_with_regex_targets_and_extra_keys_is_read()
    {
        var path = Path.Combine(Scratch("cfg"), "adapter_config.json");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, """
            {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ".*language_model.*\\.(q_proj|v_proj)",
             "task_type": "CAUSAL_LM", "peft_version": "0.17.1", "use_dora": false, "qalora_group_size": 16, "rank_pattern": {}}
            """);
        var config = LoraConfig.ReadPeftJson(path);
        Assert.That((config.R, config.Alpha, config.Dropout, config.Scaling), Is.EqualTo((16, 32.0, 0.05, 2.0)));

        File.WriteAllText(path, """{"peft_type": "LORA", "r": 8, "use_dora": true}""");
        Assert.That(Assert.Throws<BadInputException>(() => LoraConfig.ReadPeftJson(path))!.Message, Does.Contain("use_dora"));
        File.WriteAllText(path, """{"peft_type": "IA3", "r": 8}""");
        Assert.That(Assert.Throws<BadInputException>(() => LoraConfig.ReadPeftJson(path))!.Message, Does.Contain("IA3"));
    }
    /// <summary>
    /// Writes a base checkpoint and a trained-looking adapter to $VLATUNE_SAMPLE_ADAPTER_DIR for the Python checkers
    /// (tools/reference/check_peft_adapter.py, validate_outputs.py adapter). Run by hand:
    /// VLATUNE_SAMPLE_ADAPTER_DIR=/tmp/x dotnet test --filter Name=Writes_a_sample_adapter_for_external_checkers
    /// </summary>
    [Test, Explicit("writes files for the Python checkers")]
    public void Writes_a_sample_adapter_for_external_checkers()
    {
        string? outDir = Environment.GetEnvironmentVariable("VLATUNE_SAMPLE_ADAPTER_DIR");
        if (string.IsNullOrEmpty(outDir)) Assert.Ignore("set VLATUNE_SAMPLE_ADAPTER_DIR");
        var baseDir = Path.Combine(outDir!, "base");
        RandomCheckpoint.Write(baseDir, TestPaths.Words, seed: 11, std: 0.3);
        var vla = Vla.Load(baseDir);
        var adapter = LoraAdapter.Apply(vla.Model, new LoraConfig(R: 4, Alpha: 16, Dropout: 0.05, BaseModelNameOrPath: baseDir,
            TargetModules: [.. LoraConfig.DefaultTargetModules, "linear_1", "linear_2"], IncludeProjector: true), seed: 1);
        Randomize(adapter);
        adapter.Save(Path.Combine(outDir!, "adapter"));
        Assert.That(File.Exists(Path.Combine(outDir!, "adapter", LoraFiles.ConfigFileName)), Is.True);
    }
}
