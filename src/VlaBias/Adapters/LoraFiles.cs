// PEFT's adapter files (utils/save_and_load.py): an adapter folder holds
//   adapter_config.json        PEFT's LoraConfig (LoraConfig.ToPeftJson)
//   adapter_model.safetensors  base_model.model.<module path>.lora_A.weight [r, in], .lora_B.weight [out, r], {"format": "pt"}
//   (or adapter_model.bin, the PyTorch pickle PEFT wrote before safetensors; read only)
// Save writes both (each file atomically). Load reads a folder written here or by PEFT (older or newer LLaVA key
// layout), checks every tensor against the model and reports the problems together before the model is touched, then
// wraps the modules; ReadWeights refreshes the weights of an adapter already applied (the best adapter of a run).
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Adapters;

public static class LoraFiles
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";
    public const string BinWeightsFileName = "adapter_model.bin";
    private const string KeyPrefix = "base_model.model.";
    private const string SuffixA = ".lora_A.weight";
    private const string SuffixB = ".lora_B.weight";

    /// <summary>The tensor names of an adapter in PEFT's layout, by module path.</summary>
    public static Dictionary<string, Tensor> Tensors(LoraAdapter adapter)
    {
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (path, m) in adapter.Modules)
        {
            tensors[KeyPrefix + path + SuffixA] = m.LoraA.weight;
            tensors[KeyPrefix + path + SuffixB] = m.LoraB.weight;
        }
        return tensors;
    }

    /// <summary>Writes adapter_config.json and adapter_model.safetensors to DIR as PEFT's save_pretrained does; each file atomically.</summary>
    public static void Save(LoraAdapter adapter, string dir)
    {
        Directory.CreateDirectory(dir);
        SafeTensors.Save(Path.Combine(dir, WeightsFileName), Tensors(adapter), new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFileName), adapter.Config.ToPeftJson());
    }

    /// <summary>Reads DIR's adapter_model.safetensors into the modules of an adapter it was saved from.</summary>
    public static void ReadWeights(LoraAdapter adapter, string dir)
    {
        string path = Path.Combine(dir, WeightsFileName);
        if (!File.Exists(path)) throw new BadInputException($"{dir}: no {WeightsFileName}");
        var targets = Tensors(adapter);
        using var file = SafeTensorsFile.Open(path);
        var missing = targets.Keys.Where(k => !file.Entries.ContainsKey(k)).ToList();
        if (missing.Count > 0) throw new BadInputException($"{path}: {missing.Count} tensor(s) of the adapter are missing, e.g. {ErrorText.Quote(missing[0])}");
        using var _ = no_grad();
        foreach (var (name, target) in targets) file.ReadInto(name, target);
    }

    /// <summary>
    /// Reads a PEFT LoRA adapter folder (written here or by PEFT, older or newer LLaVA key layout) and applies it to
    /// <paramref name="model"/>. Everything is checked against the model before the model is touched.
    /// </summary>
    internal static LoraAdapter Load(LlavaModel model, string dir)
    {
        string configPath = Path.Combine(dir, ConfigFileName), weightsPath = Path.Combine(dir, WeightsFileName);
        if (!Directory.Exists(dir)) throw new BadInputException($"{dir}: adapter folder not found");
        if (!File.Exists(configPath)) throw new BadInputException($"{dir}: no {ConfigFileName} (a PEFT adapter folder has {ConfigFileName} and {WeightsFileName})");
        // As PEFT: adapter_model.safetensors, else the PyTorch pickle adapter_model.bin.
        if (!File.Exists(weightsPath) && File.Exists(Path.Combine(dir, BinWeightsFileName))) weightsPath = Path.Combine(dir, BinWeightsFileName);
        if (!File.Exists(weightsPath)) throw new BadInputException($"{dir}: no {WeightsFileName} (or {BinWeightsFileName})");

        var config = LoraConfig.ReadPeftJson(configPath);
        using var file = TensorFile.Open(weightsPath);
        var linears = model.named_modules().Where(m => m.module is KernelLinear).ToDictionary(m => m.name, m => (KernelLinear)m.module);

        // key → (module path, A or B)
        var byModule = new Dictionary<string, (string? A, string? B)>();
        var unmatched = new List<string>();
        foreach (var key in file.Shapes.Keys)
        {
            if (!key.StartsWith(KeyPrefix, StringComparison.Ordinal))
                throw new BadInputException($"{weightsPath}: tensor {ErrorText.Quote(key)} does not start with '{KeyPrefix}' (not a PEFT adapter)");
            bool isA = key.EndsWith(SuffixA, StringComparison.Ordinal), isB = key.EndsWith(SuffixB, StringComparison.Ordinal);
            if (!isA && !isB)
                throw new BadInputException($"{weightsPath}: tensor {ErrorText.Quote(key)} is not a LoRA lora_A/lora_B weight (DoRA, biases, embeddings and modules_to_save are not supported)");
            string stored = key[KeyPrefix.Length..^SuffixA.Length];
            string path = LlavaModel.CanonicalName(stored + ".weight")[..^".weight".Length];
            if (!linears.ContainsKey(path)) { unmatched.Add(key); continue; }
            byModule.TryGetValue(path, out var pair);
            byModule[path] = isA ? pair with { A = key } : pair with { B = key };
        }
        if (byModule.Count == 0)
            throw new BadInputException($"{dir}: this adapter is for another base model: none of its {file.Shapes.Count} tensors matches a Linear module of the model (e.g. {ErrorText.Quote(file.Shapes.Keys.FirstOrDefault() ?? "(no tensors)")})");
        if (unmatched.Count > 0)
            throw new BadInputException($"{dir}: {unmatched.Count} adapter tensor(s) match no Linear module of the base model, e.g. {ErrorText.Quote(unmatched[0])}");

        var problems = new List<string>();
        foreach (var (path, (a, b)) in byModule)
        {
            if (a is null || b is null) { problems.Add($"module '{path}' has only {(a is null ? "lora_B" : "lora_A")}"); continue; }
            var w = linears[path].weight;
            long outF = w.shape[0], inF = w.shape[1];
            var shapeA = file.Shapes[a];
            var shapeB = file.Shapes[b];
            if (!shapeA.SequenceEqual(new long[] { config.R, inF }))
                problems.Add($"tensor {ErrorText.Quote(a)} has shape {ErrorText.Shape(shapeA)}, expected [r={config.R}, in={inF}]");
            if (!shapeB.SequenceEqual(new long[] { outF, config.R }))
                problems.Add($"tensor {ErrorText.Quote(b)} has shape {ErrorText.Shape(shapeB)}, expected [out={outF}, r={config.R}]");
        }
        if (problems.Count > 0)
            throw new BadInputException($"{dir}: adapter does not fit the base model: {string.Join("; ", problems.Take(10))}{(problems.Count > 10 ? $"; … {problems.Count - 10} more" : "")}");

        var paths = linears.Keys.Where(byModule.ContainsKey).ToList(); // model order
        bool listed = paths.All(config.NameMatches);
        config = config with
        {
            // A regex target_modules (or a list that does not name them) is replaced by the names the tensors show.
            TargetModules = listed ? config.TargetModules : paths.Select(p => p[(p.LastIndexOf('.') + 1)..]).Distinct().ToList(),
            IncludeVision = paths.Any(p => p.StartsWith("vision_tower.", StringComparison.Ordinal)),
            IncludeProjector = paths.Any(p => p.StartsWith("multi_modal_projector.", StringComparison.Ordinal)),
        };
        var adapter = LoraAdapter.Wrap(model, config, paths, seed: 0);
        foreach (var (path, lora) in adapter.Modules)
        {
            var (a, b) = byModule[path];
            file.ReadInto(a!, lora.LoraA.weight);
            file.ReadInto(b!, lora.LoraB.weight);
        }
        return adapter;
    }

}
