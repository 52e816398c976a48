// ONNX export of a (merged) LLaVA model in the community layout that Hugging Face Transformers.js loads unchanged
// (AutoProcessor + LlavaForConditionalGeneration, its session names fixed):
//   onnx/vision_encoder.onnx        pixel_values [batch_size, 3, H, W] → image_features [batch_size, N, C_text] (after the projector)
//   onnx/embed_tokens.onnx          input_ids [batch_size, seq] → inputs_embeds [batch_size, seq, C_text]
//   onnx/decoder_model_merged.onnx  inputs_embeds, attention_mask [batch_size, past+seq], position_ids [batch_size, seq],
//                                   past_key_values.{i}.key/value [batch_size, kv_heads, past, head_dim] (empty on the first step)
//                                   → logits [batch_size, seq, vocab], present.{i}.key/value [batch_size, kv_heads, past+seq, head_dim]
// The batch axis is named batch_size because Transformers.js sizes the empty first-step past from the axis of that name
// (every other symbolic axis becomes 0); weights above the external-data threshold go to "<graph>.onnx_data", the name
// it fetches. Beside the graphs: config.json (the source's keys kept, the modelled ones rewritten, transformers.js_config
// when there is external data), preprocessor_config.json with processor_class LlavaProcessor, processor_config.json
// (image_token, patch_size, num_additional_image_tokens: the processor expands <image> to that many tokens),
// tokenizer.json (copied, or written from the older tokenizer files), tokenizer_config.json (chat_template rendering
// the checkpoint's prompt template, padding_side left), generation_config.json (bos/eos/pad, and the image, pad and
// bos tokens as suppress_tokens, as vlatune's decoders suppress them) and vlatune_onnx.json (sizes, graph paths).
// Initializers keep Hugging Face's parameter names; Linear weights are stored transposed ([in, out]) so each
// projection is one MatMul. Every graph spells the model's math with basic ops (opset 17), the same math as
// Layers.cs / VisionTower.cs / LanguageModel.cs, so ONNX Runtime and TorchSharp agree to float rounding.
using System.Text.Json;
using System.Text.Json.Nodes;
using VlaBias.Model;
using VlaBias.Text;
using static TorchSharp.torch;
using Elem = VlaBias.Export.OnnxGraphBuilder.Elem;

namespace VlaBias.Export;

/// <summary>What <see cref="OnnxExporter.Export"/> wrote.</summary>
public sealed record OnnxExportResult(string Folder, IReadOnlyList<string> Files, long WeightBytes, bool ExternalData);

public static class OnnxExporter
{
    public const string InfoFile = "vlatune_onnx.json";
    public const string VisionFile = "onnx/vision_encoder.onnx";
    public const string EmbedFile = "onnx/embed_tokens.onnx";
    public const string DecoderFile = "onnx/decoder_model_merged.onnx";
    /// <summary>The symbolic batch axis, named as Transformers.js expects.</summary>
    public const string BatchAxis = "batch_size";

    /// <summary>Where exports written before the Transformers.js layout kept their graphs (still read).</summary>
    private static readonly (string vision, string embed, string decoder) LegacyGraphs = ("vision_encoder.onnx", "embed_tokens.onnx", "decoder_model.onnx");

