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

    /// <summary>A SigLIP + Qwen2 config (q/k/v biases, tied embeddings, as llava-interleave-qwen) of the given sizes.</summary>
    public static LlavaConfig SiglipQwen2(int vocab, int imageSize = 32, int patch = 8, int visionHidden = 32, int visionLayers = 2,
        int hidden = 64, int layers = 2, int heads = 4, int kvHeads = 2, int intermediate = 128, int imageTokenIndex = 4,
        int visionHeads = 4, int maxPositions = 1024) =>
        new(new VisionConfig("siglip_vision_model", visionHidden, visionHidden * 2, visionLayers, visionHeads, imageSize, patch, 3, "gelu_pytorch_tanh", 1e-6),
            new TextConfig("qwen2", hidden, intermediate, layers, heads, kvHeads, hidden / heads, vocab, maxPositions, 1e-6, 1000000.0, "silu",
                true, true, null, null, null),
            imageTokenIndex, "gelu", -1, "full", true, "float32");

    /// <summary>
    /// Writes a random SigLIP + Qwen2 checkpoint with a Qwen2-style byte-level BPE tokenizer (vocab.json + merges.txt,
    /// ChatML special tokens, &lt;image&gt;) to DIR. The merges spell out <paramref name="words"/> (with and without a
    /// leading space) so common words are single tokens; anything else falls back to bytes.
    /// </summary>
    public static LlavaModel WriteQwen2Siglip(string dir, IReadOnlyList<string> words, long seed = 0, double std = 0.02,
        string captionPrompt = "Describe the image.")
    {
        Directory.CreateDirectory(dir);
        ByteLevelBpe.Write(dir, words);
        var tok = VlaTokenizer.FromFolder(dir);
        var cfg = SiglipQwen2(tok.VocabSize) with { ImageTokenIndex = tok.ImageTokenId };
        cfg = cfg with { Text = cfg.Text with { EosTokenId = tok.EosId, PadTokenId = tok.PadId } };
        // SigLIP's preprocessing: resize to the square size (no crop), mean and std 0.5
        var pre = new PreprocessorConfig(true, null, cfg.Vision.ImageSize, cfg.Vision.ImageSize, false, cfg.Vision.ImageSize, cfg.Vision.ImageSize,
            true, 1 / 255.0, true, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], false);
        return InitializeAndSave(dir, cfg, pre, seed, std, captionPrompt);
    }

    /// <summary>Writes a random checkpoint (weights, config, closed-vocabulary tokenizer, preprocessor) to DIR.</summary>
    public static LlavaModel Write(string dir, IReadOnlyList<string> words, long seed = 0, double std = 0.02, Func<int, LlavaConfig>? config = null,
        string captionPrompt = "describe the image.")
    {
        Directory.CreateDirectory(dir);
        VlaTokenizer.WriteWordLevel(dir, words);
        var tok = VlaTokenizer.FromFolder(dir);
        var cfg = (config ?? (v => ClipLlama(v)))(tok.VocabSize) with { ImageTokenIndex = tok.ImageTokenId };
        cfg = cfg with { Text = cfg.Text with { BosTokenId = tok.BosId, EosTokenId = tok.EosId, PadTokenId = tok.PadId } };
        return InitializeAndSave(dir, cfg, PreprocessorConfig.ForSize(cfg.Vision.ImageSize), seed, std, captionPrompt);
    }

    /// <summary>
    /// Initialises a model of <paramref name="cfg"/> in <paramref name="dtype"/> (built in that dtype, so a 7B model never
    /// exists in f32), saves it with its preprocessor config, and records the caption prompt in tokenizer_config.json
    /// (written beforehand by the tokenizer writer).
    /// </summary>
    internal static LlavaModel InitializeAndSave(string dir, LlavaConfig cfg, PreprocessorConfig pre, long seed, double std, string captionPrompt,
        TorchSharp.torch.ScalarType dtype = TorchSharp.torch.ScalarType.Float32)
    {
        TorchSharp.torch.manual_seed(seed);
        LlavaModel model;
        var previous = TorchSharp.torch.get_default_dtype();
        try
        {
            TorchSharp.torch.set_default_dtype(dtype);
            using (TorchSharp.torch.no_grad()) model = new LlavaModel(cfg);
        }
        finally { TorchSharp.torch.set_default_dtype(previous); }
        model.InitWeights(std, seed);
        model.SavePretrained(dir);
        AtomicFile.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), pre.ToJson().ToJsonString(JsonFormat.Pretty));
        var tcPath = Path.Combine(dir, "tokenizer_config.json");
        var tc = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(tcPath))!.AsObject();
        tc["vlatune_caption_prompt"] = captionPrompt;
        AtomicFile.WriteAllText(tcPath, tc.ToJsonString(JsonFormat.Pretty));
        model.eval();
        return model;
    }
}

/// <summary>Writes small Qwen2-style byte-level BPE tokenizer files (GPT-2's byte↔unicode table).</summary>
public static class ByteLevelBpe
{
    public static readonly string[] Specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"];

    /// <summary>GPT-2's reversible map from bytes to printable characters.</summary>
    public static char[] ByteChars()
    {
        var bs = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToList();
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++) map[b] = bs.Contains(b) ? (char)b : (char)(256 + n++);
        return map;
    }

    public static void Write(string dir, IEnumerable<string> words)
    {
        var chars = ByteChars();
        var vocab = new Dictionary<string, int>();
        foreach (var c in chars) vocab[c.ToString()] = vocab.Count;
        var merges = new List<string>();
        foreach (var w in words.Distinct())
            foreach (var form in new[] { w, " " + w })
            {
                var s = string.Concat(System.Text.Encoding.UTF8.GetBytes(form).Select(b => chars[b]));
                string acc = s[..1];
                for (int i = 1; i < s.Length; i++)
                {
                    string next = acc + s[i];
                    if (!vocab.ContainsKey(next)) { merges.Add($"{acc} {s[i]}"); vocab[next] = vocab.Count; }
                    acc = next;
                }
            }
        int first = vocab.Count;
        var added = new System.Text.Json.Nodes.JsonObject();
        for (int i = 0; i < Specials.Length; i++) added[(first + i).ToString()] = new System.Text.Json.Nodes.JsonObject { ["content"] = Specials[i], ["special"] = true };
        AtomicFile.WriteAllText(Path.Combine(dir, "vocab.json"), JsonSerializer.Serialize(vocab));
        AtomicFile.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n" + string.Concat(merges.Select(m => m + "\n")));
        var cfg = new System.Text.Json.Nodes.JsonObject
        {
            ["tokenizer_class"] = "Qwen2Tokenizer", ["eos_token"] = "<|im_end|>", ["pad_token"] = "<|endoftext|>", ["image_token"] = "<image>",
            ["added_tokens_decoder"] = added,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), cfg.ToJsonString(JsonFormat.Pretty));
    }
}
