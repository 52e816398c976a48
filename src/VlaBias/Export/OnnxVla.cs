// Runs an export folder (OnnxExporter) with ONNX Runtime: the three graphs (onnx/…, or beside config.json in exports
// made before the Transformers.js layout), the tokenizer and the preprocessor beside them. It is an engine of the one
// decoder (Generation/IEngine.cs): prefill runs the prompt through vision_encoder, embed_tokens and the decoder, each step feeds one token per row with the KV cache passed from
// present.{i}.* back into past_key_values.{i}.*, and rows can be reordered (beam search). Image features are written
// over the image-token positions in row-major order, as LlavaModel does. Its prompts come from the folder's tokenizer
// files and vlatune_onnx.json (PromptFormat), read once at load.
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using VlaBias.Generation;
using VlaBias.Images;
using VlaBias.Model;
using VlaBias.Text;
using static TorchSharp.torch;

namespace VlaBias.Export;

/// <summary>The sizes an export declares in vlatune_onnx.json.</summary>
public sealed record OnnxExportInfo(int ImageTokenId, int ImageSeqLength, int ImageSize, int VocabSize, int HiddenSize,
    int NumLayers, int NumKeyValueHeads, int HeadDim)
{
    public static OnnxExportInfo Load(string path)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: file not found (not an ONNX export folder?)");
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new BadInputException($"{path}: expected a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new BadInputException($"{path}: not valid JSON ({e.Message})"); }
        int Int(string key)
        {
            try { return o[key]?.GetValue<int>() ?? throw new BadInputException($"{path}: missing required field '{key}'"); }
            catch (Exception e) when (e is InvalidOperationException or FormatException) { throw new BadInputException($"{path}: field '{key}': expected an integer"); }
        }
        return new OnnxExportInfo(Int("image_token_id"), Int("image_seq_length"), Int("image_size"), Int("vocab_size"), Int("hidden_size"),
            Int("num_layers"), Int("num_key_value_heads"), Int("head_dim"));
    }
}

public sealed class OnnxVla : IEngine, IDisposable
{
    private readonly InferenceSession vision, embed, decoder;
    private readonly RunOptions run = new();

    private OnnxVla(string dir, OnnxExportInfo info, VlaTokenizer tok, ImagePreprocessor images, SessionOptions options)
    {
        Folder = dir; Info = info; Tokenizer = tok; Images = images;
        Prompts = PromptFormat.ForFolder(dir, tok, info.ImageSeqLength);
        var (visionFile, embedFile, decoderFile) = OnnxExporter.GraphFiles(dir);
        vision = Open(visionFile, options);
        embed = Open(embedFile, options);
        decoder = Open(decoderFile, options);
    }

    public string Folder { get; }
    public OnnxExportInfo Info { get; }
    public VlaTokenizer Tokenizer { get; }
    public ImagePreprocessor Images { get; }
    public PromptFormat Prompts { get; }

    /// <summary>Loads an export folder. <paramref name="threads"/> = 0 lets ONNX Runtime choose.</summary>
    public static OnnxVla Load(string dir, int threads = 0)
    {
        if (!Directory.Exists(dir)) throw new BadInputException($"{dir}: ONNX export folder not found");
        var info = OnnxExportInfo.Load(Path.Combine(dir, OnnxExporter.InfoFile));
        var tok = VlaTokenizer.FromFolder(dir);
        if (tok.ImageTokenId != info.ImageTokenId)
            throw new BadInputException($"{dir}: tokenizer's image token id {tok.ImageTokenId} differs from {OnnxExporter.InfoFile} image_token_id {info.ImageTokenId}");
        var pre = PreprocessorConfig.Load(Path.Combine(dir, "preprocessor_config.json"), info.ImageSize);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (threads > 0) { options.IntraOpNumThreads = threads; options.InterOpNumThreads = 1; }
        return new OnnxVla(dir, info, tok, new ImagePreprocessor(pre), options);
    }

