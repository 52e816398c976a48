// A loaded vision-language assistant: the model, its tokenizer and its image preprocessor, from one Hugging Face
// style checkpoint folder (config.json, model.safetensors[.index.json], tokenizer files, preprocessor_config.json).
// Also turns (prompt, image) lists into left-padded batches, the input every generator and scorer takes.
using VlaBias.Images;
using VlaBias.Model;
using VlaBias.Text;
using static TorchSharp.torch;

namespace VlaBias;

/// <summary>
/// Left-padded token ids [B, L], their mask [B, L] (1 = real), and the images: pixel values [B_img, 3, H, W], or
/// image features already computed by <see cref="LlavaModel.ImageFeatures"/> (reused across prompts about one image).
/// </summary>
public sealed record PromptBatch(Tensor InputIds, Tensor Mask, Tensor? Pixels, Tensor? Features = null) : IDisposable
{
    public long Size => InputIds.shape[0];
    public long Length => InputIds.shape[1];
    public void Dispose() { InputIds.Dispose(); Mask.Dispose(); Pixels?.Dispose(); Features?.Dispose(); }

    /// <summary>Left-pads token sequences with <paramref name="padId"/>; <paramref name="pixels"/> are stacked in row order.</summary>
    public static PromptBatch LeftPadded(IReadOnlyList<int[]> sequences, int padId, IReadOnlyList<Tensor>? pixels, ScalarType dtype, Tensor? features = null)
    {
        int len = sequences.Max(s => s.Length);
        var ids = new long[sequences.Count * len];
        var mask = new long[sequences.Count * len];
        for (int b = 0; b < sequences.Count; b++)
        {
            int pad = len - sequences[b].Length;
            for (int i = 0; i < len; i++)
            {
                bool real = i >= pad;
                ids[b * len + i] = real ? sequences[b][i - pad] : padId;
                mask[b * len + i] = real ? 1 : 0;
            }
        }
        Tensor? px = pixels is { Count: > 0 } ? stack(pixels).to_type(dtype) : null;
        return new PromptBatch(tensor(ids, [sequences.Count, len]), tensor(mask, [sequences.Count, len]), px, features);
    }
}

public sealed class Vla
{
    public Vla(LlavaModel model, VlaTokenizer tokenizer, ImagePreprocessor images, string? folder = null)
    {
        Model = model; Tokenizer = tokenizer; Images = images; Folder = folder;
    }

    public LlavaModel Model { get; }
    public VlaTokenizer Tokenizer { get; }
    public ImagePreprocessor Images { get; }
    public string? Folder { get; }
    public LlavaConfig Config => Model.Config;

    public static Vla Load(string dir, ScalarType dtype = ScalarType.Float32)
    {
        dir = Assets.Resolve(dir);
        var model = LlavaModel.FromPretrained(dir, dtype);
        var tok = VlaTokenizer.FromFolder(dir);
        if (tok.ImageTokenId != model.Config.ImageTokenIndex)
            throw new BadInputException($"{dir}: tokenizer's image token id {tok.ImageTokenId} differs from config.json image_token_index {model.Config.ImageTokenIndex}");
        var pre = PreprocessorConfig.Load(Path.Combine(dir, "preprocessor_config.json"), model.Config.Vision.ImageSize);
        return new Vla(model, tok, new ImagePreprocessor(pre), dir) { ImageTokens = ProcessorConfig.Load(dir).ImageTokens(model.Config, pre) };
    }

    private readonly int? imageTokens;

    /// <summary>Image tokens one &lt;image&gt; expands to: processor_config.json's count where it has one, else the model's.</summary>
    public int ImageTokens { get => imageTokens ?? Config.ImageSeqLength; init => imageTokens = value; }

    /// <summary>
    /// Prompt engineering: text put before every prompt (with a space), e.g. a fairness instruction; null = none.
    /// Words a closed-vocabulary tokenizer does not know become its unknown token (see Interventions).
    /// </summary>
    public string? PromptPrefix { get; set; }

    /// <summary>
    /// Prompt ids for one question or instruction about one image (template applied, image tokens expanded), with
    /// the prompt prefix and, when a soft prompt is attached to the model, its marker positions after BOS.
    /// </summary>
    public int[] PromptIds(string prompt, bool withImage = true)
    {
        if (!string.IsNullOrWhiteSpace(PromptPrefix)) prompt = PromptPrefix.Trim() + " " + prompt;
        var ids = Tokenizer.EncodePrompt(prompt, withImage ? ImageTokens : 0);
        return Model.SoftPrompt is { } soft ? soft.Insert(ids, Tokenizer.AddBos) : ids;
    }

    /// <summary>Left-pads token sequences into one batch; <paramref name="pixels"/> are stacked images in row order.</summary>
    public PromptBatch Batch(IReadOnlyList<int[]> sequences, IReadOnlyList<Tensor>? pixels) =>
        PromptBatch.LeftPadded(sequences, Tokenizer.PadId, pixels, Model.DType);

    /// <summary>Like <see cref="Batch(IReadOnlyList{int[]}, IReadOnlyList{Tensor}?)"/> with precomputed image features [B_img, N, C].</summary>
    public PromptBatch Batch(IReadOnlyList<int[]> sequences, IReadOnlyList<Tensor>? pixels, Tensor? features) =>
        PromptBatch.LeftPadded(sequences, Tokenizer.PadId, pixels, Model.DType, features);
}
