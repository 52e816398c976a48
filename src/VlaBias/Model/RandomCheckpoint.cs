// Small randomly initialised checkpoints in the same Hugging Face layout as real ones: used by tests, `vlatune bench`
// and as the starting point of `vlatune pretrain`. Nothing here is a separate toy model: it is LlavaModel with small sizes.
using System.Text.Json;
using VlaBias.Images;
using VlaBias.Text;

namespace VlaBias.Model;

public static class RandomCheckpoint
{
    /// <summary>A CLIP + Llama (grouped-query) config of the given sizes.</summary>
    public static LlavaConfig ClipLlama(int vocab, int imageSize = 32, int patch = 8, int visionHidden = 32, int visionLayers = 2,
        int hidden = 64, int layers = 2, int heads = 4, int kvHeads = 2, int intermediate = 128, int imageTokenIndex = 4,
        int visionHeads = 4, int maxPositions = 512) =>
        new(new VisionConfig("clip_vision_model", visionHidden, visionHidden * 2, visionLayers, visionHeads, imageSize, patch, 3, "quick_gelu", 1e-5),
            new TextConfig("llama", hidden, intermediate, layers, heads, kvHeads, hidden / heads, vocab, maxPositions, 1e-5, 10000.0, "silu",
                false, false, 2, 3, 0),
            imageTokenIndex, "gelu", -2, "default", true, "float32");

    /// <summary>Writes a random checkpoint (weights, config, closed-vocabulary tokenizer, preprocessor) to DIR.</summary>
    public static LlavaModel Write(string dir, IReadOnlyList<string> words, long seed = 0, double std = 0.02, Func<int, LlavaConfig>? config = null,
        string captionPrompt = "describe the image.")
    {
        Directory.CreateDirectory(dir);
        VlaTokenizer.WriteWordLevel(dir, words);
        var tok = VlaTokenizer.FromFolder(dir);
        var cfg = (config ?? (v => ClipLlama(v)))(tok.VocabSize) with { ImageTokenIndex = tok.ImageTokenId };
        cfg = cfg with { Text = cfg.Text with { BosTokenId = tok.BosId, EosTokenId = tok.EosId, PadTokenId = tok.PadId } };
        TorchSharp.torch.manual_seed(seed);
        var model = new LlavaModel(cfg);
        model.InitWeights(std, seed);
        model.SavePretrained(dir);
        var pre = PreprocessorConfig.ForSize(cfg.Vision.ImageSize);
        AtomicFile.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), pre.ToJson().ToJsonString(JsonFormat.Pretty));
        var tcPath = Path.Combine(dir, "tokenizer_config.json");
        var tc = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(tcPath))!.AsObject();
        tc["vlatune_caption_prompt"] = captionPrompt;
        AtomicFile.WriteAllText(tcPath, tc.ToJsonString(JsonFormat.Pretty));
        model.eval();
        return model;
    }
}
