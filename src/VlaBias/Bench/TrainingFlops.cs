// FLOPs of one training step of the language model, for model FLOP utilisation (MFU = FLOPs / step time / roof).
//
// N = parameters of every matmul a token passes through: per layer q, k, v, o (C·H·D + 2·C·kvH·D + H·D·C) and
// gate, up, down (3·C·I); plus lm_head (C·V). The embedding lookup is not a matmul. T = sequence length, L layers.
// Attention scores per token per layer, forward: Q·Kᵀ and P·V over all T keys, 2·2·H·D·T (the PaLM convention: the
// causal half that a kernel may skip is still counted).
//
//   model FLOPs (the "6NT" convention, PaLM appendix B):  tokens · (6·N + 12·L·H·D·T)
//       forward 2N, backward 4N (activation gradients 2N + weight gradients 2N); attention 4 forward + 8 backward.
//   LoRA, counted honestly:                               tokens · (4·N + 12·L·H·D·T + 6·N_lora)
//       the frozen base still runs forward (2N) and passes activation gradients back (2N) but computes no weight
//       gradients; the adapters (N_lora = Σ r·(in + out)) cost 2 forward + 4 backward per parameter.
// For full fine-tuning the two counts are the same.
using VlaBias.Model;

namespace VlaBias.Bench;

public static class TrainingFlops
{
    /// <summary>Parameters of the language model's matmuls (projections of every layer and lm_head).</summary>
    public static long MatmulParams(TextConfig c)
    {
        long C = c.HiddenSize, hd = (long)c.NumAttentionHeads * c.HeadDim, kvd = (long)c.NumKeyValueHeads * c.HeadDim, I = c.IntermediateSize;
        long perLayer = C * hd + 2 * C * kvd + hd * C + 3 * C * I;
        return c.NumHiddenLayers * perLayer + C * c.VocabSize;
    }

    /// <summary>Attention-score FLOPs per token of a training step (forward + backward) over <paramref name="seq"/> keys.</summary>
    public static double AttentionPerToken(TextConfig c, long seq) => 12.0 * c.NumHiddenLayers * c.NumAttentionHeads * c.HeadDim * seq;

    /// <summary>The 6NT-convention FLOPs of a step of <paramref name="batch"/> × <paramref name="seq"/> tokens.</summary>
    public static double Model(TextConfig c, long batch, long seq) =>
        batch * seq * (6.0 * MatmulParams(c) + AttentionPerToken(c, seq));

    /// <summary>FLOPs a LoRA step really does: base forward + activation gradients, adapters forward + backward.</summary>
    public static double LoraHonest(TextConfig c, long batch, long seq, long loraParams) =>
        batch * seq * (4.0 * MatmulParams(c) + AttentionPerToken(c, seq) + 6.0 * loraParams);
}
