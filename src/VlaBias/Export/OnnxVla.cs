// Runs an export folder (OnnxExporter) with ONNX Runtime: the three graphs (onnx/…, or beside config.json in exports
// made before the Transformers.js layout), the tokenizer and the preprocessor beside them. Decoding has TextGenerator's semantics (greedy and beam, left-padded batches, the same suppressed
// tokens, per-token log-probabilities), with the KV cache passed from present.{i}.* back into past_key_values.{i}.*.
// Image features are written over the image-token positions in row-major order, as LlavaModel.Embed does.
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using VlaBias.Generation;
using VlaBias.Images;
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

public sealed class OnnxVla : IDisposable
{
    private readonly InferenceSession vision, embed, decoder;
    private readonly RunOptions run = new();

    private OnnxVla(string dir, OnnxExportInfo info, VlaTokenizer tok, ImagePreprocessor images, SessionOptions options)
    {
        Folder = dir; Info = info; Tokenizer = tok; Images = images;
        var (visionFile, embedFile, decoderFile) = OnnxExporter.GraphFiles(dir);
        vision = Open(visionFile, options);
        embed = Open(embedFile, options);
        decoder = Open(decoderFile, options);
    }

    public string Folder { get; }
    public OnnxExportInfo Info { get; }
    public VlaTokenizer Tokenizer { get; }
    public ImagePreprocessor Images { get; }

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

    /// <summary>The caption instruction the checkpoint declares (tokenizer_config.json "vlatune_caption_prompt").</summary>
    public string CaptionPrompt
    {
        get
        {
            var path = Path.Combine(Folder, "tokenizer_config.json");
            if (File.Exists(path) && JsonNode.Parse(File.ReadAllText(path))?["vlatune_caption_prompt"]?.GetValue<string>() is { } s) return s;
            return "describe the image.";
        }
    }

    public int[] PromptIds(string prompt, bool withImage = true) => Tokenizer.EncodePrompt(prompt, withImage ? Info.ImageSeqLength : 0);

    public PromptBatch Batch(IReadOnlyList<int[]> sequences, IReadOnlyList<Tensor>? pixels) =>
        PromptBatch.LeftPadded(sequences, Tokenizer.PadId, pixels, ScalarType.Float32);

    /// <summary>Captions image files (each loaded and preprocessed; a bad file is a BadInputException naming it).</summary>
    public IReadOnlyList<Generated> Caption(IReadOnlyList<string> imagePaths, string? prompt, GenerationOptions options)
    {
        var pixels = imagePaths.Select(Images.Load).ToList();
        try { return Caption(pixels, prompt, options); }
        finally { foreach (var p in pixels) p.Dispose(); }
    }

    /// <summary>Captions preprocessed images [3, H, W], one prompt for all (default: <see cref="CaptionPrompt"/>).</summary>
    public IReadOnlyList<Generated> Caption(IReadOnlyList<Tensor> pixels, string? prompt, GenerationOptions options)
    {
        var ids = pixels.Select(_ => PromptIds(prompt ?? CaptionPrompt)).ToList();
        using var batch = Batch(ids, pixels);
        return Generate(batch, options);
    }

