// The model sizes `vlatune bench` measures. `bench`: a LLaVA model where the language model's matmuls
// dominate (hidden 512, 8 layers, 8 heads over 4 key/value heads, SwiGLU 1408, vocabulary ~1000), trained on
// batch 8 × 128 positions. `tiny`: the shape of checkpoints/tiny-base (recipes/tiny-base-pretrain.yaml), for quick runs.
using VlaBias.Model;

namespace VlaBias.Bench;

/// <param name="Vocab">Vocabulary size including the 5 special tokens of the word-level tokenizer.</param>
/// <param name="Batch">Sequences per training step.</param>
/// <param name="Sequence">Positions per training sequence (image tokens included).</param>
/// <param name="LoraRank">LoRA rank on every q/k/v/o/gate/up/down projection of the language model (alpha = 2·rank).</param>
/// <param name="CaptionTokens">New tokens per caption in the captioning figures (forced: the stop token is suppressed until then).</param>
/// <param name="GenerationTokens">New tokens in the KV cache vs recomputation figure (forced).</param>
public sealed record BenchConfig(
    string Name,
    int Vocab,
    int ImageSize, int PatchSize, int VisionHidden, int VisionLayers, int VisionHeads,
    int Hidden, int Layers, int Heads, int KvHeads, int Intermediate,
    int Batch, int Sequence,
    int LoraRank = 8,
    int CaptionTokens = 16,
    int GenerationTokens = 32,
    int CaptionBatch = 32)
{
    public double LoraAlpha => 2.0 * LoraRank;

    public static readonly BenchConfig Bench = new("bench", Vocab: 1000,
        ImageSize: 48, PatchSize: 12, VisionHidden: 128, VisionLayers: 2, VisionHeads: 4,
        Hidden: 512, Layers: 8, Heads: 8, KvHeads: 4, Intermediate: 1408, Batch: 8, Sequence: 128);

    public static readonly BenchConfig Tiny = new("tiny", Vocab: 200,
        ImageSize: 48, PatchSize: 12, VisionHidden: 96, VisionLayers: 3, VisionHeads: 4,
        Hidden: 128, Layers: 4, Heads: 4, KvHeads: 2, Intermediate: 384, Batch: 8, Sequence: 64);

    public static BenchConfig Named(string name) => name switch
    {
        "bench" => Bench,
        "tiny" => Tiny,
        _ => throw new BadInputException($"--config: unknown value '{name}' (expected tiny, bench, {string.Join(", ", RealSizeConfig.Names)})"),
    };

    /// <summary>The LLaVA config of these sizes for a tokenizer of <paramref name="vocab"/> tokens.</summary>
    public LlavaConfig Llava(int vocab) => RandomCheckpoint.ClipLlama(vocab, ImageSize, PatchSize, VisionHidden, VisionLayers,
        Hidden, Layers, Heads, KvHeads, Intermediate, visionHeads: VisionHeads, maxPositions: Math.Max(512, Sequence + 64));

    /// <summary>Words of a closed vocabulary of <see cref="Vocab"/> tokens (5 specials + "describe the image ." + filler).</summary>
    public IReadOnlyList<string> Words()
    {
        var words = new List<string> { "describe", "the", "image", ".", "user", "assistant", ":" };
        for (int i = 0; words.Count < Vocab - 5; i++) words.Add($"w{i}");
        return words;
    }
}
