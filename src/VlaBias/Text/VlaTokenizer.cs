// Text side of a checkpoint folder: the tokenizer (through Microsoft.ML.Tokenizers) and the prompt
// template. Which tokenizer is used follows the files present:
//   tokenizer.model              → SentencePiece (Llama family): dummy "▁" prefix on the text's first segment only,
//                                  BOS added (Hugging Face's LlamaTokenizer with legacy=false)
//   vocab.json + merges.txt      → byte-level BPE (Qwen2 family): NFC, Qwen2's pre-tokenisation regex, no BOS
//   vocab.txt                    → WordPiece over a closed vocabulary (tiny-base: every word of the synthetic world)
// Special tokens (<image>, <|im_start|>, …) come from tokenizer_config.json's added_tokens_decoder and are never split.
// The prompt template is tokenizer_config.json's "vlatune_prompt_template", else inferred from config.json's text
// model type (PromptTemplates). The <image> placeholder expands to one image token per image feature position, as
// Hugging Face's LLaVA processors do. Token ids are checked against independent reference tokenizers in
// tests/VlaBias.Tests/Text (fixtures from tools/reference/tokenizer_reference.py).
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace VlaBias.Text;

/// <summary>The prompt templates of the checkpoints we know, chosen by the language model's model_type.</summary>
public static class PromptTemplates
{
    /// <summary>LLaVA-1.5 (llava-hf/llava-1.5-7b-hf's chat_template with one image and add_generation_prompt).</summary>
    public const string Llava15 = "USER: <image>\n{prompt} ASSISTANT:";
    /// <summary>ChatML as llava-interleave-qwen / llava-onevision-qwen2 render one user turn with one image.</summary>
    public const string ChatMl = "<|im_start|>user\n<image>\n{prompt}<|im_end|>\n<|im_start|>assistant\n";

    public static string ForModelType(string? textModelType) => textModelType switch
    {
        "qwen2" => ChatMl,
        _ => Llava15,
    };
}

/// <summary>Hugging Face's NFC normalizer (Qwen2).</summary>
internal sealed class NfcNormalizer : Normalizer
{
    public static readonly NfcNormalizer Instance = new();
    public override string Normalize(string original) => original.Normalize(NormalizationForm.FormC);
    public override string Normalize(ReadOnlySpan<char> original) => original.ToString().Normalize(NormalizationForm.FormC);
}

public sealed class VlaTokenizer
{
    public const string DefaultTemplate = PromptTemplates.Llava15;
    /// <summary>Qwen2's pre-tokenisation pattern (its tokenizer.json "pretokenizers" Split regex).</summary>
    public const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string ImagePlaceholder = "<image>";

    private readonly Tokenizer inner;
    private readonly Dictionary<string, int> vocab;
    private string[] addedTokens = [];

    private VlaTokenizer(Tokenizer inner, IReadOnlyDictionary<string, int> vocab, string template, string bos, string eos, string pad, string image, bool addBos)
    {
        this.inner = inner;
        this.vocab = new Dictionary<string, int>(vocab);
        PromptTemplate = template;
        BosId = Id(bos);
        EosId = Id(eos);
        PadId = this.vocab.TryGetValue(pad, out var p) ? p : EosId;
        ImageTokenId = Id(image);
        AddBos = addBos;
        BosToken = bos; EosToken = eos; PadToken = pad; ImageToken = image;
    }

