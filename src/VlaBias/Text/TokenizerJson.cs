// Hugging Face tokenizer.json (the "fast tokenizer" file that Python's tokenizers, Transformers.js and most checkpoints
// ship): text → added-token split → normalizer → pre-tokenizer → model → post-processor → ids, and ids → decoder → text.
// In: the file; out: Encode(text) = the ids (and token strings) of Hugging Face's `tokenizer(text)`, special tokens
// added as the post-processor says, and Decode(ids). The models are Microsoft.ML.Tokenizers' BpeTokenizer and
// WordPieceTokenizer, fed one pre-token at a time with its own normalisation and pre-tokenisation off; the rest of the
// pipeline (TokenizerJsonComponents.cs) follows the Rust library. Byte fallback (Llama's <0xXX> tokens), which
// BpeTokenizer lacks, is added here from the unknown-token offsets it reports. Unigram models are not supported.
// Checked against Transformers.js on real Llama (Mistral) and Qwen3 files in tests/VlaBias.Tests/Text.
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace VlaBias.Text;

/// <summary>An entry of tokenizer.json's added_tokens.</summary>
public sealed record AddedToken(int Id, string Content, bool Special, bool Normalized, bool LStrip, bool RStrip, bool SingleWord);

public sealed class TokenizerJson
{
    public const string FileName = "tokenizer.json";

    private readonly Func<string, string>? normalizer;
    private readonly PreTokenizers.Step? preTokenizer;
    private readonly TokenModel model;
    private readonly PostProcessor post;
    private readonly Decoders.Chain? decoder;
    private readonly AddedToken[] rawAdded, normalizedAdded;
    private readonly Dictionary<string, AddedToken> addedByContent = new(StringComparer.Ordinal);
    private readonly Dictionary<int, AddedToken> addedById = new();
    private readonly Dictionary<string, int> vocab;
    private readonly Dictionary<int, string> tokenOf = new();

    private TokenizerJson(JsonObject root, JsonReader r)
    {
        var modelNode = r.Obj(root["model"], "model");
        var added = new List<AddedToken>();
        if (root["added_tokens"] is { } addedNode)
        {
            var arr = r.Arr(addedNode, "added_tokens");
            for (int i = 0; i < arr.Count; i++)
            {
                string f = $"added_tokens[{i}]";
                var o = r.Obj(arr[i], f);
                bool special = r.Bool(o["special"], f + ".special", false);
                added.Add(new AddedToken(r.Int(o["id"], f + ".id"), r.Str(o["content"], f + ".content"), special,
                    r.Bool(o["normalized"], f + ".normalized", !special), r.Bool(o["lstrip"], f + ".lstrip", false),
                    r.Bool(o["rstrip"], f + ".rstrip", false), r.Bool(o["single_word"], f + ".single_word", false)));
                if (added[^1].Content.Length == 0) throw r.Error(f + ".content", "a non-empty string");
            }
        }
        model = TokenModel.Create(modelNode, added, r);
        vocab = new Dictionary<string, int>(model.Vocab, StringComparer.Ordinal);
        foreach (var a in added)
        {
            vocab[a.Content] = a.Id;
            addedByContent[a.Content] = a;
            addedById[a.Id] = a;
        }
        foreach (var (t, id) in vocab) tokenOf.TryAdd(id, t);
        foreach (var a in added) tokenOf[a.Id] = a.Content;

        normalizer = Normalizers.Create(root["normalizer"], r, "normalizer");
        preTokenizer = PreTokenizers.Create(root["pre_tokenizer"], r, "pre_tokenizer");
        post = PostProcessor.Create(root["post_processor"], r, "post_processor", t => vocab.TryGetValue(t, out var id) ? id : null);
        decoder = Decoders.Create(root["decoder"], r, "decoder");
        rawAdded = added.Where(a => a.Special || !a.Normalized).OrderByDescending(a => a.Content.Length).ToArray();
        // Normalized added tokens are looked for in the normalized text, so their own content is normalized too.
        normalizedAdded = added.Where(a => !a.Special && a.Normalized)
            .Select(a => a with { Content = normalizer?.Invoke(a.Content) ?? a.Content }).Where(a => a.Content.Length > 0)
            .OrderByDescending(a => a.Content.Length).ToArray();
        foreach (var a in normalizedAdded) addedByContent.TryAdd(a.Content, addedById[a.Id]);
    }

