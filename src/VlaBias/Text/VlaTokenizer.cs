// Text side of a checkpoint folder: the tokenizer (through Microsoft.ML.Tokenizers) and the prompt template. Which
// tokenizer is used follows the files present, first match wins:
//   tokenizer.json               → Hugging Face's fast-tokenizer file (TokenizerJson): ids as `tokenizer(text)` gives
//                                  them, special tokens as its post-processor adds them
//   tokenizer.model              → SentencePiece (Llama family): dummy "▁" prefix on the text's first segment only,
//                                  BOS added (Hugging Face's LlamaTokenizer with legacy=false)
//   vocab.json + merges.txt      → byte-level BPE (Qwen2 family): NFC, Qwen2's pre-tokenisation regex, no BOS
//   vocab.txt                    → WordPiece over a closed vocabulary (tiny-base: every word of the synthetic world)
// Special tokens (<image>, <|im_start|>, …) come from tokenizer.json's added_tokens, else from tokenizer_config.json's
// added_tokens_decoder, and are never split.
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

    /// <summary>
    /// A Jinja chat_template (tokenizer_config.json) that renders one user turn — an image and a text — exactly as
    /// <paramref name="promptTemplate"/> does with add_generation_prompt. For the two known templates it is the one
    /// llava-hf ships (llava-1.5-7b-hf; llava-interleave-qwen), which also renders longer conversations; for any other
    /// template, each user turn is the template itself (its tail, the assistant cue, is always written).
    /// </summary>
    public static string ChatTemplate(string promptTemplate, string imageToken = "<image>") => (promptTemplate, imageToken) switch
    {
        (_, not "<image>") => Generic(promptTemplate.Replace("<image>", "\uE000image\uE000"), imageToken),
        (Llava15, _) => "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}" +
                   "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}" +
                   "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}" +
                   "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}",
        (ChatMl, _) => "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}" +
                  "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}" +
                  "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}" +
                  "{{'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        _ => Generic(promptTemplate.Replace("<image>", "\uE000image\uE000"), imageToken),
    };

    private static string Generic(string template, string imageToken)
    {
        static string Literal(string s) => s.Length == 0 ? "" : "{{ '" + s.Replace("\\", "\\\\").Replace("'", "\\'").Replace("\n", "\\n").Replace("\r", "\\r") + "' }}";
        var user = new System.Text.StringBuilder();
        foreach (var part in Regex.Split(template, "(\uE000image\uE000|\\{prompt\\})"))
            user.Append(part switch
            {
                "\uE000image\uE000" => "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}" + Literal(imageToken) + "{% endfor %}",
                "{prompt}" => "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}",
                _ => Literal(part),
            });
        return "{% for message in messages %}{% if message['role'] == 'user' %}" + user +
               "{% elif message['role'] == 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}" +
               "{% endif %}{% endfor %}";
    }
}

/// <summary>Hugging Face's NFC normalizer (Qwen2).</summary>
internal sealed class NfcNormalizer : Normalizer
{
    public static readonly NfcNormalizer Instance = new();
    public override string Normalize(string original) => UnicodeNormalization.Normalize(original, NormalizationForm.FormC);
    public override string Normalize(ReadOnlySpan<char> original) => UnicodeNormalization.Normalize(original.ToString(), NormalizationForm.FormC);
}

public sealed class VlaTokenizer
{
    public const string DefaultTemplate = PromptTemplates.Llava15;
    /// <summary>Qwen2's pre-tokenisation pattern (its tokenizer.json "pretokenizers" Split regex).</summary>
    public const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string ImagePlaceholder = "<image>";

    private readonly Tokenizer? inner;
    private readonly TokenizerJson? hf;
    private readonly bool cleanUpSpaces;
    private readonly Dictionary<string, int> vocab;
    private readonly Dictionary<int, string> tokenOf = new();
    private string[] addedTokens = [];