    public string PromptTemplate { get; }
    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }
    public int ImageTokenId { get; }
    public bool AddBos { get; }
    public string BosToken { get; }
    public string EosToken { get; }
    public string PadToken { get; }
    public string ImageToken { get; }
    public int VocabSize => vocab.Count == 0 ? 0 : vocab.Values.Max() + 1;

    private int Id(string token) => vocab.TryGetValue(token, out var id)
        ? id : throw new BadInputException($"tokenizer: special token '{token}' is not in the vocabulary");

    public bool TryGetId(string token, out int id) => vocab.TryGetValue(token, out id);

    /// <summary>Token ids of plain text (no BOS/EOS added; special tokens written in the text are kept whole).</summary>
    public int[] Encode(string text) => EncodeSegments(text, first: true);

    // Splits at special tokens (SentencePiece does not know added tokens) and encodes the pieces between them;
    // only the very first piece gets SentencePiece's dummy "▁" prefix (legacy=false behaviour).
    private int[] EncodeSegments(string text, bool first)
    {
        if (inner is not SentencePieceTokenizer sp) return inner.EncodeToIds(text).ToArray();
        var ids = new List<int>();
        int at = 0;
        while (at < text.Length)
        {
            int next = -1; string? special = null;
            foreach (var s in addedTokens)
            {
                int k = text.IndexOf(s, at, StringComparison.Ordinal);
                if (k >= 0 && (next < 0 || k < next || (k == next && s.Length > special!.Length))) { next = k; special = s; }
            }
            string piece = next < 0 ? text[at..] : text[at..next];
            if (piece.Length > 0)
            {
                ids.AddRange(first
                    ? sp.EncodeToIds(piece, addBeginningOfSentence: false, addEndOfSentence: false)
                    : sp.EncodeToIds(piece.Replace(' ', '▁'), addBeginningOfSentence: false, addEndOfSentence: false, considerPreTokenization: false, considerNormalization: false));
            }
            first = false;
            if (next < 0) break;
            ids.Add(vocab[special!]);
            at = next + special!.Length;
        }
        return ids.ToArray();
    }

    public string Decode(IEnumerable<int> ids) => inner switch
    {
        WordPieceTokenizer w => w.Decode(ids.Where(i => i != PadId && i != BosId && i != EosId && i != ImageTokenId), skipSpecialTokens: true),
        _ => inner.Decode(ids.Where(i => i != PadId && i != BosId && i != EosId && i != ImageTokenId)),
    };

    /// <summary>
    /// The ids of the full prompt: [BOS] + template with {prompt} filled in and &lt;image&gt; replaced by
    /// <paramref name="imageTokens"/> image-token ids (0 for a text-only prompt, which drops the placeholder).
    /// </summary>
    public int[] EncodePrompt(string prompt, int imageTokens)
    {
        string filled = PromptTemplate.Replace("{prompt}", prompt);
        var ids = new List<int>();
        if (AddBos) ids.Add(BosId);
        int at = filled.IndexOf(ImagePlaceholder, StringComparison.Ordinal);
        if (at < 0)
        {
            if (imageTokens > 0) throw new BadInputException($"prompt template '{PromptTemplate}' has no {ImagePlaceholder} placeholder");
            ids.AddRange(Encode(filled));
            return ids.ToArray();
        }
        string before = filled[..at], after = filled[(at + ImagePlaceholder.Length)..];
        if (before.Length > 0) ids.AddRange(EncodeSegments(before, first: true));
        ids.AddRange(Enumerable.Repeat(ImageTokenId, imageTokens));
        if (after.Length > 0) ids.AddRange(EncodeSegments(after, first: before.Length == 0));
        return ids.ToArray();
    }

    /// <summary>Loads the tokenizer files of a checkpoint folder.</summary>
    public static VlaTokenizer FromFolder(string dir)
    {
        var cfgPath = Path.Combine(dir, "tokenizer_config.json");
        JsonObject cfg = new();
        if (File.Exists(cfgPath))
        {
            try { cfg = JsonNode.Parse(File.ReadAllText(cfgPath)) as JsonObject ?? throw new BadInputException($"{cfgPath}: expected a JSON object"); }
            catch (System.Text.Json.JsonException e) { throw new BadInputException($"{cfgPath}: not valid JSON ({e.Message})"); }
        }
        string Tok(string key, string dflt) => cfg[key] switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonObject o when o["content"] is JsonValue c && c.TryGetValue<string>(out var s) => s,
            _ => dflt,
        };
        // Declared template, else by config.json's text model type, else by the tokenizer (ChatML tokens → ChatML).
        string template = cfg["vlatune_prompt_template"]?.GetValue<string>()
            ?? PromptTemplates.ForModelType(TextModelType(dir) ?? (AddedTokens(cfg).ContainsKey("<|im_start|>") ? "qwen2" : null));
        string image = Tok("image_token", "<image>");

        var spm = Path.Combine(dir, "tokenizer.model");
        var vocabJson = Path.Combine(dir, "vocab.json");
        var merges = Path.Combine(dir, "merges.txt");
        var vocabTxt = Path.Combine(dir, "vocab.txt");
        try
        {
            if (File.Exists(vocabTxt))
            {
                var words = File.ReadAllLines(vocabTxt).Where(l => l.Length > 0).ToArray();
                var special = new Dictionary<string, int>();
                for (int i = 0; i < words.Length; i++)
                    if (words[i].StartsWith('<') && words[i].EndsWith('>')) special[words[i]] = i;
                var options = new WordPieceOptions
                {
                    UnknownToken = Tok("unk_token", "<unk>"),
                    SpecialTokens = special,
                    Normalizer = LowerCaseNormalizer.Instance,
                    PreTokenizer = PreTokenizer.CreateWordOrPunctuation(special),
                };
                using var stream = File.OpenRead(vocabTxt);
                var wp = WordPieceTokenizer.Create(stream, options);
                var map = words.Select((w, i) => (w, i)).ToDictionary(x => x.w, x => x.i);
                return new VlaTokenizer(wp, map, template, Tok("bos_token", "<s>"), Tok("eos_token", "</s>"), Tok("pad_token", "<pad>"), image, addBos: true);
            }
            if (File.Exists(spm))
            {
                using var stream = File.OpenRead(spm);
                var extra = AddedTokens(cfg);
                var ll = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false, specialTokens: extra.Count > 0 ? extra : null);
                var map = new Dictionary<string, int>(ll.Vocabulary);
                foreach (var (k, v) in extra) map[k] = v;
                return new VlaTokenizer(ll, map, template, Tok("bos_token", "<s>"), Tok("eos_token", "</s>"), Tok("pad_token", "<unk>"), image,
                    addBos: cfg["add_bos_token"] is not JsonValue ab || !ab.TryGetValue<bool>(out var b) || b) { addedTokens = extra.Keys.ToArray() };
            }
            if (File.Exists(vocabJson) && File.Exists(merges))
            {
                var extra = AddedTokens(cfg);
                using var v = File.OpenRead(vocabJson);
                using var m = File.OpenRead(merges);
                var bpe = BpeTokenizer.Create(new BpeOptions(Path.GetFullPath(vocabJson), Path.GetFullPath(merges))
                {
                    ByteLevel = true,
                    SpecialTokens = extra.Count > 0 ? extra : null,
                    PreTokenizer = new RegexPreTokenizer(new Regex(Qwen2Pattern, RegexOptions.Compiled), extra.Count > 0 ? extra : null),
                    Normalizer = NfcNormalizer.Instance,
                });
                var map = new Dictionary<string, int>(bpe.Vocabulary);
                foreach (var (k, val) in extra) map[k] = val;
                string eos = Tok("eos_token", "<|im_end|>");
                return new VlaTokenizer(bpe, map, template, Tok("bos_token", eos), eos, Tok("pad_token", eos), image, addBos: false) { addedTokens = extra.Keys.ToArray() };
            }
        }
        catch (Exception e) when (e is not BadInputException)
        {
            throw new BadInputException($"{dir}: cannot read the tokenizer files ({e.Message})", e);
        }
        throw new BadInputException($"{dir}: no tokenizer files (expected vocab.txt, tokenizer.model, or vocab.json + merges.txt)");
    }

    /// <summary>text_config.model_type of DIR/config.json, when there is one (picks the default prompt template).</summary>
    private static string? TextModelType(string dir)
    {
        var path = Path.Combine(dir, "config.json");
        if (!File.Exists(path)) return null;
        try { return JsonNode.Parse(File.ReadAllText(path))?["text_config"]?["model_type"]?.GetValue<string>(); }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException) { return null; }
    }

    private static Dictionary<string, int> AddedTokens(JsonObject cfg)
    {
        var result = new Dictionary<string, int>();
        if (cfg["added_tokens_decoder"] is JsonObject added)
            foreach (var (id, node) in added)
                if (node?["content"]?.GetValue<string>() is { } content && int.TryParse(id, out var i)) result[content] = i;
        return result;
    }

    /// <summary>Writes a closed-vocabulary WordPiece tokenizer (vocab.txt + tokenizer_config.json) for the given words.</summary>
    public static void WriteWordLevel(string dir, IEnumerable<string> words, string template = DefaultTemplate)
    {
        var specials = new[] { "<pad>", "<unk>", "<s>", "</s>", "<image>" };
        var all = specials.Concat(words.Select(w => w.ToLowerInvariant()).Where(w => !specials.Contains(w)).Distinct().OrderBy(w => w, StringComparer.Ordinal)).ToList();
        Directory.CreateDirectory(dir);
        AtomicFile.WriteAllText(Path.Combine(dir, "vocab.txt"), string.Join("\n", all) + "\n");
        var cfg = new JsonObject
        {
            ["tokenizer_class"] = "BertTokenizer",
            ["do_lower_case"] = true,
            ["pad_token"] = "<pad>", ["unk_token"] = "<unk>", ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["image_token"] = "<image>",
            ["vlatune_prompt_template"] = template,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), cfg.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }
}
