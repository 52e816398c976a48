// The real-size configs of `vlatune bench --config llava-interleave-0.5b | llava-1.5-7b`: random weights of exactly
// the published checkpoints' shapes, written once (bf16 safetensors, Hugging Face layout) to checkpoints/random/<name>/
// and loaded through Vla.Load like any real checkpoint. Shapes are those of the published config.json files:
//   llava-hf/llava-interleave-qwen-0.5b-hf: SigLIP so400m-patch14-384 as converted (26 layers, hidden 1152, MLP 4304,
//     16 heads, 384 px, patch 14, last layer, strategy "full": 729 image tokens) + Qwen1.5-0.5B-Chat (model_type qwen2:
//     hidden 1024, 24 layers, 16 heads = 16 key/value heads, MLP 2816, vocabulary 152000, tied embeddings, rope 1e6).
//   llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 (24 layers, hidden 1024, MLP 4096, 16 heads, layer −2, strategy
//     "default": 576 image tokens) + vicuna-7b-v1.5 (Llama defaults: hidden 4096, 32 layers, 32 heads, MLP 11008,
//     vocabulary 32064, untied lm_head) with the 2-layer GELU projector 1024 → 4096 → 4096.
// The tokenizer is a word-level one of exactly the vocabulary size (special-token ids differ from the real ones; the
// tensor shapes and the image-token count do not). PublishedConfigTests holds these configs to the published files
// (tests/VlaBias.Tests/Fixtures/hf_configs) as LlavaConfig.Load reads them.
using System.Text.Json.Nodes;
using Serilog;
using VlaBias.Images;
using VlaBias.Model;
using VlaBias.Text;
using static TorchSharp.torch;

namespace VlaBias.Bench;