    /// <summary>Logits [B, L, V] of a whole prompt batch (one prefill, no cache kept).</summary>
    public Tensor Logits(PromptBatch batch)
    {
        using var state = Start(batch, out var logits);
        return logits;
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
    public sealed class State : IDisposable
    {
        internal float[][] Past = [];
        internal long[] Mask = [];
        public long Batch { get; internal set; }
        public long Length { get; internal set; }    // keys seen so far (cache length)
        public void Dispose() { Past = []; Mask = []; }
    }

    /// <summary>Prefills a prompt batch: returns the decoding state and the logits [B, L, V].</summary>
    public State Start(PromptBatch batch, out Tensor logits)
    {
        long b = batch.Size, len = batch.Length;
        var ids = batch.InputIds.data<long>().ToArray();
        var embeds = EmbedIds(ids, b, len);
        if (batch.Pixels is not null) SpliceImages(embeds, ids, ImageFeatures(batch.Pixels));
        else if (ids.Contains(Info.ImageTokenId)) throw new BadInputException("the prompt has image tokens but no images were given");
        var state = new State
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

    // ---- decoding (TextGenerator's semantics) ---------------------------------------------------------------------

    private int Eos => Tokenizer.EosId;
    private int[] Suppressed => new[] { Tokenizer.ImageTokenId, Tokenizer.PadId, Tokenizer.BosId }.Where(t => t != Eos).Distinct().ToArray();

    /// <summary>Row-wise log-softmax of logits [B, V] (last position), in float32 as TextGenerator computes it.</summary>
    private static float[] LogSoftmaxLast(Tensor logits)
    {
        using var scope = NewDisposeScope();
        return logits.select(1, -1).log_softmax(-1).data<float>().ToArray();
    }

    public IReadOnlyList<Generated> Generate(PromptBatch batch, GenerationOptions options) =>
        options.NumBeams > 1 ? Beam(batch, options) : Greedy(batch, options.MaxNewTokens, options.MinNewTokens);

    private IReadOnlyList<Generated> Greedy(PromptBatch batch, int maxNew, int minNew)
    {
        int b = (int)batch.Size, v = Info.VocabSize;
        var tokens = Enumerable.Range(0, b).Select(_ => new List<int>()).ToArray();
        var logps = Enumerable.Range(0, b).Select(_ => new List<float>()).ToArray();
        var done = new bool[b];
        var suppressed = Suppressed;
        int[] suppressedWithEos = [.. suppressed, Eos];
        using var state = Start(batch, out var logits);
        for (int step = 0; step < maxNew; step++)
        {
            var lp = LogSoftmaxLast(logits);
            logits.Dispose();
            var next = new long[b];
            bool all = true;
            for (int r = 0; r < b; r++)
            {
                int best = ArgMax(lp, r * v, v, step < minNew ? suppressedWithEos : suppressed);
                next[r] = best;
                if (done[r]) continue;
                if (best == Eos) { done[r] = true; continue; }
                tokens[r].Add(best); logps[r].Add(lp[r * v + best]);
                all = false;
            }
            if (all || step == maxNew - 1) break;
            logits = Step(state, next);
        }
        return Finish(tokens, logps);
    }

    private static int ArgMax(float[] lp, long offset, int count, int[] suppressed)
    {
        int best = -1;
        float bestValue = float.NegativeInfinity;
        for (int i = 0; i < count; i++)
        {
            if (suppressed.Contains(i)) continue;
            float x = lp[offset + i];
            if (best < 0 || x > bestValue) { best = i; bestValue = x; }
        }
        return best;
    }

    /// <summary>Beam search exactly as TextGenerator.Beam (B inputs × K beams, length-normalised at the end).</summary>
    private IReadOnlyList<Generated> Beam(PromptBatch batch, GenerationOptions o)
    {
        int k = o.NumBeams, b = (int)batch.Size, v = Info.VocabSize;
        var search = new BeamSearch(b, k, Eos, o.LengthPenalty);
        var suppressed = Suppressed;
        using var state = Start(batch, out var prefill);
        var lpRows = LogSoftmaxLast(prefill);
        prefill.Dispose();
        Reorder(state, Enumerable.Range(0, b * k).Select(i => (long)(i / k)).ToArray());
        var lp = new float[b * k * v];
        for (int r = 0; r < b * k; r++) Array.Copy(lpRows, (r / k) * v, lp, r * v, v);
        for (int step = 0; step < o.MaxNewTokens; step++)
        {
            foreach (var s in step < o.MinNewTokens ? [.. suppressed, Eos] : suppressed)
                for (int r = 0; r < b * k; r++) lp[r * v + s] = float.NegativeInfinity;
            bool live = search.Advance(lp, v, null, out var nextRows, out var nextTokens);
            if (!live || step == o.MaxNewTokens - 1) break;
            Reorder(state, nextRows);
            using var logits = Step(state, nextTokens);
            lp = LogSoftmaxLast(logits);
        }
        return search.Results(Tokenizer.Decode);
    }

    private List<Generated> Finish(List<int>[] tokens, List<float>[] logps) =>
        tokens.Select((t, i) => new Generated(t.ToArray(), logps[i].ToArray(), Tokenizer.Decode(t))).ToList();

    public void Dispose()
    {
        vision.Dispose(); embed.Dispose(); decoder.Dispose(); run.Dispose();
    }
}
