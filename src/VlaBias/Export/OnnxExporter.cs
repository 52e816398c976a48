// ONNX export of a (merged) LLaVA model in the community three-graph layout:
//   vision_encoder.onnx  pixel_values [batch, 3, H, W] → image_features [batch, N, C_text] (after the projector)
//   embed_tokens.onnx    input_ids [batch, seq] → inputs_embeds [batch, seq, C_text]
//   decoder_model.onnx   inputs_embeds, attention_mask [batch, past+seq], position_ids [batch, seq],
//                        past_key_values.{i}.key/value [batch, kv_heads, past, head_dim]
//                        → logits [batch, seq, vocab], present.{i}.key/value [batch, kv_heads, past+seq, head_dim]
// plus vlatune_onnx.json (prompt template, special tokens, sizes) and the checkpoint's tokenizer, preprocessor and
// config files, so the folder is self-contained. Initializers keep Hugging Face's parameter names; Linear weights are
// stored transposed ([in, out]) so each projection is one MatMul. Every graph spells the model's math with basic ops (opset 17), the
// same math as Layers.cs / VisionTower.cs / LanguageModel.cs, so ONNX Runtime and TorchSharp agree to float rounding.
using System.Text.Json;
using System.Text.Json.Nodes;
using VlaBias.Model;
using static TorchSharp.torch;
using Elem = VlaBias.Export.OnnxGraphBuilder.Elem;

namespace VlaBias.Export;

/// <summary>What <see cref="OnnxExporter.Export"/> wrote.</summary>
public sealed record OnnxExportResult(string Folder, IReadOnlyList<string> Files, long WeightBytes, bool ExternalData);

public static class OnnxExporter
{
    public const string InfoFile = "vlatune_onnx.json";
    public const string VisionFile = "vision_encoder.onnx";
    public const string EmbedFile = "embed_tokens.onnx";
    public const string DecoderFile = "decoder_model.onnx";

    /// <summary>Files of a checkpoint folder copied next to the graphs (those that exist).</summary>
    public static readonly string[] CheckpointFiles =
        ["config.json", "preprocessor_config.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model", "vocab.json",
         "merges.txt", "tokenizer.json", "special_tokens_map.json", "added_tokens.json", "generation_config.json"];

    /// <summary>Exports a loaded model (with its tokenizer files from <paramref name="vla"/>'s folder) to <paramref name="outDir"/>.</summary>
    public static OnnxExportResult Export(Vla vla, string outDir, long externalThreshold = OnnxGraphBuilder.DefaultExternalThreshold)
    {
        var result = Export(vla.Model, outDir, externalThreshold);
        var files = result.Files.ToList();
        if (vla.Folder is not null)
            foreach (var name in CheckpointFiles)
            {
                var src = Path.Combine(vla.Folder, name);
                if (name == "config.json" || !File.Exists(src)) continue;
                File.Copy(src, Path.Combine(outDir, name), overwrite: true);
                files.Add(name);
            }
        var tok = vla.Tokenizer;
        var info = Info(vla.Model.Config);
        info["prompt_template"] = tok.PromptTemplate;
        info["add_bos"] = tok.AddBos;
        info["special_tokens"] = new JsonObject
        {
            ["bos"] = Token(tok.BosToken, tok.BosId), ["eos"] = Token(tok.EosToken, tok.EosId),
            ["pad"] = Token(tok.PadToken, tok.PadId), ["image"] = Token(tok.ImageToken, tok.ImageTokenId),
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, InfoFile), info.ToJsonString(Json));
        return result with { Files = files };
    }

    private static JsonObject Token(string text, int id) => new() { ["content"] = text, ["id"] = id };

    /// <summary>
    /// Writes the three graphs, config.json and a vlatune_onnx.json without tokenizer fields for <paramref name="model"/>.
    /// <paramref name="externalThreshold"/>: above this many bytes of weights a graph keeps them in one external .data file.
    /// </summary>
    public static OnnxExportResult Export(LlavaModel model, string outDir, long externalThreshold = OnnxGraphBuilder.DefaultExternalThreshold)
    {
        Directory.CreateDirectory(outDir);
        var c = model.Config;
        var weights = model.state_dict();
        if (c.Text.TieWordEmbeddings) weights["language_model.lm_head.weight"] = weights["language_model.model.embed_tokens.weight"];
        var files = new List<string>();
        long bytes = 0;
        bool external = false;
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
                if (data is not null) { files.Add(Path.GetFileName(data)); external = true; }
            }
        }
        AtomicFile.WriteAllText(Path.Combine(outDir, "config.json"), c.ToJson().ToJsonString(Json));
        files.Add("config.json");
        AtomicFile.WriteAllText(Path.Combine(outDir, InfoFile), Info(c).ToJsonString(Json));
        files.Add(InfoFile);
        return new OnnxExportResult(outDir, files, bytes, external);
    }

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string Producer => typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "0";

    private static JsonObject Info(LlavaConfig c) => new()
    {
        ["format"] = "vlatune-onnx",
        ["version"] = 1,
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
        var pixels = g.Input("pixel_values", Elem.Float, "batch", v.NumChannels, v.ImageSize, v.ImageSize);
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
        g.Output(x, "image_features", Elem.Float, "batch", c.ImageSeqLength, c.Text.HiddenSize);
        return g;
    }

    // ---- embed_tokens.onnx --------------------------------------------------------------------------------------

    private static OnnxGraphBuilder Embed(LlavaConfig c, IDictionary<string, Tensor> w)
    {
        var g = new OnnxGraphBuilder("embed_tokens");
        var ids = g.Input("input_ids", Elem.Int64, "batch", "sequence_length");
        const string name = "language_model.model.embed_tokens.weight";
        g.Output(g.Node("Gather", [g.Weight(name, w[name]), ids], null, ("axis", 0L)), "inputs_embeds", Elem.Float, "batch", "sequence_length", c.Text.HiddenSize);
        return g;
    }

    // ---- decoder_model.onnx -------------------------------------------------------------------------------------

    private static OnnxGraphBuilder Decoder(LlavaConfig c, IDictionary<string, Tensor> w)
    {
        var t = c.Text;
        var g = new OnnxGraphBuilder("decoder_model");
        var embeds = g.Input("inputs_embeds", Elem.Float, "batch", "sequence_length", t.HiddenSize);
        var keyMask = g.Input("attention_mask", Elem.Int64, "batch", "total_sequence_length");
        var positions = g.Input("position_ids", Elem.Int64, "batch", "sequence_length");
        var past = Enumerable.Range(0, t.NumHiddenLayers).Select(i => (
            k: g.Input($"past_key_values.{i}.key", Elem.Float, "batch", t.NumKeyValueHeads, "past_sequence_length", t.HeadDim),
            v: g.Input($"past_key_values.{i}.value", Elem.Float, "batch", t.NumKeyValueHeads, "past_sequence_length", t.HeadDim))).ToArray();

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
        g.Output(Linear(g, w, x, "language_model.lm_head", false), "logits", Elem.Float, "batch", "sequence_length", t.VocabSize);
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            g.DeclareOutput($"present.{i}.key", Elem.Float, "batch", t.NumKeyValueHeads, "total_sequence_length", t.HeadDim);
            g.DeclareOutput($"present.{i}.value", Elem.Float, "batch", t.NumKeyValueHeads, "total_sequence_length", t.HeadDim);
        }
        return g;
    }
}
