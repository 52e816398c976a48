// Configuration of a LLaVA-family checkpoint, read from config.json in the Hugging Face LlavaConfig shape.
// Field names are Hugging Face's, so a real checkpoint's config.json loads as is. A field config.json leaves out takes
// the default of the transformers config class its model_type names, as from_pretrained fills it: published files
// rely on that (llava-hf/llava-1.5-7b-hf's text_config gives only vocab_size, max_position_embeddings and
// rms_norm_eps; hidden_size 4096 and the rest are LlamaConfig's). A model_type without a class here, or a value of
// the wrong type, is a BadInputException naming the file and the field. Unknown fields are ignored.
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VlaBias.Model;

public sealed record VisionConfig(
    string ModelType,           // clip_vision_model | siglip_vision_model
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int ImageSize,
    int PatchSize,
    int NumChannels,
    string HiddenAct,           // quick_gelu | gelu | gelu_pytorch_tanh
    double LayerNormEps)
{
    public bool IsSiglip => ModelType.StartsWith("siglip", StringComparison.Ordinal);
    public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);
    public int HeadDim => HiddenSize / NumAttentionHeads;
}

public sealed record TextConfig(
    string ModelType,           // llama | qwen2 | mistral
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    int VocabSize,
    int MaxPositionEmbeddings,
    double RmsNormEps,
    double RopeTheta,
    string HiddenAct,
    bool TieWordEmbeddings,
    bool AttentionBias,         // q/k/v biases (Qwen2 always; Llama when attention_bias is true)
    int? BosTokenId,
    int? EosTokenId,
    int? PadTokenId);

