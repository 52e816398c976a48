// What a LoRA adapter is (PEFT's tuners/lora/config.py): rank, alpha, dropout, which Linear modules it wraps. The same
// fields PEFT's LoraConfig has, so adapter_config.json maps one to one; this file reads and writes it (PEFT's
// spelling: keys sorted, two-space indent, Python's numbers) and holds the one rule of which modules are targets.
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlaBias.Adapters;

/// <param name="TargetModules">
/// Module names matched against the last component of a module path (PEFT's list semantics): "q_proj" matches
/// "language_model.model.layers.3.self_attn.q_proj".
/// </param>
/// <param name="IncludeVision">Also wrap matching modules of the vision tower (its names are q_proj, k_proj, v_proj, out_proj, fc1, fc2).</param>
/// <param name="IncludeProjector">Also wrap matching modules of the projector (linear_1, linear_2).</param>
public sealed record LoraConfig(
    int R = 8,
    double Alpha = 16,
    double Dropout = 0.0,
    IReadOnlyList<string>? TargetModules = null,
    bool UseRsLora = false,
    string? BaseModelNameOrPath = null,
    bool IncludeVision = false,
    bool IncludeProjector = false)
{
    public static readonly IReadOnlyList<string> DefaultTargetModules =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public IReadOnlyList<string> TargetModules { get; init; } = TargetModules ?? DefaultTargetModules;

    /// <summary>alpha / r, or alpha / √r for rank-stabilised LoRA (Kalajdzievski 2023).</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(R) : Alpha / R;

    /// <summary>Throws a BadInputException naming the first field that is out of range.</summary>
    public void Validate()
    {
        if (R < 1) throw new BadInputException($"LoRA r must be at least 1, got {R}");
        if (!double.IsFinite(Alpha) || Alpha <= 0) throw new BadInputException($"LoRA alpha must be a positive number, got {Alpha}");
        if (!(Dropout >= 0 && Dropout < 1)) throw new BadInputException($"LoRA dropout must be in [0, 1), got {Dropout}");
        if (TargetModules.Count == 0) throw new BadInputException("LoRA target_modules is empty");
        foreach (var t in TargetModules)
            if (string.IsNullOrWhiteSpace(t)) throw new BadInputException("LoRA target_modules contains an empty name");
    }

    /// <summary>
    /// Whether the module at <paramref name="path"/> (Hugging Face naming) is a target: inside the language model (or
    /// the vision tower / projector when included) and named by <see cref="TargetModules"/>.
    /// </summary>
    public bool Targets(string path) => InScope(path) && NameMatches(path);

    /// <summary>PEFT's list rule: a target name is the whole path or its last dot-separated components.</summary>
    public bool NameMatches(string path) => TargetModules.Any(t => path == t || path.EndsWith("." + t, StringComparison.Ordinal));

    private bool InScope(string path) =>
        path.StartsWith("language_model.", StringComparison.Ordinal)
        || (IncludeVision && path.StartsWith("vision_tower.", StringComparison.Ordinal))
        || (IncludeProjector && path.StartsWith("multi_modal_projector.", StringComparison.Ordinal));

    /// <summary>
    /// PEFT's adapter_json: the LoraConfig fields PEFT has long accepted (newer-only keys are left out so older
    /// PEFT versions load it too), keys sorted, two-space indent, Python's number spelling.
    /// </summary>
    public string ToPeftJson()
    {
        var fields = new SortedDictionary<string, Action<Utf8JsonWriter>>(StringComparer.Ordinal)
        {
            ["alpha_pattern"] = w => { w.WriteStartObject(); w.WriteEndObject(); },
            ["auto_mapping"] = w => w.WriteNullValue(),
            ["base_model_name_or_path"] = w => { if (BaseModelNameOrPath is null) w.WriteNullValue(); else w.WriteStringValue(BaseModelNameOrPath); },
            ["bias"] = w => w.WriteStringValue("none"),
            ["fan_in_fan_out"] = w => w.WriteBooleanValue(false),
            ["inference_mode"] = w => w.WriteBooleanValue(true),
            ["init_lora_weights"] = w => w.WriteBooleanValue(true),
            ["layers_pattern"] = w => w.WriteNullValue(),
            ["layers_to_transform"] = w => w.WriteNullValue(),
            ["lora_alpha"] = w => w.WriteRawValue(PythonNumber(Alpha, integralAsInt: true)),
            ["lora_dropout"] = w => w.WriteRawValue(PythonNumber(Dropout, integralAsInt: false)),
            ["modules_to_save"] = w => w.WriteNullValue(),
            ["peft_type"] = w => w.WriteStringValue("LORA"),
            ["r"] = w => w.WriteNumberValue(R),
            ["rank_pattern"] = w => { w.WriteStartObject(); w.WriteEndObject(); },
            ["revision"] = w => w.WriteNullValue(),
            ["target_modules"] = w =>
            {
                w.WriteStartArray();
                foreach (var t in TargetModules.Distinct().Order(StringComparer.Ordinal)) w.WriteStringValue(t);
                w.WriteEndArray();
            },
            ["task_type"] = w => w.WriteStringValue("CAUSAL_LM"),
            ["use_dora"] = w => w.WriteBooleanValue(false),
            ["use_rslora"] = w => w.WriteBooleanValue(UseRsLora),
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

    /// <summary>Reads adapter_config.json into a LoraConfig, rejecting the PEFT options this implementation does not do.</summary>
    public static LoraConfig ReadPeftJson(string path)
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
