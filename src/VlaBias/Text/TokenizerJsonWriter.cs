// Writes tokenizer.json for the tokenizer formats vlatune reads from older files, so that other tools (Python's
// tokenizers, Transformers.js) read the same tokenizer: the closed-vocabulary WordPiece of vocab.txt (tiny-base),
// the Qwen2-style byte-level BPE of vocab.json + merges.txt, and a SentencePiece BPE tokenizer.model (Llama), which
// becomes a BPE with byte fallback whose merges are read off the vocabulary as Hugging Face's LlamaConverter does.
// Each writer's output is checked in tests to give the same ids as the reader of the file it came from.
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace VlaBias.Text;

public static class TokenizerJsonWriter
{
    /// <summary>tokenizer.json for the legacy tokenizer files in <paramref name="dir"/>, or null when it has none (or already has a tokenizer.json).</summary>
    public static JsonObject? FromLegacyFiles(string dir)
    {
        var cfg = ReadConfig(dir);
        string Tok(string key, string dflt) => cfg[key] switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonObject o when o["content"] is JsonValue c && c.TryGetValue<string>(out var s) => s,
            _ => dflt,
        };
        var added = AddedTokensOf(cfg);
        string vocabTxt = Path.Combine(dir, "vocab.txt"), spm = Path.Combine(dir, "tokenizer.model");
        string vocabJson = Path.Combine(dir, "vocab.json"), merges = Path.Combine(dir, "merges.txt");
        if (File.Exists(vocabTxt))
            return WordPiece(File.ReadAllLines(vocabTxt).Where(l => l.Length > 0).ToList(), Tok("unk_token", "<unk>"), Tok("bos_token", "<s>"));
        if (File.Exists(spm))
        {
            using var stream = File.OpenRead(spm);
            bool addBos = cfg["add_bos_token"] is not JsonValue ab || !ab.TryGetValue<bool>(out var b) || b;
            bool addEos = cfg["add_eos_token"] is JsonValue ae && ae.TryGetValue<bool>(out var e) && e;
            return SentencePieceBpe(LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false), added, addBos, addEos);
        }
        if (File.Exists(vocabJson) && File.Exists(merges))
        {
            var vocab = JsonNode.Parse(File.ReadAllText(vocabJson)) as JsonObject ?? throw new BadInputException($"{vocabJson}: expected a JSON object");
            var lines = File.ReadAllLines(merges).Where(l => l.Length > 0 && !l.StartsWith("#version")).ToList();
            return ByteLevelBpe(vocab.ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<int>()), lines, added);
        }
        return null;
    }

    /// <summary>Writes <paramref name="tokenizer"/> atomically (compact, as tokenizer.json files are large).</summary>
    public static void Write(string path, JsonObject tokenizer) =>
        AtomicFile.WriteAllText(path, tokenizer.ToJsonString(new System.Text.Json.JsonSerializerOptions
        {
            WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        }));

    /// <summary>
    /// A WordPiece tokenizer over a closed vocabulary (vocab.txt order = ids): lowercase, BERT's split on whitespace
    /// and punctuation, tokens written &lt;like this&gt; are special added tokens, and BOS before every sequence.
    /// </summary>
    public static JsonObject WordPiece(IReadOnlyList<string> vocab, string unk, string bos)
    {
        var added = vocab.Select((w, i) => (w, i)).Where(x => x.w.StartsWith('<') && x.w.EndsWith('>'))
            .Select(x => new AddedToken(x.i, x.w, true, false, false, false, false)).ToList();
        int bosId = vocab.ToList().IndexOf(bos);
        if (bosId < 0) throw new BadInputException($"vocab.txt: the BOS token '{bos}' is not in the vocabulary");
        var map = new JsonObject();
        for (int i = 0; i < vocab.Count; i++) map[vocab[i]] = i;
        return Root(added,
            new JsonObject { ["type"] = "Lowercase" },
            new JsonObject { ["type"] = "BertPreTokenizer" },
            Template(bos, bosId, eos: null, eosId: 0),
            new JsonObject { ["type"] = "WordPiece", ["prefix"] = "##", ["cleanup"] = true },
            new JsonObject { ["type"] = "WordPiece", ["unk_token"] = unk, ["continuing_subword_prefix"] = "##", ["max_input_chars_per_word"] = 100, ["vocab"] = map });
    }

    /// <summary>Qwen2's byte-level BPE: NFC, Qwen2's split regex, bytes as characters, no special tokens added.</summary>
    public static JsonObject ByteLevelBpe(IReadOnlyDictionary<string, int> vocab, IEnumerable<string> merges, IReadOnlyList<AddedToken> added)
    {
        JsonObject ByteLevel() => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false };
        var map = new JsonObject();
        foreach (var (k, v) in vocab.OrderBy(kv => kv.Value)) map[k] = v;
        // Merges as "left right" strings, the form every version of Hugging Face's tokenizers reads.
        var mergeList = new JsonArray();
        foreach (var m in merges)
        {
            if (m.Split(' ').Length != 2) throw new BadInputException($"merges.txt: line '{m}': expected two tokens separated by one space");
            mergeList.Add(m);
        }
        return Root(added,
            new JsonObject { ["type"] = "NFC" },
            new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = VlaTokenizer.Qwen2Pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    ByteLevel()),
            },
            ByteLevel(), ByteLevel(),
            new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false, ["vocab"] = map, ["merges"] = mergeList,
            });
    }

    /// <summary>
    /// A SentencePiece BPE model (Llama's tokenizer.model) as Hugging Face's LlamaConverter writes it with legacy=false:
    /// Metaspace "▁" prepended to the first section only, BPE with byte fallback and fused unknowns, merges = every
    /// split of a piece into two pieces, ordered by the id of the merged piece (SentencePiece's score order).
    /// </summary>
    public static JsonObject SentencePieceBpe(LlamaTokenizer spm, IReadOnlyList<AddedToken> extra, bool addBos, bool addEos)
    {
        var vocab = spm.Vocabulary.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        var merges = new List<(int rank, int left, int right, string a, string b)>();
        foreach (var (piece, id) in vocab)
            for (int k = 1; k < piece.Length; k++)
            {
                if (char.IsLowSurrogate(piece[k])) continue;
                string a = piece[..k], b = piece[k..];
                if (vocab.TryGetValue(a, out var ia) && vocab.TryGetValue(b, out var ib)) merges.Add((id, ia, ib, a, b));
            }
        var mergeList = new JsonArray();
        foreach (var m in merges.OrderBy(m => m.rank).ThenBy(m => m.left).ThenBy(m => m.right))
        {
            if (m.a.Contains(' ') || m.b.Contains(' ')) continue;   // not expressible as "left right"; SentencePiece pieces use ▁
            mergeList.Add(m.a + " " + m.b);
        }
        var map = new JsonObject();
        foreach (var (k, v) in vocab.OrderBy(kv => kv.Value)) map[k] = v;
        string unk = spm.UnknownToken, bos = spm.BeginningOfSentenceToken, eos = spm.EndOfSentenceToken;
        var added = new List<AddedToken>
        {
            new(spm.UnknownId, unk, true, false, false, false, false),
            new(spm.BeginningOfSentenceId, bos, true, false, false, false, false),
            new(spm.EndOfSentenceId, eos, true, false, false, false, false),
        };
        added.AddRange(extra.Where(x => added.All(a => a.Id != x.Id)));
        added.Sort((x, y) => x.Id.CompareTo(y.Id));
        return Root(added, null,
            new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = spm.AddDummyPrefix ? "first" : "never", ["split"] = false },
            Template(addBos ? bos : null, spm.BeginningOfSentenceId, addEos ? eos : null, spm.EndOfSentenceId),
            new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
            },
            new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = unk, ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
                ["fuse_unk"] = true, ["byte_fallback"] = spm.ByteFallback, ["ignore_merges"] = false, ["vocab"] = map, ["merges"] = mergeList,
            });
    }

    /// <summary>TemplateProcessing that puts <paramref name="bos"/> before and <paramref name="eos"/> after each sequence (either may be null).</summary>
    private static JsonObject Template(string? bos, int bosId, string? eos, int eosId)
    {
        JsonObject Special(string t) => new() { ["SpecialToken"] = new JsonObject { ["id"] = t, ["type_id"] = 0 } };
        JsonObject Seq(string id, int type) => new() { ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = type } };
        var single = new JsonArray();
        var pair = new JsonArray();
        var specials = new JsonObject();
        if (bos is not null) { single.Add(Special(bos)); pair.Add(Special(bos)); specials[bos] = new JsonObject { ["id"] = bos, ["ids"] = new JsonArray(bosId), ["tokens"] = new JsonArray(bos) }; }
        single.Add(Seq("A", 0)); pair.Add(Seq("A", 0));
        if (eos is not null) { single.Add(Special(eos)); pair.Add(Special(eos)); specials[eos] = new JsonObject { ["id"] = eos, ["ids"] = new JsonArray(eosId), ["tokens"] = new JsonArray(eos) }; }
        if (bos is not null) pair.Add(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 1 } });
        pair.Add(Seq("B", 1));
        if (eos is not null) pair.Add(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = eos, ["type_id"] = 1 } });
        return new JsonObject { ["type"] = "TemplateProcessing", ["single"] = single, ["pair"] = pair, ["special_tokens"] = specials };
    }

    private static JsonObject Root(IEnumerable<AddedToken> added, JsonObject? normalizer, JsonObject? preTokenizer, JsonObject? post, JsonObject? decoder, JsonObject model) => new()
    {
        ["version"] = "1.0",
        ["truncation"] = null,
        ["padding"] = null,
        ["added_tokens"] = new JsonArray(added.OrderBy(a => a.Id).Select(a => (JsonNode)new JsonObject
        {
            ["id"] = a.Id, ["content"] = a.Content, ["single_word"] = a.SingleWord, ["lstrip"] = a.LStrip, ["rstrip"] = a.RStrip,
            ["normalized"] = a.Normalized, ["special"] = a.Special,
        }).ToArray()),
        ["normalizer"] = normalizer,
        ["pre_tokenizer"] = preTokenizer,
        ["post_processor"] = post,
        ["decoder"] = decoder,
        ["model"] = model,
    };

    internal static JsonObject ReadConfig(string dir)
    {
        var path = Path.Combine(dir, "tokenizer_config.json");
        if (!File.Exists(path)) return new JsonObject();
        try { return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new BadInputException($"{path}: expected a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new BadInputException($"{path}: not valid JSON ({e.Message})"); }
    }

    /// <summary>tokenizer_config.json's added_tokens_decoder as added tokens (special unless it says otherwise).</summary>
    internal static List<AddedToken> AddedTokensOf(JsonObject cfg)
    {
        var result = new List<AddedToken>();
        if (cfg["added_tokens_decoder"] is not JsonObject added) return result;
        foreach (var (id, node) in added)
        {
            if (node is not JsonObject o || o["content"] is not JsonValue c || !c.TryGetValue<string>(out var content) || !int.TryParse(id, out var i)) continue;
            bool B(string key, bool dflt) => o[key] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : dflt;
            bool special = B("special", true);
            result.Add(new AddedToken(i, content, special, B("normalized", !special), B("lstrip", false), B("rstrip", false), B("single_word", false)));
        }
        return result;
    }
}