public sealed record LlavaConfig(
    VisionConfig Vision,
    TextConfig Text,
    int ImageTokenIndex,
    string ProjectorHiddenAct,
    int VisionFeatureLayer,
    string VisionFeatureSelectStrategy, // default (drop CLS) | full
    bool ProjectorBias,
    string? TorchDtype)
{
    /// <summary>
    /// How many image features one image gives, so how many image-token positions it occupies: the tower's positions
    /// (patches, plus CLS for CLIP; SigLIP has none) less the first one for strategy "default", which drops it whatever
    /// it is, as Hugging Face's LlavaModel does (a SigLIP tower with "default" gives patches − 1).
    /// </summary>
    public int ImageSeqLength => Vision.NumPatches + (Vision.IsSiglip ? 0 : 1) - (VisionFeatureSelectStrategy == "default" ? 1 : 0);

    public static LlavaConfig Load(string path)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: file not found (a model folder needs config.json)");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new BadInputException($"{path}: not valid JSON ({e.Message})"); }
        if (root is not JsonObject o) throw new BadInputException($"{path}: expected a JSON object");
        return FromJson(o, path);
    }

    // The defaults of transformers' config classes (models/<type>/configuration_<type>.py): LlamaConfig, Qwen2Config,
    // MistralConfig; CLIPVisionConfig, SiglipVisionConfig. Every text class defaults to hidden_act silu, rope_theta
    // 10000 and untied embeddings; head_dim is hidden_size / num_attention_heads unless given.
    private sealed record TextDefaults(int HiddenSize, int IntermediateSize, int NumHiddenLayers, int NumAttentionHeads,
                                       int? NumKeyValueHeads, int VocabSize, int MaxPositionEmbeddings, double RmsNormEps,
                                       int? BosTokenId, int? EosTokenId); // NumKeyValueHeads null: num_attention_heads

    private static readonly Dictionary<string, TextDefaults> TextDefaultsOf = new(StringComparer.Ordinal)
    {
        ["llama"] = new(4096, 11008, 32, 32, null, 32000, 2048, 1e-6, 1, 2),
        ["qwen2"] = new(4096, 22016, 32, 32, 32, 151936, 32768, 1e-6, null, null), // absent key/value heads: 32, whatever the heads
        ["mistral"] = new(4096, 14336, 32, 32, 8, 32000, 4096 * 32, 1e-6, 1, 2),
    };

    private sealed record VisionDefaults(int HiddenSize, int IntermediateSize, int NumHiddenLayers, int NumAttentionHeads,
                                         int ImageSize, int PatchSize, string HiddenAct, double LayerNormEps);

    private static readonly Dictionary<string, VisionDefaults> VisionDefaultsOf = new(StringComparer.Ordinal)
    {
        ["clip_vision_model"] = new(768, 3072, 12, 12, 224, 32, "quick_gelu", 1e-5),
        ["siglip_vision_model"] = new(768, 3072, 12, 12, 224, 16, "gelu_pytorch_tanh", 1e-6),
    };

    /// <summary>LlavaConfig's vision tower when config.json has no vision_config: CLIP ViT-L/14 at 336 px.</summary>
    private static JsonObject LlavaDefaultVisionConfig() => new()
    {
        ["model_type"] = "clip_vision_model", ["hidden_size"] = 1024, ["intermediate_size"] = 4096, ["patch_size"] = 14,
        ["image_size"] = 336, ["num_hidden_layers"] = 24, ["num_attention_heads"] = 16,
    };

    public static LlavaConfig FromJson(JsonObject o, string path)
    {
        var r = new Reader(o, path, "");
        string modelType = r.Str("model_type", null);
        if (modelType != "llava")
            throw new BadInputException($"{path}: field 'model_type': unsupported value '{modelType}' (expected llava)");
        // As LlavaConfig.__init__: no vision_config is its CLIP tower, no text_config a default LlamaConfig.
        var vo = r.OptObj("vision_config") ?? LlavaDefaultVisionConfig();
        var to = r.OptObj("text_config") ?? new JsonObject();
        var v = new Reader(vo, path, "vision_config.");
        string vType = v.Str("model_type", "clip_vision_model");
        if (!VisionDefaultsOf.TryGetValue(vType, out var vd))
            throw new BadInputException($"{path}: field 'vision_config.model_type': unsupported value '{vType}' (expected {string.Join(" or ", VisionDefaultsOf.Keys)})");
        var vision = new VisionConfig(vType,
            v.Int("hidden_size", vd.HiddenSize), v.Int("intermediate_size", vd.IntermediateSize), v.Int("num_hidden_layers", vd.NumHiddenLayers),
            v.Int("num_attention_heads", vd.NumAttentionHeads), v.Int("image_size", vd.ImageSize), v.Int("patch_size", vd.PatchSize),
            v.Int("num_channels", 3), v.Str("hidden_act", vd.HiddenAct), v.Dbl("layer_norm_eps", vd.LayerNormEps));
        var t = new Reader(to, path, "text_config.");
        string tType = t.Str("model_type", "llama");
        if (!TextDefaultsOf.TryGetValue(tType, out var td))
            throw new BadInputException($"{path}: field 'text_config.model_type': unsupported value '{tType}' (expected {string.Join(", ", TextDefaultsOf.Keys)})");
        int hidden = t.Int("hidden_size", td.HiddenSize), heads = t.Int("num_attention_heads", td.NumAttentionHeads);
        if (heads < 1) throw new BadInputException($"{path}: field 'text_config.num_attention_heads': {heads} must be positive");
        // transformers 5 writes rope_theta inside rope_parameters
        double ropeTheta = t.OptDbl("rope_theta")
            ?? (t.OptObj("rope_parameters") is JsonObject rp ? new Reader(rp, path, "text_config.rope_parameters.").OptDbl("rope_theta") : null)
            ?? 10000.0;
        var text = new TextConfig(tType, hidden, t.Int("intermediate_size", td.IntermediateSize), t.Int("num_hidden_layers", td.NumHiddenLayers), heads,
            t.Has("num_key_value_heads") ? t.OptInt("num_key_value_heads") ?? heads : td.NumKeyValueHeads ?? heads, // null: heads
            t.OptInt("head_dim") ?? hidden / heads, t.Int("vocab_size", td.VocabSize),
            t.Int("max_position_embeddings", td.MaxPositionEmbeddings), t.Dbl("rms_norm_eps", td.RmsNormEps), ropeTheta,
            t.Str("hidden_act", "silu"), t.Bool("tie_word_embeddings", false) || r.Bool("tie_word_embeddings", false),
            tType == "qwen2" || t.Bool("attention_bias", false),
            // an explicit null stays null (no such token); only an absent id takes the class default
            t.Has("bos_token_id") ? t.OptInt("bos_token_id") : td.BosTokenId,
            t.Has("eos_token_id") ? t.OptInt("eos_token_id") : td.EosTokenId, t.OptInt("pad_token_id"));
        if (text.NumKeyValueHeads < 1 || text.NumAttentionHeads % text.NumKeyValueHeads != 0)
            throw new BadInputException($"{path}: field 'text_config.num_key_value_heads': {text.NumKeyValueHeads} does not divide num_attention_heads {text.NumAttentionHeads}");
        if (text.HeadDim % 2 != 0) throw new BadInputException($"{path}: text head dimension {text.HeadDim} must be even for rotary embeddings");
        // The patch convolution (stride = kernel = patch_size) drops a remainder, as in Hugging Face: SigLIP so400m has
        // image_size 384 with patch_size 14, so 27 × 27 patches.
        if (vision.PatchSize < 1 || vision.ImageSize < vision.PatchSize)
            throw new BadInputException($"{path}: field 'vision_config.image_size': {vision.ImageSize} is smaller than patch_size {vision.PatchSize}");
        string strategy = r.Str("vision_feature_select_strategy", "default");
        if (strategy is not ("default" or "full"))
            throw new BadInputException($"{path}: field 'vision_feature_select_strategy': unsupported value '{strategy}' (expected default or full)");
        int layer = r.Int("vision_feature_layer", -2);
        if (layer < -vision.NumHiddenLayers - 1 || layer > vision.NumHiddenLayers)
            throw new BadInputException($"{path}: field 'vision_feature_layer': {layer} is outside the tower's {vision.NumHiddenLayers} layers");
        return new LlavaConfig(vision, text,
            r.OptInt("image_token_index") ?? r.OptInt("image_token_id") ?? 32000,
            r.Str("projector_hidden_act", "gelu"), layer, strategy,
            r.Bool("multimodal_projector_bias", true), r.OptStr("torch_dtype"));
    }

    /// <summary>Writes the config in the Hugging Face LlavaConfig shape.</summary>
    public JsonObject ToJson()
    {
        var vision = new JsonObject
        {
            ["model_type"] = Vision.ModelType, ["hidden_size"] = Vision.HiddenSize, ["intermediate_size"] = Vision.IntermediateSize,
            ["num_hidden_layers"] = Vision.NumHiddenLayers, ["num_attention_heads"] = Vision.NumAttentionHeads,
            ["image_size"] = Vision.ImageSize, ["patch_size"] = Vision.PatchSize, ["num_channels"] = Vision.NumChannels,
            ["hidden_act"] = Vision.HiddenAct, ["layer_norm_eps"] = Vision.LayerNormEps,
        };
        var text = new JsonObject
        {
            ["model_type"] = Text.ModelType, ["hidden_size"] = Text.HiddenSize, ["intermediate_size"] = Text.IntermediateSize,
            ["num_hidden_layers"] = Text.NumHiddenLayers, ["num_attention_heads"] = Text.NumAttentionHeads,
            ["num_key_value_heads"] = Text.NumKeyValueHeads, ["head_dim"] = Text.HeadDim, ["vocab_size"] = Text.VocabSize,
            ["max_position_embeddings"] = Text.MaxPositionEmbeddings, ["rms_norm_eps"] = Text.RmsNormEps,
            ["rope_theta"] = Text.RopeTheta, ["hidden_act"] = Text.HiddenAct, ["tie_word_embeddings"] = Text.TieWordEmbeddings,
            ["bos_token_id"] = Text.BosTokenId, ["eos_token_id"] = Text.EosTokenId, ["pad_token_id"] = Text.PadTokenId,
        };
        if (Text.ModelType == "llama") text["attention_bias"] = Text.AttentionBias;
        return new JsonObject
        {
            ["architectures"] = new JsonArray("LlavaForConditionalGeneration"),
            ["model_type"] = "llava",
            ["image_token_index"] = ImageTokenIndex,
            ["projector_hidden_act"] = ProjectorHiddenAct,
            ["vision_feature_layer"] = VisionFeatureLayer,
            ["vision_feature_select_strategy"] = VisionFeatureSelectStrategy,
            ["multimodal_projector_bias"] = ProjectorBias,
            ["torch_dtype"] = TorchDtype ?? "float32",
            ["vision_config"] = vision,
            ["text_config"] = text,
        };
    }

    /// <summary>Reads typed fields of one JSON object; every error names the file and the dotted field path.</summary>
    private sealed class Reader(JsonObject o, string path, string prefix)
    {
        private JsonNode? Get(string name) => o.TryGetPropertyValue(name, out var n) ? n : null;
        private BadInputException Missing(string name) => new($"{path}: missing required field '{prefix}{name}'");
        private BadInputException Wrong(string name, string what) => new($"{path}: field '{prefix}{name}': expected {what}");

        public bool Has(string name) => o.ContainsKey(name);
        public JsonObject? OptObj(string name) => Get(name) switch
        {
            JsonObject j => j,
            null => null,
            _ => throw Wrong(name, "an object"),
        };
        public int Int(string name, int? dflt) => OptInt(name) ?? dflt ?? throw Missing(name);
        public int? OptInt(string name)
        {
            var n = Get(name);
            if (n is null) return null;
            try { return n.GetValue<int>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Wrong(name, "an integer"); }
        }
        public double Dbl(string name, double dflt) => OptDbl(name) ?? dflt;
        public double? OptDbl(string name)
        {
            var n = Get(name);
            if (n is null) return null;
            try { return n.GetValue<double>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Wrong(name, "a number"); }
        }
        public bool Bool(string name, bool dflt)
        {
            var n = Get(name);
            if (n is null) return dflt;
            try { return n.GetValue<bool>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Wrong(name, "true or false"); }
        }
        public string Str(string name, string? dflt) => OptStr(name) ?? dflt ?? throw Missing(name);
        public string? OptStr(string name)
        {
            var n = Get(name);
            if (n is null) return null;
            try { return n.GetValue<string>(); }
            catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Wrong(name, "a string"); }
        }
    }
}