    /// <summary>Reads a tokenizer.json; every problem is a BadInputException naming the file and field.</summary>
    public static TokenizerJson Load(string path)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: file not found");
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new BadInputException($"{path}: not valid JSON ({e.Message})"); }
        return Parse(node as JsonObject ?? throw new BadInputException($"{path}: expected a JSON object"), path);
    }

    public static TokenizerJson Parse(JsonObject root, string source)
    {
        try { return new TokenizerJson(root, new JsonReader(source)); }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException)
        {
            throw new BadInputException($"{source}: cannot build the tokenizer ({e.Message})", e);
        }
    }

    /// <summary>Every token string and its id (model vocabulary and added tokens).</summary>
    public IReadOnlyDictionary<string, int> Vocabulary => vocab;
    public IReadOnlyList<AddedToken> AddedTokens => addedById.Values.OrderBy(a => a.Id).ToList();
    public int VocabSize => vocab.Count == 0 ? 0 : vocab.Values.Max() + 1;
    public int? UnknownId => model.UnknownToken is { } u && vocab.TryGetValue(u, out var id) ? id : null;

    /// <summary>The special tokens the post-processor puts before and after a single sequence.</summary>
    public IReadOnlyList<int> PrefixIds => post.Before.Select(p => p.Id).ToList();
    public IReadOnlyList<int> SuffixIds => post.After.Select(p => p.Id).ToList();

    public bool IsSpecial(int id) => addedById.TryGetValue(id, out var a) && a.Special;
    public string? IdToToken(int id) => tokenOf.TryGetValue(id, out var t) ? t : null;
    public int? TokenToId(string token) => vocab.TryGetValue(token, out var id) ? id : null;

    /// <summary>Hugging Face's <c>tokenizer(text)</c>: ids and token strings, with the post-processor's special tokens when asked.</summary>
    public (int[] Ids, string[] Tokens) Encode(string text, bool addSpecialTokens = true)
    {
        var tokens = Tokenize(text);
        if (addSpecialTokens) tokens = [.. post.Before.Select(p => p.Token), .. tokens, .. post.After.Select(p => p.Token)];
        var ids = new int[tokens.Count];
        int? unk = UnknownId;
        for (int i = 0; i < tokens.Count; i++)
            ids[i] = vocab.TryGetValue(tokens[i], out var id) ? id : unk ?? throw new InvalidOperationException($"token '{tokens[i]}' has no id");
        if (addSpecialTokens)
        {
            // The post-processor's ids win over a lookup of its token strings (they may differ in odd files).
            for (int i = 0; i < post.Before.Length; i++) ids[i] = post.Before[i].Id;
            for (int i = 0; i < post.After.Length; i++) ids[ids.Length - post.After.Length + i] = post.After[i].Id;
        }
        return (ids, tokens.ToArray());
    }

    /// <summary>Token strings of <paramref name="text"/> without special tokens; <paramref name="atStart"/>: the text begins the input.</summary>
    public List<string> Tokenize(string text, bool atStart = true)
    {
        var output = new List<string>();
        var sections = SplitAdded(text, rawAdded);
        for (int s = 0; s < sections.Count; s++)
        {
            var (piece, token) = sections[s];
            if (token is not null) { output.Add(token.Content); continue; }
            string normalized = normalizer?.Invoke(piece) ?? piece;
            var subs = SplitAdded(normalized, normalizedAdded);
            for (int k = 0; k < subs.Count; k++)
            {
                var (sub, subToken) = subs[k];
                if (subToken is not null) { output.Add(addedByContent[subToken.Content].Content); continue; }
                var start = new Piece(sub, atStart && s == 0 && k == 0);
                foreach (var p in preTokenizer?.Invoke(start) ?? [start])
                    if (p.Text.Length > 0) model.Encode(p.Text, output);
            }
        }
        return output;
    }

    /// <summary>Text of <paramref name="ids"/> through the decoder (ids without a token are skipped, as in Rust).</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true, bool cleanUpSpaces = false)
    {
        var tokens = ids.Where(id => !(skipSpecialTokens && IsSpecial(id))).Select(IdToToken).OfType<string>().ToList();
        string text = decoder is null ? string.Join(" ", tokens) : string.Concat(decoder(tokens));
        return cleanUpSpaces ? Decoders.CleanUp(text) : text;
    }

    /// <summary>
    /// Splits at added tokens, leftmost-longest (Rust's aho-corasick). lstrip/rstrip swallow the whitespace beside a
    /// token; a single_word token only matches between non-word characters.
    /// </summary>
    private static List<(string Text, AddedToken? Token)> SplitAdded(string text, AddedToken[] tokens)
    {
        var result = new List<(string, AddedToken?)>();
        if (tokens.Length == 0 || text.Length == 0) { if (text.Length > 0) result.Add((text, null)); return result; }
        int prev = 0, i = 0;
        while (i < text.Length)
        {
            AddedToken? hit = null;
            foreach (var t in tokens)   // longest first
                if (text.AsSpan(i).StartsWith(t.Content, StringComparison.Ordinal) && (!t.SingleWord || SingleWordOk(text, i, i + t.Content.Length)))
                { hit = t; break; }
            if (hit is null) { i++; continue; }
            int start = i, end = i + hit.Content.Length;
            if (hit.LStrip) while (start > prev && char.IsWhiteSpace(text[start - 1])) start--;
            if (hit.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > prev) result.Add((text[prev..start], null));
            result.Add((hit.Content, hit));
            prev = i = end;
        }
        if (prev < text.Length) result.Add((text[prev..], null));
        return result;
    }

    private static bool SingleWordOk(string text, int start, int end)
    {
        static bool Word(char c) => char.IsLetterOrDigit(c) || c == '_';
        return (start == 0 || !Word(text[start - 1])) && (end >= text.Length || !Word(text[end]));
    }
}

