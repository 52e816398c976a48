// One training step of the language model, timed: LoRA (rank r on every q/k/v/o/gate/up/down projection, base
// frozen) or full fine-tuning (every language-model weight except the embedding table, which gets no gradient from
// inputs_embeds). Language model only: the input is random inputs_embeds [B, T, C] standing in for the spliced image
// features and token embeddings, so the PyTorch peer (tools/bench/peer_step.py) can do exactly the same work.
// Step = forward + cross-entropy over all positions, backward, clip_grad_norm_(1.0), AdamW (wd 0.01), zero_grad.
// Each part is timed on its own (CPU kernels are synchronous), which is the profile `bench` reports.
// lora-bf16 is the LoRA step on a bf16 base (weights and activations bf16; adapters, their optimizer state and the
// loss fp32), as `tune --dtype bf16` trains. `attention` records which attention (AttentionChoice) each shape took.
using System.Diagnostics;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using VlaBias.Adapters;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Bench;

public static class TrainStepBench
{
    public const string Lora = "lora", Full = "full", LoraBf16 = "lora-bf16";

    /// <summary>Measures <paramref name="mode"/> (lora or full) and returns its figures; peak RSS is this process's VmHWM at the end.</summary>
    public static JsonObject Run(BenchConfig bc, string mode, int warmup, int repeats, long seed = 0)
    {
        if (mode is not (Lora or Full or LoraBf16)) throw new BadInputException($"--worker: unknown mode '{mode}' (expected lora, lora-bf16 or full)");
        bool lora = mode is Lora or LoraBf16;
        var dtype = mode == LoraBf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        var cfg = bc.Llava(bc.Vocab);
        manual_seed(seed);
        LlavaModel model;
        // built in its dtype (default dtype switched for the constructor and init only), as LlavaModel.FromPretrained does
        var previous = get_default_dtype();
        try
        {
            set_default_dtype(dtype);
            using (no_grad()) model = new LlavaModel(cfg);
            model.InitWeights(0.02, seed);
        }
        finally { set_default_dtype(previous); }
        model.train();
        List<Parameter> trainable;
        long loraParams = 0;
        if (lora)
        {
            var adapter = LoraAdapter.Apply(model, new LoraConfig(R: bc.LoraRank, Alpha: bc.LoraAlpha), seed);
            trainable = adapter.Parameters().ToList();
            loraParams = adapter.ParameterCount;
        }
        else
        {
            foreach (var (name, p) in model.named_parameters())
                p.requires_grad = name.StartsWith("language_model.", StringComparison.Ordinal) && !name.Contains("embed_tokens");
            trainable = model.parameters().Where(p => p.requires_grad).ToList();
        }
        var opt = optim.AdamW(trainable, lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01);
        var gen = new Generator((ulong)seed + 1);
        var embeds = (randn([bc.Batch, bc.Sequence, cfg.Text.HiddenSize], generator: gen) * 0.02).to_type(dtype).DetachFromDisposeScope();
        var labels = randint(0, cfg.Text.VocabSize, [bc.Batch, bc.Sequence], generator: gen).DetachFromDisposeScope();

        var forward = new List<double>();
        var backward = new List<double>();
        var optimizer = new List<double>();
        var cpu = new List<double>();
        double lastLoss = double.NaN;
        void Step()
        {
            using var scope = NewDisposeScope();
            double cpu0 = Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds;
            var sw = Stopwatch.StartNew();
            var loss = model.call(new ModelInput { InputsEmbeds = embeds, Labels = labels }).Loss!;
            double f = sw.Elapsed.TotalMilliseconds;
            loss.backward();
            double b = sw.Elapsed.TotalMilliseconds;
            nn.utils.clip_grad_norm_(trainable, 1.0);
            opt.step();
            opt.zero_grad();
            double o = sw.Elapsed.TotalMilliseconds;
            forward.Add(f); backward.Add(b - f); optimizer.Add(o - b);
            cpu.Add(Process.GetCurrentProcess().TotalProcessorTime.TotalMilliseconds - cpu0);
            lastLoss = loss.ToSingle();
        }
        var step = Timings.TimeMs(warmup, repeats, Step);
        static Timings Last(List<double> xs, int n) => new(xs.Skip(xs.Count - n).ToArray());
        int n = step.Values.Length;
        double tokens = (double)bc.Batch * bc.Sequence;
        double modelFlops = TrainingFlops.Model(cfg.Text, bc.Batch, bc.Sequence);
        double honestFlops = lora ? TrainingFlops.LoraHonest(cfg.Text, bc.Batch, bc.Sequence, loraParams) : modelFlops;
        return new JsonObject
        {
            ["mode"] = mode,
            ["dtype"] = dtype == ScalarType.BFloat16 ? "bf16" : "f32",
            ["step_ms"] = step.ToJson(),
            // process CPU time per step (all threads): steadier than wall time on a shared machine
            ["step_cpu_ms"] = Last(cpu, n).ToJson(),
            ["steps_per_s"] = Timings.Round(1000.0 / step.Median),
            ["samples_per_s"] = Timings.Round(bc.Batch * 1000.0 / step.Median),
            ["tokens_per_s"] = Timings.Round(tokens * 1000.0 / step.Median, 1),
            ["profile_ms"] = new JsonObject
            {
                ["forward_and_loss"] = Last(forward, n).ToJson(),
                ["backward"] = Last(backward, n).ToJson(),
                ["clip_adamw_zero_grad"] = Last(optimizer, n).ToJson(),
            },
            ["trainable_params"] = trainable.Sum(p => p.numel()),
            ["lm_matmul_params"] = TrainingFlops.MatmulParams(cfg.Text),
            ["model_flops"] = modelFlops,
            ["honest_flops"] = honestFlops,
            ["achieved_gflops_model"] = Timings.Round(modelFlops / (step.Median * 1e-3) / 1e9, 2),
            ["achieved_gflops_honest"] = Timings.Round(honestFlops / (step.Median * 1e-3) / 1e9, 2),
            ["threads"] = get_num_threads(),
            ["final_loss"] = Timings.Round(lastLoss),
            ["peak_rss_mb"] = PeakRssMb(),
            ["attention"] = AttentionJson(),
        };
    }

    /// <summary>Which attention each shape bucket of this process took (AttentionChoice: matmul or sdpa), and the forced mode if any.</summary>
    public static JsonObject AttentionJson()
    {
        var choice = AttentionChoice.Default;
        var buckets = new JsonObject();
        foreach (var (key, matmul) in choice.Asked().OrderBy(kv => kv.Key, StringComparer.Ordinal)) buckets[key] = matmul ? "matmul" : "sdpa";
        return new JsonObject { ["mode"] = choice.ForcedMode.ToString().ToLowerInvariant(), ["buckets"] = buckets };
    }

    /// <summary>VmHWM of this process in MB (Linux /proc/self/status), or null where it cannot be read.</summary>
    public static double? PeakRssMb() => ComputeDType.PeakRssBytes() is long b ? Math.Round(b / (1024.0 * 1024.0), 1) : null;
}