/// <param name="Mirrors">The Hugging Face checkpoint whose shapes these are.</param>
/// <param name="ProbeImages">Images of the naive probing figure (one full prompt per question).</param>
/// <param name="ProbeQuestions">Yes/no questions per image of the naive probing figure.</param>
/// <param name="CaptionTokens">New tokens per caption (forced: the stop token is suppressed until then).</param>
/// <param name="LoraF32">Whether the f32 LoRA step is measured (false where it does not fit in 24 GB).</param>
/// <param name="GradientCheckpointing">Recompute each decoder layer in the LoRA step's backward instead of keeping its activations.</param>
public sealed record RealSizeConfig(
    string Name, string Mirrors, LlavaConfig Llava, PreprocessorConfig Preprocessor,
    int ProbeImages, int ProbeQuestions, int CaptionTokens, bool LoraF32, bool GradientCheckpointing,
    int PairsPerStep = 1, int ProbesPerPair = 4)
{
    public const string RootDefault = "checkpoints/random";

    public static readonly string[] Names = ["llava-interleave-0.5b", "llava-1.5-7b"];

    public static readonly RealSizeConfig InterleaveQwen05B = new("llava-interleave-0.5b", "llava-hf/llava-interleave-qwen-0.5b-hf",
        new LlavaConfig(
            new VisionConfig("siglip_vision_model", HiddenSize: 1152, IntermediateSize: 4304, NumHiddenLayers: 26, NumAttentionHeads: 16,
                ImageSize: 384, PatchSize: 14, NumChannels: 3, HiddenAct: "gelu_pytorch_tanh", LayerNormEps: 1e-6),
            new TextConfig("qwen2", HiddenSize: 1024, IntermediateSize: 2816, NumHiddenLayers: 24, NumAttentionHeads: 16, NumKeyValueHeads: 16,
                HeadDim: 64, VocabSize: 152000, MaxPositionEmbeddings: 32768, RmsNormEps: 1e-6, RopeTheta: 1000000.0, HiddenAct: "silu",
                TieWordEmbeddings: true, AttentionBias: true, BosTokenId: null, EosTokenId: null, PadTokenId: null),
            ImageTokenIndex: 0, ProjectorHiddenAct: "gelu", VisionFeatureLayer: -1, VisionFeatureSelectStrategy: "full", ProjectorBias: true,
            TorchDtype: "bfloat16"),
        // SigLIP's preprocessing: resize to the square size, no crop, mean and std 0.5
        new PreprocessorConfig(true, null, 384, 384, false, 384, 384, true, 1 / 255.0, true, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], false),
        ProbeImages: 4, ProbeQuestions: 48, CaptionTokens: 8, LoraF32: true, GradientCheckpointing: true);

    public static readonly RealSizeConfig Llava15_7B = new("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf",
        new LlavaConfig(
            new VisionConfig("clip_vision_model", HiddenSize: 1024, IntermediateSize: 4096, NumHiddenLayers: 24, NumAttentionHeads: 16,
                ImageSize: 336, PatchSize: 14, NumChannels: 3, HiddenAct: "quick_gelu", LayerNormEps: 1e-5),
            new TextConfig("llama", HiddenSize: 4096, IntermediateSize: 11008, NumHiddenLayers: 32, NumAttentionHeads: 32, NumKeyValueHeads: 32,
                HeadDim: 128, VocabSize: 32064, MaxPositionEmbeddings: 4096, RmsNormEps: 1e-5, RopeTheta: 10000.0, HiddenAct: "silu",
                TieWordEmbeddings: false, AttentionBias: false, BosTokenId: null, EosTokenId: null, PadTokenId: null),
            ImageTokenIndex: 0, ProjectorHiddenAct: "gelu", VisionFeatureLayer: -2, VisionFeatureSelectStrategy: "default", ProjectorBias: true,
            TorchDtype: "bfloat16"),
        PreprocessorConfig.ForSize(336),
        // a subset: one full 7B prompt is ~600 positions, so 1 image × 4 questions; prompts/s is what is compared
        ProbeImages: 1, ProbeQuestions: 4, CaptionTokens: 4, LoraF32: false, GradientCheckpointing: true);

    public static bool IsName(string name) => Names.Contains(name);

    public static RealSizeConfig Named(string name) => name switch
    {
        "llava-interleave-0.5b" => InterleaveQwen05B,
        "llava-1.5-7b" => Llava15_7B,
        _ => throw new BadInputException($"--config: unknown value '{name}' (expected {string.Join(", ", Names)})"),
    };

    /// <summary>Parameters of the whole model (vision tower, projector, language model; a tied lm_head counted once).</summary>
    public long ParameterCount()
    {
        var v = Llava.Vision;
        var t = Llava.Text;
        long C = v.HiddenSize, I = v.IntermediateSize;
        long visionLayer = 4 * (C * C + C) + 2 * C + C * I + I + I * C + C + 2 * C;
        long vision = v.NumHiddenLayers * visionLayer + (long)v.NumChannels * v.PatchSize * v.PatchSize * C + C
            + (v.NumPatches + (v.IsSiglip ? 0 : 1)) * C + (v.IsSiglip ? 2 * C : 4 * C); // conv bias (SigLIP) or CLS (CLIP); positions; norms
        long H = t.HiddenSize, hd = (long)t.NumAttentionHeads * t.HeadDim, kvd = (long)t.NumKeyValueHeads * t.HeadDim;
        long textLayer = H * hd + 2 * H * kvd + hd * H + 3 * H * t.IntermediateSize + 2 * H + (t.AttentionBias ? hd + 2 * kvd : 0);
        long text = t.NumHiddenLayers * textLayer + H + (long)t.VocabSize * H * (t.TieWordEmbeddings ? 1 : 2);
        long projector = C * H + H + H * H + H;
        return vision + projector + text;
    }

    /// <summary>Words of a closed vocabulary of exactly <see cref="TextConfig.VocabSize"/> tokens (5 specials + prompt words + filler).</summary>
    public IReadOnlyList<string> Words()
    {
        var words = new List<string> { "describe", "the", "image", ".", "user", "assistant", ":", "is", "this", "person", "a", "yes", "no", "?", "answer" };
        for (int i = 0; words.Count < Llava.Text.VocabSize - 5; i++) words.Add($"w{i}");
        return words;
    }

    /// <summary>The i-th yes/no probe question (distinct words, so every prompt differs after the image).</summary>
    public static string Question(int i) => $"is this person a w{i} ? answer yes or no .";

    /// <summary>
    /// The checkpoint folder of this config under <paramref name="root"/>, written (bf16) when missing or when its
    /// config.json differs from this config's; returns the folder and whether it was written now.
    /// </summary>
    public (string Dir, bool Written) Ensure(string root, long seed = 0)
    {
        string dir = Path.Combine(root, Name);
        var expected = Expected(dir);
        if (expected is not null) return (dir, false);
        Directory.CreateDirectory(root);
        string temporary = Path.Combine(root, $"{Name}.tmp-{Guid.NewGuid():N}");
        Log.Information("bench: writing random {Name} weights ({Params:F2} B parameters, ~{Gb:F1} GB bf16) to {Dir}", Name, ParameterCount() / 1e9, ParameterCount() * 2 / 1e9, dir);
        try
        {
            Write(temporary, seed);
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
            Directory.Move(temporary, dir);
        }
        finally { if (Directory.Exists(temporary)) Directory.Delete(temporary, true); }
        return (dir, true);
    }

    /// <summary>The folder's config when it is complete and matches this config (shapes and architecture), else null.</summary>
    private LlavaConfig? Expected(string dir)
    {
        string cfgPath = Path.Combine(dir, "config.json"), marker = Path.Combine(dir, MarkerFile);
        if (!File.Exists(cfgPath) || !File.Exists(marker)) return null;
        LlavaConfig found;
        try { found = LlavaConfig.Load(cfgPath); }
        catch (BadInputException) { return null; }
        var want = Llava with { ImageTokenIndex = found.ImageTokenIndex, TorchDtype = found.TorchDtype,
            Text = Llava.Text with { BosTokenId = found.Text.BosTokenId, EosTokenId = found.Text.EosTokenId, PadTokenId = found.Text.PadTokenId } };
        return want.ToJson().ToJsonString() == found.ToJson().ToJsonString() && File.ReadAllText(marker).Trim() == Name ? found : null;
    }

    private const string MarkerFile = "vlatune_random_checkpoint.txt";

    /// <summary>Writes the folder: tokenizer, bf16 weights built in bf16 (never an f32 copy), config, preprocessor; the marker last.</summary>
    internal void Write(string dir, long seed)
    {
        Directory.CreateDirectory(dir);
        VlaTokenizer.WriteWordLevel(dir, Words());
        var tok = VlaTokenizer.FromFolder(dir);
        if (tok.VocabSize != Llava.Text.VocabSize)
            throw new InvalidOperationException($"{Name}: the tokenizer has {tok.VocabSize} tokens, the config {Llava.Text.VocabSize}");
        var cfg = Llava with { ImageTokenIndex = tok.ImageTokenId, Text = Llava.Text with { BosTokenId = tok.BosId, EosTokenId = tok.EosId, PadTokenId = tok.PadId } };
        using (var model = RandomCheckpoint.InitializeAndSave(dir, cfg, Preprocessor, seed, 0.02, "describe the image.", ScalarType.BFloat16)) { }
        AtomicFile.WriteAllText(Path.Combine(dir, MarkerFile), Name + "\n");
    }

    public JsonObject ToJson() => new()
    {
        ["name"] = Name, ["mirrors"] = Mirrors, ["parameters"] = ParameterCount(),
        ["image_tokens"] = Llava.ImageSeqLength, ["vision"] = $"{Llava.Vision.ModelType} {Llava.Vision.NumHiddenLayers}×{Llava.Vision.HiddenSize}",
        ["text"] = $"{Llava.Text.ModelType} {Llava.Text.NumHiddenLayers}×{Llava.Text.HiddenSize}, vocab {Llava.Text.VocabSize}",
        ["probe_images"] = ProbeImages, ["probe_questions"] = ProbeQuestions, ["caption_tokens"] = CaptionTokens,
        ["pairs_per_step"] = PairsPerStep, ["probes_per_pair"] = ProbesPerPair, ["gradient_checkpointing"] = GradientCheckpointing,
    };
}