/// <summary>The model stage of tokenizer.json: one pre-token in, token strings out.</summary>
internal abstract class TokenModel
{
    public abstract IReadOnlyDictionary<string, int> Vocab { get; }
    public abstract string? UnknownToken { get; }
    public abstract void Encode(string pretoken, List<string> output);

    public static TokenModel Create(JsonObject o, IReadOnlyList<AddedToken> added, JsonReader r)
    {
        string type = o["type"] is null ? (o["merges"] is not null ? "BPE" : o["vocab"] is JsonArray ? "Unigram" : "WordPiece") : r.Type(o, "model");
        return type switch
        {
            "BPE" => new BpeModel(o, added, r),
            "WordPiece" => new WordPieceModel(o, added, r),
            _ => throw new BadInputException($"{r.Source}: field 'model.type': '{type}' models are not supported (BPE and WordPiece are)"),
        };
    }

    protected static Dictionary<string, int> ReadVocab(JsonObject o, JsonReader r)
    {
        var v = r.Obj(o["vocab"], "model.vocab");
        var result = new Dictionary<string, int>(v.Count, StringComparer.Ordinal);
        foreach (var (k, n) in v)
        {
            int id = r.Int(n, $"model.vocab[\"{k}\"]");
            if (id < 0) throw r.Error($"model.vocab[\"{k}\"]", "a non-negative id");
            result[k] = id;
        }
        return result;
    }
}

/// <summary>BPE through Microsoft.ML.Tokenizers' BpeTokenizer, plus byte fallback, fuse_unk and ignore_merges.</summary>
internal sealed class BpeModel : TokenModel
{
    // Stands in for the unknown token when the file has none, so that unknown characters can still be found.
    private const string Sentinel = "\uE000vlatune-unknown\uE000";
    private readonly BpeTokenizer bpe;
    private readonly Dictionary<string, int> vocab;
    private readonly string? unk;
    private readonly string mlUnknown;
    private readonly bool byteFallback, fuseUnknown, ignoreMerges;

    public BpeModel(JsonObject o, IReadOnlyList<AddedToken> added, JsonReader r)
    {
        vocab = ReadVocab(o, r);
        unk = r.OptStr(o["unk_token"], "model.unk_token");
        byteFallback = r.Bool(o["byte_fallback"], "model.byte_fallback", false);
        fuseUnknown = r.Bool(o["fuse_unk"], "model.fuse_unk", false);
        ignoreMerges = r.Bool(o["ignore_merges"], "model.ignore_merges", false);
        var merges = new List<string>();
        var arr = r.Arr(o["merges"], "model.merges");
        for (int i = 0; i < arr.Count; i++)
        {
            string f = $"model.merges[{i}]";
            var (a, b) = arr[i] switch
            {
                JsonArray pair when pair.Count == 2 => (r.Str(pair[0], f + "[0]"), r.Str(pair[1], f + "[1]")),
                JsonValue v when v.TryGetValue<string>(out var line) && line.Split(' ') is [var x, var y] => (x, y),
                _ => throw r.Error(f, "\"left right\" or [left, right]"),
            };
            if (a.Contains(' ') || b.Contains(' ') || a.Length == 0 || b.Length == 0) throw r.Error(f, "two non-empty parts without spaces");
            merges.Add(a + " " + b);
        }
        // Like the Rust and JavaScript tokenizers, added tokens count as known tokens of the model.
        var all = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        foreach (var t in added) all.TryAdd(t.Content, t.Id);
        mlUnknown = unk is not null && all.ContainsKey(unk) ? unk : Sentinel;
        if (mlUnknown == Sentinel) all[Sentinel] = all.Values.DefaultIfEmpty(-1).Max() + 1;
        bpe = BpeTokenizer.Create(new BpeOptions(all)
        {
            Merges = merges,
            UnknownToken = mlUnknown,
            FuseUnknownTokens = false,
            ContinuingSubwordPrefix = r.OptStr(o["continuing_subword_prefix"], "model.continuing_subword_prefix") is { Length: > 0 } p ? p : null,
            EndOfWordSuffix = r.OptStr(o["end_of_word_suffix"], "model.end_of_word_suffix") is { Length: > 0 } s ? s : null,
        });
    }

