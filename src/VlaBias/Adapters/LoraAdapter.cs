// LoRA on a LlavaModel by injection (PEFT's tuners/lora/model.py). In: a model and a LoraConfig (or a PEFT adapter
// folder, LoraFiles.Load). Out: the same model with its target linear children wrapped in LoraLinear, every base
// parameter frozen, and the adapter's lora_A/lora_B as the only trainable tensors. MergeInto folds the adapter into the
// base weights and Remove takes it out; both give back the model's own linear modules under their original names.
// Disable makes every wrapped module compute its base layer alone until the scope is disposed (PEFT's
// disable_adapter), so the one model in memory also gives the base's outputs.
using TorchSharp;
using TorchSharp.Modules;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Adapters;

public sealed class LoraAdapter : ITunable
{
    private readonly LlavaModel model;
    private readonly Dictionary<string, LoraLinear> modules;
    private readonly List<(Parameter Parameter, bool RequiresGrad)> baseTrainability;
    private bool detached;

    private LoraAdapter(LlavaModel model, LoraConfig config, Dictionary<string, LoraLinear> modules, List<(Parameter, bool)> baseTrainability)
    {
        this.model = model;
        Config = config;
        this.modules = modules;
        this.baseTrainability = baseTrainability;
    }

    public LoraConfig Config { get; }
    public TuneMethod Method => TuneMethod.Lora;

    /// <summary>The wrapped modules by path in Hugging Face naming, e.g. "language_model.model.layers.0.self_attn.q_proj", in model order.</summary>
    public IReadOnlyDictionary<string, LoraLinear> Modules => modules;

    /// <summary>The trainable tensors: lora_A and lora_B of every module.</summary>
    public IEnumerable<Parameter> Parameters()
    {
        foreach (var m in modules.Values)
        {
            yield return m.LoraA.weight;
            yield return m.LoraB.weight;
        }
    }

    public long ParameterCount => Parameters().Sum(p => p.numel());

    /// <summary>lora_A and lora_B under their state_dict names ("&lt;path&gt;.lora_A.weight"), in model order.</summary>
    public IReadOnlyDictionary<string, Tensor> CheckpointTensors()
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var (path, m) in modules)
        {
            d[path + ".lora_A.weight"] = m.LoraA.weight;
            d[path + ".lora_B.weight"] = m.LoraB.weight;
        }
        return d;
    }

    public bool Enabled => modules.Values.All(m => m.Enabled);

    /// <summary>Until the result is disposed, every wrapped module computes its base layer alone (a no-op scope when already disabled).</summary>
    public IDisposable Disable()
    {
        EnsureAttached();
        if (!Enabled) return new RestoreScope(() => { });
        foreach (var m in modules.Values) m.Enabled = false;
        return new RestoreScope(() => { foreach (var m in modules.Values) m.Enabled = true; });
    }

    // ---- injecting ------------------------------------------------------------------------------------------------

    /// <summary>Wraps every linear module the config targets (<see cref="LoraConfig.Targets"/>).</summary>
    public static LoraAdapter Apply(LlavaModel model, LoraConfig config, long seed)
    {
        config.Validate();
        var targets = new List<string>();
        foreach (var (path, module) in model.named_modules())
        {
            if (module is LoraLinear) throw new InvalidOperationException($"'{path}' already carries a LoRA adapter; remove or merge it first");
            if (module is KernelLinear && config.Targets(path)) targets.Add(path);
        }
        if (targets.Count == 0)
            throw new BadInputException(
                $"LoRA target_modules [{string.Join(", ", config.TargetModules)}] match no Linear module of the model " +
                $"(language model{(config.IncludeVision ? ", vision tower" : "")}{(config.IncludeProjector ? ", projector" : "")})");
        return Wrap(model, config, targets, seed);
    }

    /// <summary>Freezes the base and wraps the modules at <paramref name="paths"/> (checked by the caller).</summary>
    internal static LoraAdapter Wrap(LlavaModel model, LoraConfig config, IReadOnlyList<string> paths, long seed)
    {
        var all = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var trainability = new List<(Parameter, bool)>();
        foreach (var p in model.parameters())
        {
            trainability.Add((p, p.requires_grad));
            p.requires_grad = false;
        }
        var generator = new Generator((ulong)seed);
        var wrapped = new Dictionary<string, LoraLinear>();
        foreach (var path in paths)
        {
            var linear = (KernelLinear)all[path];
            var lora = new LoraLinear(path, linear, config.R, config.Scaling, config.Dropout, generator);
            lora.train(model.training);
            var (parent, name) = Parent(model, all, path);
            ModuleSwap.Replace(parent, name, lora);
            wrapped.Add(path, lora);
        }
        return new LoraAdapter(model, config, wrapped, trainability);
    }

    private static (nn.Module Parent, string Name) Parent(LlavaModel model, IReadOnlyDictionary<string, nn.Module> all, string path)
    {
        int dot = path.LastIndexOf('.');
        return dot < 0 ? (model, path) : (all[path[..dot]], path[(dot + 1)..]);
    }

    // ---- merging and removing -------------------------------------------------------------------------------------

    /// <summary>
    /// W ← W + scaling·B·A (fp32) for every module, then the plain linear goes back in place. Every merge is checked
    /// finite before any weight is written, so a failure leaves the model as it was.
    /// </summary>
    public void MergeInto()
    {
        EnsureAttached();
        foreach (var m in modules.Values) m.Merge().Dispose();
        using (no_grad())
            foreach (var m in modules.Values)
            {
                using var merged = m.Merge();
                m.BaseLayer.weight.copy_(merged);
            }
        Detach();
    }

    /// <summary>Puts the original linear modules back, unchanged, and restores which base parameters were trainable.</summary>
    public void Remove()
    {
        EnsureAttached();
        Detach();
    }

    private void Detach()
    {
        var all = model.named_modules().ToDictionary(m => m.name, m => m.module);
        foreach (var (path, lora) in modules)
        {
            var (parent, name) = Parent(model, all, path);
            ModuleSwap.Replace(parent, name, lora.BaseLayer);
        }
        foreach (var (p, requiresGrad) in baseTrainability) p.requires_grad = requiresGrad;
        detached = true;
    }

    private void EnsureAttached()
    {
        if (detached) throw new InvalidOperationException("this LoRA adapter has already been merged or removed");
    }

    // ---- files (LoraFiles.cs) ---------------------------------------------------------------------------------------

    /// <summary>Writes the adapter in PEFT's layout (adapter_config.json, adapter_model.safetensors).</summary>
    public void Save(string dir)
    {
        EnsureAttached();
        LoraFiles.Save(this, dir);
    }

    /// <summary>Reads the weights of an adapter saved from this one (same modules) back into it.</summary>
    public void LoadWeights(string dir)
    {
        EnsureAttached();
        LoraFiles.ReadWeights(this, dir);
    }

    /// <summary>Reads a PEFT adapter folder and applies it to <paramref name="model"/> (checked before the model is touched).</summary>
    public static LoraAdapter Load(LlavaModel model, string dir) => LoraFiles.Load(model, dir);
}
