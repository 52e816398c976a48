// How text becomes a prompt, read once when a checkpoint or an export folder is loaded and shared by every engine:
// the tokenizer's template with <image> expanded to the model's image-token count, the checkpoint's caption
// instruction (tokenizer_config.json "vlatune_caption_prompt"), an optional text prefix (prompt engineering), an
// optional soft prompt whose positions follow BOS while it is enabled, and the tokens decoding never chooses.
// In: an instruction or question. Out: token ids for one row of a batch.
using System.Text.Json.Nodes;
using VlaBias.Adapters;
using VlaBias.Text;

namespace VlaBias.Generation;

public sealed record PromptFormat(VlaTokenizer Tokenizer, int ImageTokens, string CaptionPrompt)
{
    public const string DefaultCaptionPrompt = "describe the image.";

    /// <summary>
    /// Text put before every prompt (with a space), e.g. a fairness instruction; null = none. Words a closed-vocabulary
    /// tokenizer does not know become its unknown token (see Methods/Interventions.cs).
    /// </summary>
    public string? Prefix { get; init; }

    /// <summary>A prompt-tuning prefix whose positions follow BOS while it is enabled; null = none.</summary>
    public SoftPrompt? Soft { get; init; }

    /// <summary>Tokens never generated: the image placeholder, padding and BOS (their log-probs are still reported as the model gives them).</summary>
    public long[] Suppressed { get; } = new long[] { Tokenizer.ImageTokenId, Tokenizer.PadId, Tokenizer.BosId }.Where(t => t != Tokenizer.EosId).Distinct().ToArray();

    public int EosId => Tokenizer.EosId;
    public int PadId => Tokenizer.PadId;

    /// <summary>The soft-prompt rows a batch of these prompts carries (null when there is none or it is disabled).</summary>
    public TorchSharp.torch.Tensor? VirtualTokens => Soft is { Enabled: true } s ? s.Embeddings : null;

    /// <summary>Prompt ids for one question or instruction about one image: template applied, image tokens expanded, prefix and soft-prompt positions added.</summary>
    public int[] Ids(string prompt, bool withImage = true)
    {
        if (!string.IsNullOrWhiteSpace(Prefix)) prompt = Prefix.Trim() + " " + prompt;
        var ids = Tokenizer.EncodePrompt(prompt, withImage ? ImageTokens : 0);
        return Soft is { Enabled: true } soft ? soft.Insert(ids, Tokenizer.AddBos) : ids;
    }

    public string Decode(IReadOnlyList<int> tokens) => Tokenizer.Decode(tokens);

    /// <summary>The prompts of a checkpoint or export folder (its caption instruction, or the default one).</summary>
    public static PromptFormat ForFolder(string? folder, VlaTokenizer tokenizer, int imageTokens) =>
        new(tokenizer, imageTokens, ReadCaptionPrompt(folder));

    /// <summary>tokenizer_config.json "vlatune_caption_prompt" of <paramref name="folder"/>, or "describe the image.".</summary>
    public static string ReadCaptionPrompt(string? folder)
    {
        var path = folder is null ? null : Path.Combine(folder, "tokenizer_config.json");
        if (path is not null && File.Exists(path) && JsonNode.Parse(File.ReadAllText(path))?["vlatune_caption_prompt"]?.GetValue<string>() is { } s) return s;
        return DefaultCaptionPrompt;
    }
}