    /// <summary>Tokenizer files of the older formats, copied beside tokenizer.json when the checkpoint has them.</summary>
    public static readonly string[] CheckpointFiles =
        ["vocab.txt", "tokenizer.model", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json"];

    /// <summary>Exports a loaded model with its checkpoint's tokenizer and processor files to <paramref name="outDir"/>.</summary>
    public static OnnxExportResult Export(Vla vla, string outDir, long externalThreshold = OnnxGraphBuilder.DefaultExternalThreshold)
    {
        var c = vla.Model.Config;
        var tok = vla.Tokenizer;
        string? src = vla.Folder;
        var result = Export(vla.Model, outDir, externalThreshold, src is null ? null : ReadObject(Path.Combine(src, "config.json")));
        var files = result.Files.ToList();
        void Write(string name, JsonNode node) { AtomicFile.WriteAllText(Path.Combine(outDir, name), node.ToJsonString(Json)); files.Add(name); }

        if (src is not null)
        {
            foreach (var name in CheckpointFiles)
            {
                var from = Path.Combine(src, name);
                if (!File.Exists(from)) continue;
                File.Copy(from, Path.Combine(outDir, name), overwrite: true);
                files.Add(name);
            }
            var tokenizerJson = Path.Combine(src, TokenizerJson.FileName);
            if (File.Exists(tokenizerJson)) File.Copy(tokenizerJson, Path.Combine(outDir, TokenizerJson.FileName), overwrite: true);
            else TokenizerJsonWriter.Write(Path.Combine(outDir, TokenizerJson.FileName), TokenizerJsonWriter.FromLegacyFiles(src)
                ?? throw new BadInputException($"{src}: no tokenizer files to write tokenizer.json from"));
            files.Add(TokenizerJson.FileName);

            var tc = ReadObject(Path.Combine(src, "tokenizer_config.json")) ?? new JsonObject();
            tc["chat_template"] ??= PromptTemplates.ChatTemplate(tok.PromptTemplate, tok.ImageToken);
            tc["padding_side"] = "left";
            tc["vlatune_prompt_template"] ??= tok.PromptTemplate;
            foreach (var (key, value) in new[] { ("bos_token", tok.BosToken), ("eos_token", tok.EosToken), ("pad_token", tok.PadToken), ("image_token", tok.ImageToken) })
                if (tc[key] is null) tc[key] = value;
            // A slow-tokenizer class with a different Transformers.js counterpart (BertTokenizer adds token_type_ids) would
            // change what the processor returns; the generic fast class reads tokenizer.json as it is.
            if (tc["tokenizer_class"]?.GetValue<string>() is "BertTokenizer" or "BertTokenizerFast") tc["tokenizer_class"] = "PreTrainedTokenizerFast";
            Write("tokenizer_config.json", tc);
        }

        var pre = (src is null ? null : ReadObject(Path.Combine(src, "preprocessor_config.json"))) ?? vla.Images.Config.ToJson();
        pre["processor_class"] = "LlavaProcessor";
        Write("preprocessor_config.json", pre);
        int patches = c.Vision.ImageSize / c.Vision.PatchSize, additional = c.ImageSeqLength - patches * patches;
        var processor = new JsonObject
        {
            ["processor_class"] = "LlavaProcessor",
            ["image_token"] = tok.ImageToken,
            ["patch_size"] = c.Vision.PatchSize,
            // Transformers.js and Python both expand <image> to (H/patch)·(W/patch) + this many tokens; with no
            // vision_feature_select_strategy here Python subtracts nothing for the dropped CLS, so the count is exact.
            ["num_additional_image_tokens"] = additional,
        };
        if (additional < 0)
        {
            // SigLIP with "default" drops a patch: only Python's strategy rule can say so (Transformers.js ignores it
            // and would count one token more than the model's features).
            processor["num_additional_image_tokens"] = additional + 1;
            processor["vision_feature_select_strategy"] = "default";
        }
        Write("processor_config.json", processor);

        var gen = (src is null ? null : ReadObject(Path.Combine(src, "generation_config.json"))) ?? new JsonObject();
        gen["bos_token_id"] = tok.BosId;
        gen["eos_token_id"] = tok.EosId;
        gen["pad_token_id"] = tok.PadId;
        var suppress = (gen["suppress_tokens"] as JsonArray)?.Select(x => x!.GetValue<int>()).ToList() ?? [];
        suppress.AddRange(new[] { tok.ImageTokenId, tok.PadId, tok.BosId }.Where(t => t != tok.EosId && t >= 0));
        gen["suppress_tokens"] = new JsonArray(suppress.Distinct().Order().Select(t => (JsonNode)t).ToArray());
        gen["do_sample"] ??= false;
        Write("generation_config.json", gen);

        var info = Info(c);
        info["prompt_template"] = tok.PromptTemplate;
        info["add_bos"] = tok.AddBos;
        info["special_tokens"] = new JsonObject
        {
            ["bos"] = Token(tok.BosToken, tok.BosId), ["eos"] = Token(tok.EosToken, tok.EosId),
            ["pad"] = Token(tok.PadToken, tok.PadId), ["image"] = Token(tok.ImageToken, tok.ImageTokenId),
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, InfoFile), info.ToJsonString(Json));
        return result with { Files = files.Distinct().ToList() };
    }

    private static JsonObject Token(string text, int id) => new() { ["content"] = text, ["id"] = id };

    private static JsonObject? ReadObject(string path)
    {
        if (!File.Exists(path)) return null;
        try { return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new BadInputException($"{path}: expected a JSON object"); }
        catch (JsonException e) { throw new BadInputException($"{path}: not valid JSON ({e.Message})"); }
    }

