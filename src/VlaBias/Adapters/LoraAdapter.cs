// LoRA adapters on a LlavaModel (SPEC §4). In: a model and a LoraConfig (or a PEFT adapter folder). Out: the same
// model with its target Linear children wrapped in LoraLinear, every base parameter frozen, and the adapter's
// lora_A/lora_B as the only trainable tensors. The adapter is saved and read in PEFT's layout:
//   DIR/adapter_config.json        PEFT's LoraConfig, json.dumps(indent=2, sort_keys=True)
//   DIR/adapter_model.safetensors  base_model.model.<module path>.lora_A.weight [r, in], .lora_B.weight [out, r], {"format": "pt"}
// MergeInto folds the adapter into the base weights and Remove takes it out; both give back the model's own Linear
// modules under their original names.
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Adapters;

public sealed class LoraAdapter
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";
    public const string BinWeightsFileName = "adapter_model.bin";
    private const string KeyPrefix = "base_model.model.";
    private const string SuffixA = ".lora_A.weight";
    private const string SuffixB = ".lora_B.weight";

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

    // ---- applying -------------------------------------------------------------------------------------------------

    /// <summary>
    /// Wraps every Linear whose path ends with a name of <see cref="LoraConfig.TargetModules"/> (PEFT's rule: the whole
    /// path or its last dot-separated components), in the language model and, when opted in, the vision tower and projector.
    /// </summary>
    public static LoraAdapter Apply(LlavaModel model, LoraConfig config, long seed)
    {
        config.Validate();
        var targets = new List<string>();
        foreach (var (path, module) in model.named_modules())
        {
            if (module is LoraLinear) throw new InvalidOperationException($"'{path}' already carries a LoRA adapter; remove or merge it first");
            if (module is Linear && InScope(path, config) && config.TargetModules.Any(t => path == t || path.EndsWith("." + t, StringComparison.Ordinal)))
                targets.Add(path);
        }
        if (targets.Count == 0)
            throw new BadInputException(
                $"LoRA target_modules [{string.Join(", ", config.TargetModules)}] match no Linear module of the model " +
                $"(language model{(config.IncludeVision ? ", vision tower" : "")}{(config.IncludeProjector ? ", projector" : "")})");
        return Wrap(model, config, targets, seed);
    }

    private static bool InScope(string path, LoraConfig config) =>
        path.StartsWith("language_model.", StringComparison.Ordinal)
        || (config.IncludeVision && path.StartsWith("vision_tower.", StringComparison.Ordinal))
        || (config.IncludeProjector && path.StartsWith("multi_modal_projector.", StringComparison.Ordinal));

    private static LoraAdapter Wrap(LlavaModel model, LoraConfig config, IReadOnlyList<string> paths, long seed)
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
            var linear = (Linear)all[path];
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
    /// W ← W + scaling·B·A (fp32) for every module, then the plain Linear goes back in place. Every merge is checked
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

    /// <summary>Puts the original Linear modules back, unchanged, and restores which base parameters were trainable.</summary>
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

    // ---- saving -----------------------------------------------------------------------------------------------------

    /// <summary>Writes adapter_config.json and adapter_model.safetensors to DIR as PEFT's save_pretrained does; each file atomically.</summary>
    public void Save(string dir)
    {
        EnsureAttached();
        Directory.CreateDirectory(dir);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (path, m) in modules)
        {
            tensors[KeyPrefix + path + SuffixA] = m.LoraA.weight;
            tensors[KeyPrefix + path + SuffixB] = m.LoraB.weight;
        }
        SafeTensors.Save(Path.Combine(dir, WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFileName), ConfigJson(Config));
    }

    /// <summary>
    /// PEFT's adapter_config.json: the LoraConfig fields PEFT has long accepted (newer-only keys are left out so older
    /// PEFT versions load it too), keys sorted, two-space indent, Python's number spelling.
    /// </summary>
    public static string ConfigJson(LoraConfig config)
    {
        var fields = new SortedDictionary<string, Action<Utf8JsonWriter>>(StringComparer.Ordinal)
        {
            ["alpha_pattern"] = w => { w.WriteStartObject(); w.WriteEndObject(); },
            ["auto_mapping"] = w => w.WriteNullValue(),
            ["base_model_name_or_path"] = w => { if (config.BaseModelNameOrPath is null) w.WriteNullValue(); else w.WriteStringValue(config.BaseModelNameOrPath); },
            ["bias"] = w => w.WriteStringValue("none"),
            ["fan_in_fan_out"] = w => w.WriteBooleanValue(false),
            ["inference_mode"] = w => w.WriteBooleanValue(true),
            ["init_lora_weights"] = w => w.WriteBooleanValue(true),
            ["layers_pattern"] = w => w.WriteNullValue(),
            ["layers_to_transform"] = w => w.WriteNullValue(),
            ["lora_alpha"] = w => w.WriteRawValue(PythonNumber(config.Alpha, integralAsInt: true)),
            ["lora_dropout"] = w => w.WriteRawValue(PythonNumber(config.Dropout, integralAsInt: false)),
            ["modules_to_save"] = w => w.WriteNullValue(),
            ["peft_type"] = w => w.WriteStringValue("LORA"),
            ["r"] = w => w.WriteNumberValue(config.R),
            ["rank_pattern"] = w => { w.WriteStartObject(); w.WriteEndObject(); },
            ["revision"] = w => w.WriteNullValue(),
            ["target_modules"] = w =>
            {
                w.WriteStartArray();
                foreach (var t in config.TargetModules.Distinct().Order(StringComparer.Ordinal)) w.WriteStringValue(t);
                w.WriteEndArray();
            },
            ["task_type"] = w => w.WriteStringValue("CAUSAL_LM"),
            ["use_dora"] = w => w.WriteBooleanValue(false),
            ["use_rslora"] = w => w.WriteBooleanValue(config.UseRsLora),
        };
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, IndentSize = 2 }))
        {
            w.WriteStartObject();
            foreach (var (key, write) in fields)
            {
                w.WritePropertyName(key);
                write(w);
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>How Python's json module spells a float (repr: "0.0", "0.05", "1e-05"), or an int when PEFT stores one.</summary>
    private static string PythonNumber(double value, bool integralAsInt)
    {
        if (integralAsInt && value == Math.Floor(value) && Math.Abs(value) < 1e15) return ((long)value).ToString(System.Globalization.CultureInfo.InvariantCulture);
        string s = value.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (s.Contains('E'))
        {
            // .NET "1E-05" → Python "1e-05"
            var (mantissa, exponent) = (s[..s.IndexOf('E')], int.Parse(s[(s.IndexOf('E') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
            return $"{mantissa}e{(exponent < 0 ? "-" : "+")}{Math.Abs(exponent):00}";
        }
        return s.Contains('.') ? s : s + ".0";
    }

    // ---- loading ----------------------------------------------------------------------------------------------------

    /// <summary>
    /// Reads a PEFT LoRA adapter folder (written here or by PEFT, older or newer LLaVA key layout) and applies it to
    /// <paramref name="model"/>. Everything is checked against the model before the model is touched.
    /// </summary>
    public static LoraAdapter Load(LlavaModel model, string dir)
    {
        string configPath = Path.Combine(dir, ConfigFileName), weightsPath = Path.Combine(dir, WeightsFileName);
        if (!Directory.Exists(dir)) throw new BadInputException($"{dir}: adapter folder not found");
        if (!File.Exists(configPath)) throw new BadInputException($"{dir}: no {ConfigFileName} (a PEFT adapter folder has {ConfigFileName} and {WeightsFileName})");
        // As PEFT: adapter_model.safetensors, else the PyTorch pickle adapter_model.bin.
        if (!File.Exists(weightsPath) && File.Exists(Path.Combine(dir, BinWeightsFileName))) weightsPath = Path.Combine(dir, BinWeightsFileName);
        if (!File.Exists(weightsPath)) throw new BadInputException($"{dir}: no {WeightsFileName} (or {BinWeightsFileName})");

        var config = ReadConfig(configPath);
        using var file = TensorFile.Open(weightsPath);
        var linears = model.named_modules().Where(m => m.module is Linear).ToDictionary(m => m.name, m => (Linear)m.module);

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
        bool listed = paths.All(p => config.TargetModules.Any(t => p == t || p.EndsWith("." + t, StringComparison.Ordinal)));
        config = config with
        {
            // A regex target_modules (or a list that does not name them) is replaced by the names the tensors show.
            TargetModules = listed ? config.TargetModules : paths.Select(p => p[(p.LastIndexOf('.') + 1)..]).Distinct().ToList(),
            IncludeVision = paths.Any(p => p.StartsWith("vision_tower.", StringComparison.Ordinal)),
            IncludeProjector = paths.Any(p => p.StartsWith("multi_modal_projector.", StringComparison.Ordinal)),
        };
        var adapter = Wrap(model, config, paths, seed: 0);
        foreach (var (path, lora) in adapter.modules)
        {
            var (a, b) = byModule[path];
            file.ReadInto(a!, lora.LoraA.weight);
            file.ReadInto(b!, lora.LoraB.weight);
        }
        return adapter;
    }

    /// <summary>Reads adapter_config.json into a LoraConfig, rejecting the PEFT options this implementation does not do.</summary>
    public static LoraConfig ReadConfig(string path)
    {
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new BadInputException($"{path}: empty JSON"); }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        { throw new BadInputException($"{path}: not a JSON object ({e.Message})", e); }

        T Get<T>(string key, T fallback)
        {
            var node = json[key];
            if (node is null) return fallback;
            try { return node.GetValue<T>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            { throw new BadInputException($"{path}: '{key}' should be a {typeof(T).Name}, got {node.ToJsonString()}", e); }
        }

        string peftType = Get("peft_type", "");
        if (peftType != "LORA") throw new BadInputException($"{path}: peft_type is '{peftType}', expected \"LORA\"");
        if (Get("use_dora", false)) throw new BadInputException($"{path}: use_dora is true; DoRA adapters are not supported");
        if (Get("fan_in_fan_out", false)) throw new BadInputException($"{path}: fan_in_fan_out is true; only Linear (not Conv1D) layouts are supported");
        if (Get("lora_bias", false)) throw new BadInputException($"{path}: lora_bias is true; LoRA biases are not supported");
        string bias = Get("bias", "none");
        if (bias != "none") throw new BadInputException($"{path}: bias is '{bias}'; only \"none\" is supported");
        foreach (var key in new[] { "rank_pattern", "alpha_pattern" })
            if (json[key] is JsonObject o && o.Count > 0) throw new BadInputException($"{path}: '{key}' is not empty; per-module ranks and alphas are not supported");
        if (json["modules_to_save"] is JsonArray { Count: > 0 }) throw new BadInputException($"{path}: modules_to_save is not supported");

        var targets = json["target_modules"] switch
        {
            JsonArray array => array.Select(n => n?.GetValue<string>() ?? "").ToList(),
            JsonValue v when v.TryGetValue<string>(out var s) => [s], // a regex: the modules come from the tensor names
            null => LoraConfig.DefaultTargetModules.ToList(),
            var other => throw new BadInputException($"{path}: 'target_modules' should be a list of names, got {other.ToJsonString()}"),
        };
        var config = new LoraConfig(
            R: Get("r", 8),
            Alpha: Get("lora_alpha", 8.0),
            Dropout: Get("lora_dropout", 0.0),
            TargetModules: targets,
            UseRsLora: Get("use_rslora", false),
            BaseModelNameOrPath: Get<string?>("base_model_name_or_path", null));
        try { config.Validate(); }
        catch (BadInputException e) { throw new BadInputException($"{path}: {e.Message}", e); }
        return config;
    }
}
