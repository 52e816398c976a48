// The one call into a LlavaModel (Microsoft.ML.GenAI's CausalLMModelInput/Output, nanoGPT's forward(idx, targets)):
// a ModelInput record in, a ModelOutput record out. Callers never assemble a forward from parts.
// In: token ids [B, T] (or inputs_embeds [B, T, C]) with the key mask [B, start+T] (1 = real, 0 = padding) over
// everything seen so far; the images as pixel values [B_img, 3, H, W] or image features [B_img, N, C] already
// computed; soft-prompt rows [N_v, C] written over the VirtualTokenId positions; an optional KV cache with the column
// the new tokens start at; which logits to compute; optional labels [B, T] (the next token, -100 = not scored).
// Out: the final hidden states [B, T, C] (after the last norm), logits [B, T, V] (All) or [B, 1, V] (Last: lm_head on
// the last position only, what decoding and option scoring read) or none, and the mean cross-entropy against the
// labels when they are given.
using static TorchSharp.torch;

namespace VlaBias.Model;

/// <summary>Which positions lm_head runs on.</summary>
public enum LogitsMode { All, Last, None }

public sealed record ModelInput
{
    /// <summary>[B, T] token ids: image tokens where image features go, <see cref="LlavaModel.VirtualTokenId"/> where soft-prompt rows go.</summary>
    public Tensor? InputIds { get; init; }
    /// <summary>[B, T, C] instead of ids (no image or soft-prompt splicing).</summary>
    public Tensor? InputsEmbeds { get; init; }
    /// <summary>[B, Start + T]; null = every position real.</summary>
    public Tensor? Mask { get; init; }
    /// <summary>[B, T]; null = the count of real tokens before each position.</summary>
    public Tensor? Positions { get; init; }
    public Tensor? Pixels { get; init; }
    public Tensor? ImageFeatures { get; init; }
    public Tensor? VirtualTokens { get; init; }
    public IKvCache? Cache { get; init; }
    /// <summary>The cache column of the first new token (the number of positions already in the cache).</summary>
    public long Start { get; init; }
    public LogitsMode Logits { get; init; } = LogitsMode.All;
    /// <summary>[B, T]; needs <see cref="LogitsMode.All"/>.</summary>
    public Tensor? Labels { get; init; }
}

public sealed record ModelOutput(Tensor Hidden, Tensor? Logits, Tensor? Loss)
{
    /// <summary>Logits [B, V] of the last position (of either logits mode).</summary>
    public Tensor LastLogits => (Logits ?? throw new InvalidOperationException("the forward ran with LogitsMode.None")).select(1, -1);
}