    /// <summary>
    /// Writes the three graphs, config.json and a vlatune_onnx.json without tokenizer fields for <paramref name="model"/>.
    /// <paramref name="externalThreshold"/>: above this many bytes of weights a graph keeps them in one external
    /// "&lt;graph&gt;.onnx_data" file. <paramref name="sourceConfig"/>: the checkpoint's config.json, whose keys the
    /// written one keeps (the modelled ones are rewritten).
    /// </summary>
    public static OnnxExportResult Export(LlavaModel model, string outDir, long externalThreshold = OnnxGraphBuilder.DefaultExternalThreshold,
        JsonObject? sourceConfig = null)
    {
        Directory.CreateDirectory(Path.Combine(outDir, "onnx"));
        var c = model.Config;
        var weights = model.state_dict();
        if (c.Text.TieWordEmbeddings) weights["language_model.lm_head.weight"] = weights["language_model.model.embed_tokens.weight"];
        var files = new List<string>();
        var externalGraphs = new List<string>();
        long bytes = 0;
        using (no_grad())
        {
            foreach (var (file, builder) in new (string, Func<OnnxGraphBuilder>)[]
                     {
                         (VisionFile, () => Vision(c, weights)), (EmbedFile, () => Embed(c, weights)), (DecoderFile, () => Decoder(c, weights)),
                     })
            {
                var g = builder();
                bytes += g.WeightBytes;
                var data = g.Save(Path.Combine(outDir, file), Producer, externalThreshold);
                files.Add(file);
                if (data is not null) { files.Add(Path.GetRelativePath(outDir, data)); externalGraphs.Add(Path.GetFileName(file)); }
            }
        }
        var config = Merge(sourceConfig?.DeepClone().AsObject() ?? new JsonObject(), c.ToJson());
        config.Remove("transformers.js_config");
        if (externalGraphs.Count > 0)
            config["transformers.js_config"] = new JsonObject
            {
                ["use_external_data_format"] = new JsonObject(externalGraphs.Select(g => KeyValuePair.Create(g, (JsonNode?)1))),
            };
        AtomicFile.WriteAllText(Path.Combine(outDir, "config.json"), config.ToJsonString(Json));
        files.Add("config.json");
        AtomicFile.WriteAllText(Path.Combine(outDir, InfoFile), Info(c).ToJsonString(Json));
        files.Add(InfoFile);
        return new OnnxExportResult(outDir, files, bytes, externalGraphs.Count > 0);
    }

    /// <summary><paramref name="over"/>'s keys written over <paramref name="into"/>, objects merged key by key.</summary>
    private static JsonObject Merge(JsonObject into, JsonObject over)
    {
        foreach (var (key, value) in over)
        {
            if (value is JsonObject o && into[key] is JsonObject existing) Merge(existing, o);
            else into[key] = value?.DeepClone();
        }
        return into;
    }

    /// <summary>
    /// Full paths of the three graphs of an export folder: from vlatune_onnx.json's "graphs" (relative paths inside
    /// the folder), else the names of the layout before Transformers.js's (all three beside config.json).
    /// </summary>
    public static (string Vision, string Embed, string Decoder) GraphFiles(string dir)
    {
        string infoPath = Path.Combine(dir, InfoFile);
        var graphs = ReadObject(infoPath)?["graphs"] as JsonObject;
        string Resolve(string key, string legacy)
        {
            if (graphs?[key] is not JsonValue v || !v.TryGetValue<string>(out var rel)) return Path.Combine(dir, legacy);
            if (Path.IsPathRooted(rel) || rel.Split('/', '\\').Contains(".."))
                throw new BadInputException($"{infoPath}: field 'graphs.{key}': expected a path inside the export folder, got '{rel}'");
            return Path.Combine(dir, rel);
        }
        return (Resolve("vision_encoder", LegacyGraphs.vision), Resolve("embed_tokens", LegacyGraphs.embed), Resolve("decoder", LegacyGraphs.decoder));
    }

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string Producer => typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "0";