    public override IReadOnlyDictionary<string, int> Vocab => vocab;
    public override string? UnknownToken => unk;

    public override void Encode(string pretoken, List<string> output)
    {
        if (ignoreMerges && vocab.ContainsKey(pretoken)) { output.Add(pretoken); return; }
        var tokens = bpe.EncodeToTokens(pretoken, out _, considerPreTokenization: false, considerNormalization: false);
        bool lastUnknown = false;
        for (int i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Value != mlUnknown) { output.Add(tokens[i].Value); lastUnknown = false; continue; }
            // A run of unknown characters: each code point becomes its <0xXX> bytes when the vocabulary has them all.
            int start = tokens[i].Offset.Start.Value, end = tokens[i].Offset.End.Value;
            while (i + 1 < tokens.Count && tokens[i + 1].Value == mlUnknown) end = tokens[++i].Offset.End.Value;
            foreach (var rune in pretoken[start..end].EnumerateRunes())
            {
                if (byteFallback)
                {
                    var bytes = new byte[rune.Utf8SequenceLength];
                    rune.EncodeToUtf8(bytes);
                    var names = bytes.Select(b => $"<0x{b:X2}>").ToArray();
                    if (names.All(vocab.ContainsKey)) { output.AddRange(names); lastUnknown = false; continue; }
                }
                if (unk is null) continue;                   // no unknown token: the character is dropped
                if (fuseUnknown && lastUnknown) continue;
                output.Add(unk);
                lastUnknown = true;
            }
        }
    }
}

/// <summary>WordPiece through Microsoft.ML.Tokenizers' WordPieceTokenizer (greedy longest match, ## continuations).</summary>
internal sealed class WordPieceModel : TokenModel
{
    private readonly WordPieceTokenizer wordPiece;
    private readonly Dictionary<string, int> vocab;
    private readonly string unk;

    public WordPieceModel(JsonObject o, IReadOnlyList<AddedToken> added, JsonReader r)
    {
        vocab = ReadVocab(o, r);
        unk = r.Str(o["unk_token"] ?? "[UNK]", "model.unk_token");
        var all = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        foreach (var t in added) all.TryAdd(t.Content, t.Id);
        if (!all.ContainsKey(unk)) throw r.Error("model.unk_token", $"a token of the vocabulary ('{unk}' is not)");
        // WordPieceTokenizer reads a vocab.txt: line number = id. Ids missing from the file get lines no text can match.
        int size = all.Values.Max() + 1;
        if (size > 4 * all.Count + 1024) throw r.Error("model.vocab", "ids without large gaps");
        var lines = new string[size];
        foreach (var (t, id) in all)
        {
            if (t.Contains('\n') || t.Contains('\r')) throw r.Error("model.vocab", $"tokens without line breaks ('{t}')");
            lines[id] ??= t;
        }
        for (int i = 0; i < size; i++) lines[i] ??= $"\uE000unused{i}\uE000";
        using var stream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n"));
        wordPiece = WordPieceTokenizer.Create(stream, new WordPieceOptions
        {
            UnknownToken = unk,
            ContinuingSubwordPrefix = r.Str(o["continuing_subword_prefix"] ?? "##", "model.continuing_subword_prefix"),
            MaxInputCharsPerWord = r.OptInt(o["max_input_chars_per_word"], "model.max_input_chars_per_word", 100),
        });
    }

    public override IReadOnlyDictionary<string, int> Vocab => vocab;
    public override string? UnknownToken => unk;

    public override void Encode(string pretoken, List<string> output)
    {
        foreach (var t in wordPiece.EncodeToTokens(pretoken, out _, considerPreTokenization: false, considerNormalization: false))
            output.Add(t.Value);
    }
}