    private static InferenceSession Open(string path, SessionOptions options)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: file not found");
        try { return new InferenceSession(path, options); }
        catch (OnnxRuntimeException e) { throw new BadInputException($"{path}: ONNX Runtime cannot load it ({e.Message})", e); }
    }

    public Batch Batch(IReadOnlyList<int[]> sequences, IReadOnlyList<Tensor>? pixels) =>
        Model.Batch.LeftPadded(sequences, Tokenizer.PadId, pixels, ScalarType.Float32);

    /// <summary>Logits [B, L, V] of a whole prompt batch (one prefill, no cache kept).</summary>
    public Tensor Logits(Batch batch)
    {
        using var state = Start(batch, out var logits);
        return logits;
    }

    public Tensor LastLogits(Batch batch) => Logits(batch).select(1, -1);

    public IDecoding Prefill(Batch batch, int maxNewTokens, out Tensor lastLogits)
    {
        var state = Start(batch, out var logits);
        lastLogits = logits.select(1, -1);
        return state;
    }

    // ---- the three graphs ---------------------------------------------------------------------------------------

    /// <summary>image_features [B_img, N, C] as a flat array.</summary>
    public float[] ImageFeatures(Tensor pixels)
    {
        using var px = pixels.to_type(ScalarType.Float32).cpu().contiguous();
        using var input = OrtValue.CreateTensorValueFromMemory(px.data<float>().ToArray(), px.shape);
        using var outs = vision.Run(run, ["pixel_values"], [input], ["image_features"]);
        return outs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    private float[] EmbedIds(long[] ids, long b, long t)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(ids, [b, t]);
        using var outs = embed.Run(run, ["input_ids"], [input], ["inputs_embeds"]);
        return outs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>A decoding in progress: the KV cache (one array per layer and K/V) and the attention mask so far.</summary>
    public sealed class State(OnnxVla onnx) : IDecoding
    {
        internal float[][] Past = [];
        internal long[] Mask = [];
        public long Batch { get; internal set; }
        public long Length { get; internal set; }    // keys seen so far (cache length)
        public Tensor Step(long[] tokens) => onnx.Step(this, tokens).select(1, -1);
        public void Reorder(long[] rows) => onnx.Reorder(this, rows);
        public void Dispose() { Past = []; Mask = []; }
    }

    /// <summary>Prefills a prompt batch: returns the decoding state and the logits [B, L, V].</summary>
    public State Start(Batch batch, out Tensor logits)
    {
        long b = batch.Size, len = batch.Length;
        var ids = batch.InputIds.data<long>().ToArray();
        var embeds = EmbedIds(ids, b, len);
        if (batch.Pixels is not null) SpliceImages(embeds, ids, ImageFeatures(batch.Pixels));
        else if (ids.Contains(Info.ImageTokenId)) throw new BadInputException("the prompt has image tokens but no images were given");
        var state = new State(this)
        {
            Batch = b, Length = 0, Mask = batch.Mask.data<long>().ToArray(),
            Past = Enumerable.Range(0, 2 * Info.NumLayers).Select(_ => Array.Empty<float>()).ToArray(),
        };
        logits = Decode(state, embeds, len);
        return state;
    }

    /// <summary>Feeds one token per row (the mask grows by a column of ones); returns logits [B, 1, V].</summary>
    public Tensor Step(State state, long[] tokens)
    {
        long b = state.Batch, s = state.Length;
        var mask = new long[b * (s + 1)];
        for (long r = 0; r < b; r++)
        {
            Array.Copy(state.Mask, r * s, mask, r * (s + 1), s);
            mask[r * (s + 1) + s] = 1;
        }
        state.Mask = mask;
        return Decode(state, EmbedIds(tokens, b, 1), 1);
    }

    /// <summary>Keeps rows <paramref name="rows"/> of the cache and mask (beam search); the batch size may change.</summary>
    public void Reorder(State state, long[] rows)
    {
        long s = state.Length, perRow = Info.NumKeyValueHeads * s * Info.HeadDim;
        state.Past = state.Past.Select(p => Gather(p, rows, perRow)).ToArray();
        state.Mask = Gather(state.Mask, rows, s);
        state.Batch = rows.Length;
    }

    private static T[] Gather<T>(T[] source, long[] rows, long perRow)
    {
        var result = new T[rows.Length * perRow];
        for (int i = 0; i < rows.Length; i++) Array.Copy(source, rows[i] * perRow, result, i * perRow, perRow);
        return result;
    }

    /// <summary>Runs decoder_model on <paramref name="t"/> new positions; state.Mask already covers past + new.</summary>
    private Tensor Decode(State state, float[] embeds, long t)
    {
        long b = state.Batch, past = state.Length, total = past + t;
        if (state.Mask.Length != b * total) throw new InvalidOperationException($"mask has {state.Mask.Length} entries, expected {b}×{total}");
        // position ids as AttentionMasks.PositionIds: real tokens before each position (0 for padding)
        var positions = new long[b * t];
        for (long r = 0; r < b; r++)
        {
            long count = 0;
            for (long j = 0; j < total; j++)
            {
                count += state.Mask[r * total + j];
                if (j >= past) positions[r * t + j - past] = Math.Max(0, count - 1);
            }
        }
        var names = new List<string> { "inputs_embeds", "attention_mask", "position_ids" };
        var values = new List<OrtValue>
        {
            OrtValue.CreateTensorValueFromMemory(embeds, [b, t, Info.HiddenSize]),
            OrtValue.CreateTensorValueFromMemory(state.Mask, [b, total]),
            OrtValue.CreateTensorValueFromMemory(positions, [b, t]),
        };
        var outputNames = new List<string> { "logits" };
        long[] kvShape = [b, Info.NumKeyValueHeads, past, Info.HeadDim];
        for (int i = 0; i < Info.NumLayers; i++)
        {
            names.Add($"past_key_values.{i}.key"); names.Add($"past_key_values.{i}.value");
            values.Add(KvValue(state.Past[2 * i], kvShape)); values.Add(KvValue(state.Past[2 * i + 1], kvShape));
            outputNames.Add($"present.{i}.key"); outputNames.Add($"present.{i}.value");
        }
        try
        {
            using var outs = decoder.Run(run, names, values, outputNames);
            for (int i = 0; i < 2 * Info.NumLayers; i++) state.Past[i] = outs[i + 1].GetTensorDataAsSpan<float>().ToArray();
            state.Length = total;
            return tensor(outs[0].GetTensorDataAsSpan<float>().ToArray(), [b, t, Info.VocabSize]);
        }
        finally { foreach (var v in values) v.Dispose(); }
    }

    // An empty past is a tensor with a zero-length axis; ONNX Runtime wants real (if unused) memory behind it.
    private static OrtValue KvValue(float[] data, long[] shape) => data.Length == 0
        ? OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, shape)
        : OrtValue.CreateTensorValueFromMemory(data, shape);

    private void SpliceImages(float[] embeds, long[] ids, float[] features)
    {
        long c = Info.HiddenSize, slots = ids.Count(i => i == Info.ImageTokenId), given = features.Length / c;
        if (slots != given)
            throw new BadInputException($"the prompt has {slots} image tokens but the images give {given} features; expand <image> to {Info.ImageSeqLength} tokens per image");
        long next = 0;
        for (long p = 0; p < ids.Length; p++)
            if (ids[p] == Info.ImageTokenId) Array.Copy(features, next++ * c, embeds, p * c, c);
    }

    public void Dispose()
    {
        vision.Dispose(); embed.Dispose(); decoder.Dispose(); run.Dispose();
    }
}