    private static JsonObject Info(LlavaConfig c) => new()
    {
        ["format"] = "vlatune-onnx",
        ["version"] = 2,
        ["opset"] = OnnxGraphBuilder.Opset,
        ["ir_version"] = OnnxGraphBuilder.IrVersion,
        ["graphs"] = new JsonObject { ["vision_encoder"] = VisionFile, ["embed_tokens"] = EmbedFile, ["decoder"] = DecoderFile },
        ["image_token_id"] = c.ImageTokenIndex,
        ["image_seq_length"] = c.ImageSeqLength,
        ["image_size"] = c.Vision.ImageSize,
        ["vocab_size"] = c.Text.VocabSize,
        ["hidden_size"] = c.Text.HiddenSize,
        ["num_layers"] = c.Text.NumHiddenLayers,
        ["num_attention_heads"] = c.Text.NumAttentionHeads,
        ["num_key_value_heads"] = c.Text.NumKeyValueHeads,
        ["head_dim"] = c.Text.HeadDim,
        ["bos_token_id"] = c.Text.BosTokenId,
        ["eos_token_id"] = c.Text.EosTokenId,
        ["pad_token_id"] = c.Text.PadTokenId,
    };

    // ---- building blocks ------------------------------------------------------------------------------------------

    /// <summary>x·Wᵀ (+ b) with the weight stored transposed, so one MatMul serves any leading shape.</summary>
    private static string Linear(OnnxGraphBuilder g, IDictionary<string, Tensor> w, string x, string prefix, bool bias)
    {
        var y = g.Node("MatMul", [x, g.Weight(prefix + ".weight", w[prefix + ".weight"], transpose: true)]);
        return bias && w.TryGetValue(prefix + ".bias", out var b) ? g.Node("Add", [y, g.Weight(prefix + ".bias", b)]) : y;
    }

    private static string LayerNorm(OnnxGraphBuilder g, IDictionary<string, Tensor> w, string x, string prefix, double eps) =>
        g.Node("LayerNormalization", [x, g.Weight(prefix + ".weight", w[prefix + ".weight"]), g.Weight(prefix + ".bias", w[prefix + ".bias"])],
            null, ("axis", -1L), ("epsilon", eps));

    /// <summary>RMSNorm as Layers.cs computes it: x / sqrt(mean(x²) + eps) · weight.</summary>
    private static string RmsNorm(OnnxGraphBuilder g, IDictionary<string, Tensor> w, string x, string prefix, double eps)
    {
        var variance = g.Node("ReduceMean", [g.Node("Pow", [x, g.Scalar(2f)])], null, ("axes", new long[] { -1 }), ("keepdims", 1L));
        var rms = g.Node("Sqrt", [g.Node("Add", [variance, g.Scalar((float)eps)])]);
        return g.Node("Mul", [g.Weight(prefix + ".weight", w[prefix + ".weight"]), g.Node("Div", [x, rms])]);
    }

    /// <summary>The activations of <see cref="Activations.Get"/>, spelled with basic ops (Gelu is opset 20).</summary>
    private static string Act(OnnxGraphBuilder g, string name, string x)
    {
        switch (name)
        {
            case "gelu":        // 0.5·x·(1 + erf(x/√2))
                var erf = g.Node("Erf", [g.Node("Mul", [x, g.Scalar((float)(1 / Math.Sqrt(2)))])]);
                return g.Node("Mul", [g.Node("Mul", [x, g.Scalar(0.5f)]), g.Node("Add", [erf, g.Scalar(1f)])]);
            case "gelu_pytorch_tanh" or "gelu_new":   // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
                var cube = g.Node("Mul", [g.Node("Pow", [x, g.Scalar(3f)]), g.Scalar(0.044715f)]);
                var inner = g.Node("Mul", [g.Node("Add", [x, cube]), g.Scalar((float)Math.Sqrt(2 / Math.PI))]);
                return g.Node("Mul", [g.Node("Mul", [x, g.Scalar(0.5f)]), g.Node("Add", [g.Node("Tanh", [inner]), g.Scalar(1f)])]);
            case "quick_gelu":  // x·σ(1.702·x)
                return g.Node("Mul", [x, g.Node("Sigmoid", [g.Node("Mul", [x, g.Scalar(1.702f)])])]);
            case "silu" or "swish":
                return g.Node("Mul", [x, g.Node("Sigmoid", [x])]);
            case "relu":
                return g.Node("Relu", [x]);
            default:
                throw new BadInputException($"activation '{name}' cannot be exported (expected gelu, gelu_pytorch_tanh, quick_gelu, silu or relu)");
        }
    }