    private VlaTokenizer(Tokenizer? inner, TokenizerJson? hf, IReadOnlyDictionary<string, int> vocab, string template, string bos, string eos, string pad,
        string image, bool addBos, bool requireImage = true, bool cleanUpSpaces = false)
    {
        this.inner = inner;
        this.hf = hf;
        this.cleanUpSpaces = cleanUpSpaces;
        this.vocab = new Dictionary<string, int>(vocab);
        foreach (var (t, id) in this.vocab) tokenOf.TryAdd(id, t);
        PromptTemplate = template;
        BosId = Id(bos);
        EosId = Id(eos);
        PadId = this.vocab.TryGetValue(pad, out var p) ? p : EosId;
        ImageTokenId = requireImage || this.vocab.ContainsKey(image) ? Id(image) : -1;
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
    /// <summary>The tokenizer.json this tokenizer was read from, when it was.</summary>
    public TokenizerJson? TokenizerJson => hf;

    private int Id(string token) => vocab.TryGetValue(token, out var id)
        ? id : throw new BadInputException($"tokenizer: special token '{token}' is not in the vocabulary");

    public bool TryGetId(string token, out int id) => vocab.TryGetValue(token, out id);

    /// <summary>The token string of an id (null for an id outside the vocabulary).</summary>
    public string? TokenOf(int id) => tokenOf.TryGetValue(id, out var t) ? t : null;

    /// <summary>Token ids of plain text (no BOS/EOS added; special tokens written in the text are kept whole).</summary>
    public int[] Encode(string text) => EncodeSegments(text, first: true);

    /// <summary>
    /// Hugging Face's <c>tokenizer(text)</c>: the ids with the special tokens its post-processor adds (tokenizer.json),
    /// or BOS when the tokenizer adds one (the older formats).
    /// </summary>
    public int[] EncodeWithSpecialTokens(string text) => hf is not null ? hf.Encode(text).Ids
        : AddBos ? [BosId, .. Encode(text)] : Encode(text);

    // Splits at special tokens (SentencePiece does not know added tokens) and encodes the pieces between them;
    // only the very first piece gets SentencePiece's dummy "▁" prefix (legacy=false behaviour).
    private int[] EncodeSegments(string text, bool first)
    {
        if (hf is not null) return hf.Tokenize(text, first).Select(t => hf.TokenToId(t) ?? hf.UnknownId ?? throw new InvalidOperationException($"token '{t}' has no id")).ToArray();
        if (inner is not SentencePieceTokenizer sp) return inner!.EncodeToIds(text).ToArray();
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

    public string Decode(IEnumerable<int> ids) => (hf, inner) switch
    {
        ({ } t, _) => t.Decode(ids.Where(i => i != PadId && i != BosId && i != EosId && i != ImageTokenId), skipSpecialTokens: true, cleanUpSpaces),
        (_, WordPieceTokenizer w) => w.Decode(ids.Where(i => i != PadId && i != BosId && i != EosId && i != ImageTokenId), skipSpecialTokens: true),
        _ => inner!.Decode(ids.Where(i => i != PadId && i != BosId && i != EosId && i != ImageTokenId)),
    };

    /// <summary>
    /// The ids of the full prompt: [BOS] + template with {prompt} filled in and &lt;image&gt; replaced by
    /// <paramref name="imageTokens"/> image-token ids (0 for a text-only prompt, which drops the placeholder).
    /// </summary>
    public int[] EncodePrompt(string prompt, int imageTokens)
    {
        string filled = PromptTemplate.Replace("{prompt}", prompt);
        if (hf is not null && imageTokens > 0)
        {
            // What Hugging Face's LlavaProcessor does: <image> repeated once per image feature, then tokenizer(text).
            if (!filled.Contains(ImagePlaceholder, StringComparison.Ordinal))
                throw new BadInputException($"prompt template '{PromptTemplate}' has no {ImagePlaceholder} placeholder");
            var k = filled.IndexOf(ImagePlaceholder, StringComparison.Ordinal);
            return hf.Encode(filled[..k] + string.Concat(Enumerable.Repeat(ImageToken, imageTokens)) + filled[(k + ImagePlaceholder.Length)..]).Ids;
        }
        var ids = new List<int>();
        if (hf is not null) ids.AddRange(hf.PrefixIds);
        else if (AddBos) ids.Add(BosId);
        int at = filled.IndexOf(ImagePlaceholder, StringComparison.Ordinal);
        if (at < 0)
        {
            if (imageTokens > 0) throw new BadInputException($"prompt template '{PromptTemplate}' has no {ImagePlaceholder} placeholder");
            ids.AddRange(Encode(filled));
            if (hf is not null) ids.AddRange(hf.SuffixIds);
            return ids.ToArray();
        }
        string before = filled[..at], after = filled[(at + ImagePlaceholder.Length)..];
        if (before.Length > 0) ids.AddRange(EncodeSegments(before, first: true));
        ids.AddRange(Enumerable.Repeat(ImageTokenId, imageTokens));
        if (after.Length > 0) ids.AddRange(EncodeSegments(after, first: before.Length == 0));
        if (hf is not null) ids.AddRange(hf.SuffixIds);
        return ids.ToArray();
    }

    /// <summary>
    /// Loads the tokenizer files of a checkpoint folder. <paramref name="requireImageToken"/> false: a tokenizer
    /// without an image token loads (for plain text; <see cref="ImageTokenId"/> is then -1).
    /// </summary>
    public static VlaTokenizer FromFolder(string dir, bool requireImageToken = true)
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
        string? known = cfg["vlatune_prompt_template"] is JsonValue tv && tv.TryGetValue<string>(out var declared) ? declared
            : TextModelType(dir) is { } type ? PromptTemplates.ForModelType(type) : null;
        string image = Tok("image_token", "<image>");

        var json = Path.Combine(dir, TokenizerJson.FileName);
        if (File.Exists(json)) return FromTokenizerJson(dir, json, cfg, known, image, requireImageToken);
        string template = known ?? PromptTemplates.ForModelType(AddedTokens(cfg).ContainsKey("<|im_start|>") ? "qwen2" : null);
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
                return new VlaTokenizer(wp, null, map, template, Tok("bos_token", "<s>"), Tok("eos_token", "</s>"), Tok("pad_token", "<pad>"), image, addBos: true, requireImageToken);
            }
            if (File.Exists(spm))
            {
                using var stream = File.OpenRead(spm);
                var extra = AddedTokens(cfg);
                var ll = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false, specialTokens: extra.Count > 0 ? extra : null);
                var map = new Dictionary<string, int>(ll.Vocabulary);
                foreach (var (k, v) in extra) map[k] = v;
                return new VlaTokenizer(ll, null, map, template, Tok("bos_token", "<s>"), Tok("eos_token", "</s>"), Tok("pad_token", "<unk>"), image,
                    addBos: cfg["add_bos_token"] is not JsonValue ab || !ab.TryGetValue<bool>(out var b) || b, requireImageToken) { addedTokens = extra.Keys.ToArray() };
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
                return new VlaTokenizer(bpe, null, map, template, Tok("bos_token", eos), eos, Tok("pad_token", eos), image, addBos: false, requireImageToken) { addedTokens = extra.Keys.ToArray() };
            }
        }
        catch (Exception e) when (e is not BadInputException)
        {
            throw new BadInputException($"{dir}: cannot read the tokenizer files ({e.Message})", e);
        }
        throw new BadInputException($"{dir}: no tokenizer files (expected tokenizer.json, vocab.txt, tokenizer.model, or vocab.json + merges.txt)");
    }

    // tokenizer_config.json names the special tokens (as strings or {"content": …}); when it does not, BOS is the
    // post-processor's first token, EOS the usual end token of the vocabulary, and padding falls back to EOS, as in
    // Transformers.js.
    private static VlaTokenizer FromTokenizerJson(string dir, string path, JsonObject cfg, string? template, string image, bool requireImageToken)
    {
        var hf = TokenizerJson.Load(path);
        template ??= PromptTemplates.ForModelType(hf.Vocabulary.ContainsKey("<|im_start|>") ? "qwen2" : null);
        string? Tok(string key) => cfg[key] switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonObject o when o["content"] is JsonValue c && c.TryGetValue<string>(out var s) => s,
            _ => null,
        };
        string eos = Tok("eos_token") ?? new[] { "</s>", "<|endoftext|>", "<|im_end|>", "[SEP]" }.FirstOrDefault(t => hf.Vocabulary.ContainsKey(t))
            ?? throw new BadInputException($"{dir}: tokenizer_config.json names no eos_token and {path} has none of </s>, <|endoftext|>, <|im_end|>, [SEP]");
        string bos = Tok("bos_token") ?? (hf.PrefixIds.Count > 0 ? hf.IdToToken(hf.PrefixIds[0]) : null) ?? eos;
        foreach (var (key, t) in new[] { ("bos_token", bos), ("eos_token", eos) })
            if (!hf.Vocabulary.ContainsKey(t)) throw new BadInputException($"{dir}: tokenizer_config.json {key} '{t}' is not a token of {path}");
        if (hf.Vocabulary.ContainsKey(image) && !hf.AddedTokens.Any(a => a.Content == image))
            throw new BadInputException($"{path}: the image token '{image}' must be one of added_tokens, or prompts would split it");
        bool addBos = hf.PrefixIds.Count > 0 && hf.PrefixIds[0] == hf.Vocabulary[bos];
        bool cleanUp = cfg["clean_up_tokenization_spaces"] is JsonValue cv && cv.TryGetValue<bool>(out var c) && c;
        return new VlaTokenizer(null, hf, hf.Vocabulary, template, bos, eos, Tok("pad_token") ?? eos, image, addBos, requireImageToken, cleanUp);
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

    /// <summary>Writes a closed-vocabulary WordPiece tokenizer (vocab.txt, tokenizer.json, tokenizer_config.json) for the given words.</summary>
    public static void WriteWordLevel(string dir, IEnumerable<string> words, string template = DefaultTemplate)
    {
        var specials = new[] { "<pad>", "<unk>", "<s>", "</s>", "<image>" };
        var all = specials.Concat(words.Select(w => w.ToLowerInvariant()).Where(w => !specials.Contains(w)).Distinct().OrderBy(w => w, StringComparer.Ordinal)).ToList();
        Directory.CreateDirectory(dir);
        AtomicFile.WriteAllText(Path.Combine(dir, "vocab.txt"), string.Join("\n", all) + "\n");
        TokenizerJsonWriter.Write(Path.Combine(dir, TokenizerJson.FileName), TokenizerJsonWriter.WordPiece(all, "<unk>", "<s>"));
        var cfg = new JsonObject
        {
            // tokenizer.json is the tokenizer; vocab.txt stays for readers of the older layout.
            ["tokenizer_class"] = "PreTrainedTokenizerFast",
            ["do_lower_case"] = true,
            ["clean_up_tokenization_spaces"] = false,
            ["padding_side"] = "left",
            ["chat_template"] = PromptTemplates.ChatTemplate(template),
            ["pad_token"] = "<pad>", ["unk_token"] = "<unk>", ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["image_token"] = "<image>",
            ["vlatune_prompt_template"] = template,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), cfg.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }
}
