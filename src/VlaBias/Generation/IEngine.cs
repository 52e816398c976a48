// What the decoder (TextGenerator) needs from whatever computes logits: one forward over a whole batch (option
// scoring), and a decoding in progress that takes one token per row (Step) and keeps rows (Reorder, beam search).
// Implemented by the TorchSharp model with its KV cache (TorchEngine), by the same model recomputing the whole
// sequence at every step (RecomputeEngine, the reference the cache must equal), and by the ONNX Runtime graphs of an
// export folder (Export/OnnxVla.cs). Every engine has its PromptFormat, read when it was loaded.
// Logits come back as [B, V] tensors of the last position; the decoder turns them into log-probabilities in fp32.
using static TorchSharp.torch;
using VlaBias.Model;

namespace VlaBias.Generation;

public interface IEngine
{
    PromptFormat Prompts { get; }

    /// <summary>A left-padded prompt batch this engine takes; <paramref name="pixels"/> [3, H, W] are stacked in row order.</summary>
    Batch Batch(IReadOnlyList<int[]> sequences, IReadOnlyList<Tensor>? pixels);

    /// <summary>Logits [B, V] of the last position of every row of <paramref name="batch"/>, from one forward pass; nothing is kept.</summary>
    Tensor LastLogits(Batch batch);

    /// <summary>
    /// Runs the prompt batch and keeps what up to <paramref name="maxNewTokens"/> steps need; <paramref name="lastLogits"/>
    /// are the logits [B, V] of each row's last prompt position. The batch must outlive the decoding.
    /// </summary>
    IDecoding Prefill(Batch batch, int maxNewTokens, out Tensor lastLogits);
}

/// <summary>A decoding in progress (a KV cache and a mask, or the sequences so far).</summary>
public interface IDecoding : IDisposable
{
    /// <summary>Feeds one token per row; returns the logits [B, V] of the new position.</summary>
    Tensor Step(long[] tokens);

    /// <summary>Keeps rows <paramref name="rows"/> in that order (beam search); the row count may change.</summary>
    void Reorder(long[] rows);
}