    /// <summary>[B, T, H·D] → [B, H, T, D].</summary>
    private static string SplitHeads(OnnxGraphBuilder g, string x, int heads, int headDim) =>
        g.Node("Transpose", [g.Node("Reshape", [x, g.Ints(0, 0, heads, headDim)])], null, ("perm", new long[] { 0, 2, 1, 3 }));

    /// <summary>[B, H, T, D] → [B, T, H·D].</summary>
    private static string MergeHeads(OnnxGraphBuilder g, string x, int heads, int headDim) =>
        g.Node("Reshape", [g.Node("Transpose", [x], null, ("perm", new long[] { 0, 2, 1, 3 })), g.Ints(0, 0, heads * headDim)]);

    /// <summary>softmax(q·kᵀ/√D + bias)·v for q [B, H, T, D], k/v [B, H, S, D], bias [B, 1, T, S] or none.</summary>
    private static string Attention(OnnxGraphBuilder g, string q, string k, string v, int headDim, string? bias)
    {
        var scores = g.Node("Mul", [g.Node("MatMul", [q, g.Node("Transpose", [k], null, ("perm", new long[] { 0, 1, 3, 2 }))]), g.Scalar((float)(1 / Math.Sqrt(headDim)))]);
        if (bias is not null) scores = g.Node("Add", [scores, bias]);
        return g.Node("MatMul", [g.Node("Softmax", [scores], null, ("axis", -1L)), v]);
    }

    // ---- vision_encoder.onnx ------------------------------------------------------------------------------------

    private static OnnxGraphBuilder Vision(LlavaConfig c, IDictionary<string, Tensor> w)
    {
        var v = c.Vision;
        var g = new OnnxGraphBuilder("vision_encoder");
        const string P = "vision_tower.vision_model.";
        var pixels = g.Input("pixel_values", Elem.Float, BatchAxis, v.NumChannels, v.ImageSize, v.ImageSize);
        var conv = v.IsSiglip
            ? g.Node("Conv", [pixels, g.Weight(P + "embeddings.patch_embedding.weight", w[P + "embeddings.patch_embedding.weight"]), g.Weight(P + "embeddings.patch_embedding.bias", w[P + "embeddings.patch_embedding.bias"])],
                null, ("kernel_shape", new long[] { v.PatchSize, v.PatchSize }), ("strides", new long[] { v.PatchSize, v.PatchSize }))
            : g.Node("Conv", [pixels, g.Weight(P + "embeddings.patch_embedding.weight", w[P + "embeddings.patch_embedding.weight"])],
                null, ("kernel_shape", new long[] { v.PatchSize, v.PatchSize }), ("strides", new long[] { v.PatchSize, v.PatchSize }));
        // (B, C, h, w) → (B, N, C)
        var x = g.Node("Transpose", [g.Node("Reshape", [conv, g.Ints(0, v.HiddenSize, -1)])], null, ("perm", new long[] { 0, 2, 1 }));
        if (!v.IsSiglip)
        {
            var batch = g.Node("Slice", [g.Node("Shape", [pixels]), g.Ints(0), g.Ints(1)]);
            var cls = g.Node("Reshape", [g.Weight(P + "embeddings.class_embedding", w[P + "embeddings.class_embedding"]), g.Ints(1, 1, v.HiddenSize)]);
            var clsB = g.Node("Expand", [cls, g.Node("Concat", [batch, g.Ints(1, v.HiddenSize)], null, ("axis", 0L))]);
            x = g.Node("Concat", [clsB, x], null, ("axis", 1L));                                   // (B, N+1, C)
        }
        x = g.Node("Add", [x, g.Weight(P + "embeddings.position_embedding.weight", w[P + "embeddings.position_embedding.weight"])]);
        if (!v.IsSiglip) x = LayerNorm(g, w, x, P + "pre_layrnorm", v.LayerNormEps);
        int upTo = c.VisionFeatureLayer < 0 ? v.NumHiddenLayers + 1 + c.VisionFeatureLayer : c.VisionFeatureLayer;
        for (int i = 0; i < upTo; i++)
        {
            string L = $"{P}encoder.layers.{i}.";
            var h = LayerNorm(g, w, x, L + "layer_norm1", v.LayerNormEps);
            var q = SplitHeads(g, Linear(g, w, h, L + "self_attn.q_proj", true), v.NumAttentionHeads, v.HeadDim);
            var k = SplitHeads(g, Linear(g, w, h, L + "self_attn.k_proj", true), v.NumAttentionHeads, v.HeadDim);
            var val = SplitHeads(g, Linear(g, w, h, L + "self_attn.v_proj", true), v.NumAttentionHeads, v.HeadDim);
            var o = MergeHeads(g, Attention(g, q, k, val, v.HeadDim, null), v.NumAttentionHeads, v.HeadDim);
            x = g.Node("Add", [x, Linear(g, w, o, L + "self_attn.out_proj", true)]);
            h = LayerNorm(g, w, x, L + "layer_norm2", v.LayerNormEps);
            h = Linear(g, w, Act(g, v.HiddenAct, Linear(g, w, h, L + "mlp.fc1", true)), L + "mlp.fc2", true);
            x = g.Node("Add", [x, h]);
        }
        if (c.VisionFeatureSelectStrategy == "default")
            x = g.Node("Slice", [x, g.Ints(1), g.Ints(long.MaxValue), g.Ints(1)]);                 // drop CLS
        x = Linear(g, w, x, "multi_modal_projector.linear_1", c.ProjectorBias);
        x = Linear(g, w, Act(g, c.ProjectorHiddenAct, x), "multi_modal_projector.linear_2", c.ProjectorBias);
        g.Output(x, "image_features", Elem.Float, BatchAxis, c.ImageSeqLength, c.Text.HiddenSize);
        return g;
    }

    // ---- embed_tokens.onnx --------------------------------------------------------------------------------------

    private static OnnxGraphBuilder Embed(LlavaConfig c, IDictionary<string, Tensor> w)
    {
        var g = new OnnxGraphBuilder("embed_tokens");
        var ids = g.Input("input_ids", Elem.Int64, BatchAxis, "sequence_length");
        const string name = "language_model.model.embed_tokens.weight";
        g.Output(g.Node("Gather", [g.Weight(name, w[name]), ids], null, ("axis", 0L)), "inputs_embeds", Elem.Float, BatchAxis, "sequence_length", c.Text.HiddenSize);
        return g;
    }

    // ---- decoder_model_merged.onnx -------------------------------------------------------------------------------------

    private static OnnxGraphBuilder Decoder(LlavaConfig c, IDictionary<string, Tensor> w)
    {
        var t = c.Text;
        var g = new OnnxGraphBuilder("decoder_model_merged");
        var embeds = g.Input("inputs_embeds", Elem.Float, BatchAxis, "sequence_length", t.HiddenSize);
        var keyMask = g.Input("attention_mask", Elem.Int64, BatchAxis, "total_sequence_length");
        var positions = g.Input("position_ids", Elem.Int64, BatchAxis, "sequence_length");
        var past = Enumerable.Range(0, t.NumHiddenLayers).Select(i => (
            k: g.Input($"past_key_values.{i}.key", Elem.Float, BatchAxis, t.NumKeyValueHeads, "past_sequence_length", t.HeadDim),
            v: g.Input($"past_key_values.{i}.value", Elem.Float, BatchAxis, t.NumKeyValueHeads, "past_sequence_length", t.HeadDim))).ToArray();

        // Attention bias [B, 1, T, S] from AttentionMasks.Causal: key k visible to query q (at cache position S−T+q)
        // when k ≤ q's position and the key is real, and always to itself. 0 where visible, float.MinValue elsewhere.
        var s = g.Node("Squeeze", [g.Node("Slice", [g.Node("Shape", [keyMask]), g.Ints(1), g.Ints(2)]), g.Ints(0)]);
        var tLen = g.Node("Squeeze", [g.Node("Slice", [g.Node("Shape", [embeds]), g.Ints(1), g.Ints(2)]), g.Ints(0)]);
        var qPos = g.Node("Unsqueeze", [g.Node("Range", [g.Node("Sub", [s, tLen]), s, g.Scalar(1L)]), g.Ints(1)]);   // [T, 1]
        var kPos = g.Node("Unsqueeze", [g.Node("Range", [g.Scalar(0L), s, g.Scalar(1L)]), g.Ints(0)]);              // [1, S]
        var causal = g.Node("LessOrEqual", [kPos, qPos]);
        var diag = g.Node("Equal", [kPos, qPos]);
        var real = g.Node("Unsqueeze", [g.Node("Cast", [keyMask], null, ("to", (long)Elem.Bool)), g.Ints(1, 2)]);  // [B, 1, 1, S]
        var visible = g.Node("Or", [g.Node("And", [causal, real]), diag]);                                         // [B, 1, T, S]
        var bias = g.Node("Where", [visible, g.Scalar(0f), g.Scalar(float.MinValue)]);

        // Rotary tables as RotaryEmbedding.CosSin computes them: angles = position · inv_freq, duplicated → [B, 1, T, D].
        using var invFreq = (1.0 / pow(t.RopeTheta, arange(0, t.HeadDim, 2, dtype: ScalarType.Float64) / t.HeadDim)).to_type(ScalarType.Float32);
        var freqs = g.Node("Mul", [g.Node("Unsqueeze", [g.Node("Cast", [positions], null, ("to", (long)Elem.Float)), g.Ints(-1)]), g.Floats(invFreq.data<float>().ToArray())]);
        var emb = g.Node("Unsqueeze", [g.Node("Concat", [freqs, freqs], null, ("axis", -1L)), g.Ints(1)]);
        var cos = g.Node("Cos", [emb]);
        var sin = g.Node("Sin", [emb]);
        int half = t.HeadDim / 2;
        string Rope(string x)
        {
            var x1 = g.Node("Slice", [x, g.Ints(0), g.Ints(half), g.Ints(-1)]);
            var x2 = g.Node("Slice", [x, g.Ints(half), g.Ints(long.MaxValue), g.Ints(-1)]);
            var rotated = g.Node("Concat", [g.Node("Neg", [x2]), x1], null, ("axis", -1L));
            return g.Node("Add", [g.Node("Mul", [x, cos]), g.Node("Mul", [rotated, sin])]);
        }
        int rep = t.NumAttentionHeads / t.NumKeyValueHeads;
        // repeat_interleave over heads: [B, kvH, S, D] → [B, kvH, 1, S, D] → expand [B, kvH, rep, S, D] → [B, H, S, D]
        string RepeatKv(string x) => rep == 1 ? x : g.Node("Reshape",
            [g.Node("Expand", [g.Node("Unsqueeze", [x, g.Ints(2)]), g.Ints(1, 1, rep, 1, 1)]), g.Ints(0, t.NumAttentionHeads, -1, t.HeadDim)]);

        var x = embeds;
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            string L = $"language_model.model.layers.{i}.";
            var h = RmsNorm(g, w, x, L + "input_layernorm", t.RmsNormEps);
            var q = Rope(SplitHeads(g, Linear(g, w, h, L + "self_attn.q_proj", t.AttentionBias), t.NumAttentionHeads, t.HeadDim));
            var k = Rope(SplitHeads(g, Linear(g, w, h, L + "self_attn.k_proj", t.AttentionBias), t.NumKeyValueHeads, t.HeadDim));
            var v = SplitHeads(g, Linear(g, w, h, L + "self_attn.v_proj", t.AttentionBias), t.NumKeyValueHeads, t.HeadDim);
            var presentK = g.Node("Concat", [past[i].k, k], $"present.{i}.key", ("axis", 2L));
            var presentV = g.Node("Concat", [past[i].v, v], $"present.{i}.value", ("axis", 2L));
            var o = MergeHeads(g, Attention(g, q, RepeatKv(presentK), RepeatKv(presentV), t.HeadDim, bias), t.NumAttentionHeads, t.HeadDim);
            x = g.Node("Add", [x, Linear(g, w, o, L + "self_attn.o_proj", false)]);
            h = RmsNorm(g, w, x, L + "post_attention_layernorm", t.RmsNormEps);
            var gate = Act(g, t.HiddenAct, Linear(g, w, h, L + "mlp.gate_proj", false));
            x = g.Node("Add", [x, Linear(g, w, g.Node("Mul", [gate, Linear(g, w, h, L + "mlp.up_proj", false)]), L + "mlp.down_proj", false)]);
        }
        x = RmsNorm(g, w, x, "language_model.model.norm", t.RmsNormEps);
        g.Output(Linear(g, w, x, "language_model.lm_head", false), "logits", Elem.Float, BatchAxis, "sequence_length", t.VocabSize);
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            g.DeclareOutput($"present.{i}.key", Elem.Float, BatchAxis, t.NumKeyValueHeads, "total_sequence_length", t.HeadDim);
            g.DeclareOutput($"present.{i}.value", Elem.Float, BatchAxis, t.NumKeyValueHeads, "total_sequence_length", t.HeadDim);
        }
        return g;
    }
}
