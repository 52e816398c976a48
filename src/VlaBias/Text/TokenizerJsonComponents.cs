// The stages of a Hugging Face tokenizer.json pipeline, each built from its JSON object: normalizers, pre-tokenizers,
// post-processors and decoders, as the Rust `tokenizers` library (what Python's `tokenizer(text)` runs) defines them.
// Transformers.js follows the same definitions for the components Llama, Qwen2 and BERT-style files use; where it
// departs (Punctuation groups runs, Whitespace is ASCII-only, Metaspace ignores `split`), the Rust behaviour is kept.
// Regexes are Oniguruma patterns that .NET reads as they are; they run over code points, not UTF-16 units
// (CodePointRegex), so letters and digits outside the BMP fall in the same classes as in Rust and JavaScript.
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace VlaBias.Text;

/// <summary>Reads fields of one tokenizer.json, naming the file and field path in every error.</summary>
internal sealed class JsonReader(string source)
{
    public string Source { get; } = source;

    public BadInputException Error(string field, string expected) => new($"{Source}: field '{field}': expected {expected}");

    public JsonObject Obj(JsonNode? node, string field) => node as JsonObject ?? throw Error(field, "an object");
    public JsonArray Arr(JsonNode? node, string field) => node as JsonArray ?? throw Error(field, "an array");

    public string Str(JsonNode? node, string field) =>
        node is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Error(field, "a string");

    public string? OptStr(JsonNode? node, string field) => node is null ? null : Str(node, field);

    public bool Bool(JsonNode? node, string field, bool dflt) => node switch
    {
        null => dflt,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        _ => throw Error(field, "true or false"),
    };

    public int Int(JsonNode? node, string field)
    {
        if (node is JsonValue v)
        {
            if (v.TryGetValue<int>(out var i)) return i;
            if (v.TryGetValue<long>(out var l) && l is >= int.MinValue and <= int.MaxValue) return (int)l;
            if (v.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
        }
        throw Error(field, "an integer");
    }

    public int OptInt(JsonNode? node, string field, int dflt) => node is null ? dflt : Int(node, field);

    public string Type(JsonObject o, string field) => Str(o["type"], field + ".type");
}

/// <summary>A regex applied over code points: characters outside the BMP are matched as one character of their category.</summary>
internal sealed class CodePointRegex
{
    private readonly Regex regex;
    public CodePointRegex(string pattern, string source, string field)
    {
        try { regex = new Regex(pattern, RegexOptions.CultureInvariant); }
        catch (ArgumentException e) { throw new BadInputException($"{source}: field '{field}': regex '{pattern}' is not supported ({e.Message})"); }
    }

    /// <summary>(start, length) of every non-empty match, in UTF-16 units of <paramref name="text"/>.</summary>
    public List<(int Start, int Length)> Matches(string text)
    {
        var result = new List<(int, int)>();
        if (!text.Any(char.IsSurrogate))
        {
            foreach (Match m in regex.Matches(text)) if (m.Length > 0) result.Add((m.Index, m.Length));
            return result;
        }
        // Shadow string: one BMP stand-in of the same Unicode category per supplementary code point, and the map back.
        var shadow = new StringBuilder(text.Length);
        var origin = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length; i++)
        {
            origin.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                shadow.Append(StandIn(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]))));
                i++;
            }
            else shadow.Append(text[i]);
        }
        origin.Add(text.Length);
        foreach (Match m in regex.Matches(shadow.ToString()))
            if (m.Length > 0) result.Add((origin[m.Index], origin[m.Index + m.Length] - origin[m.Index]));
        return result;
    }

    // A BMP character of each general category that tokenizer patterns do not name literally.
    private static char StandIn(UnicodeCategory c) => c switch
    {
        UnicodeCategory.UppercaseLetter => 'Ā', UnicodeCategory.LowercaseLetter => 'ā', UnicodeCategory.TitlecaseLetter => 'ǅ',
        UnicodeCategory.ModifierLetter => 'ʰ', UnicodeCategory.OtherLetter => 'ª',
        UnicodeCategory.NonSpacingMark => '\u0300', UnicodeCategory.SpacingCombiningMark => '\u0903', UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '٣', UnicodeCategory.LetterNumber => 'Ⅲ', UnicodeCategory.OtherNumber => '¼',
        UnicodeCategory.ConnectorPunctuation => '‿', UnicodeCategory.DashPunctuation => '‐', UnicodeCategory.OpenPunctuation => '⁅',
        UnicodeCategory.ClosePunctuation => '⁆', UnicodeCategory.InitialQuotePunctuation => '‹', UnicodeCategory.FinalQuotePunctuation => '›',
        UnicodeCategory.OtherPunctuation => '¶', UnicodeCategory.MathSymbol => '¬', UnicodeCategory.CurrencySymbol => '¢',
        UnicodeCategory.ModifierSymbol => '¨', UnicodeCategory.OtherSymbol => '¦',
        UnicodeCategory.Format => '\u200E', UnicodeCategory.PrivateUse => '\uE000',
        _ => '\u0378',   // unassigned
    };
}

// ---- normalizers ---------------------------------------------------------------------------------------------------

internal static class Normalizers
{
    public static Func<string, string>? Create(JsonNode? node, JsonReader r, string field)
    {
        if (node is null) return null;
        var o = r.Obj(node, field);
        switch (r.Type(o, field))
        {
            case "Sequence":
                var parts = r.Arr(o["normalizers"], field + ".normalizers").Select((n, i) => Create(n, r, $"{field}.normalizers[{i}]")).Where(f => f is not null).ToArray();
                return s => parts.Aggregate(s, (acc, f) => f!(acc));
            case "NFC": return s => UnicodeNormalization.Normalize(s, NormalizationForm.FormC);
            case "NFD": return s => UnicodeNormalization.Normalize(s, NormalizationForm.FormD);
            case "NFKC": return s => UnicodeNormalization.Normalize(s, NormalizationForm.FormKC);
            case "NFKD": return s => UnicodeNormalization.Normalize(s, NormalizationForm.FormKD);
            case "Lowercase": return s => s.ToLowerInvariant();
            case "StripAccents": return StripMarks;
            case "Strip":
                bool left = r.Bool(o["strip_left"], field + ".strip_left", false), right = r.Bool(o["strip_right"], field + ".strip_right", false);
                return s => left && right ? s.Trim() : left ? s.TrimStart() : right ? s.TrimEnd() : s;
            case "Prepend":
                string prepend = r.Str(o["prepend"], field + ".prepend");
                return s => s.Length == 0 ? s : prepend + s;
            case "Replace":
                var (pattern, content) = (Pattern.Create(r.Obj(o["pattern"], field + ".pattern"), r, field + ".pattern"), r.Str(o["content"], field + ".content"));
                return s => pattern.Replace(s, content);
            case "BertNormalizer":
                return Bert(r.Bool(o["clean_text"], field + ".clean_text", true), r.Bool(o["handle_chinese_chars"], field + ".handle_chinese_chars", true),
                    o["strip_accents"] is JsonValue sv && sv.TryGetValue<bool>(out var sa) ? sa : null, r.Bool(o["lowercase"], field + ".lowercase", true));
            case "Precompiled":
                // The SentencePiece charsmap (NFKC plus a few rules); Transformers.js approximates it the same way.
                return s => UnicodeNormalization.Normalize(Regex.Replace(Regex.Replace(s, "[\u0001-\u0008\u000B\u000E-\u001F\u007F\u008F\u009F]", ""),
                    "[\u0009\u000A\u000C\u000D\u00A0\u1680\u2000-\u200F\u2028\u2029\u202F\u205F\u2581\u3000\uFEFF\uFFFD]", " "), NormalizationForm.FormKC);
            case var t: throw new BadInputException($"{r.Source}: field '{field}': normalizer type '{t}' is not supported");
        }
    }

    /// <summary>NFD, then drop non-spacing marks (Rust's StripAccents).</summary>
    private static string StripMarks(string s)
    {
        var d = UnicodeNormalization.Normalize(s, NormalizationForm.FormD);
        var sb = new StringBuilder(d.Length);
        foreach (var ch in d) if (CharUnicodeInfo.GetUnicodeCategory(ch) != UnicodeCategory.NonSpacingMark) sb.Append(ch);
        return sb.ToString();
    }

    private static Func<string, string> Bert(bool clean, bool chinese, bool? stripAccents, bool lower) => s =>
    {
        var sb = new StringBuilder(s.Length);
        foreach (var rune in s.EnumerateRunes())
        {
            int cp = rune.Value;
            if (clean)
            {
                if (cp == 0 || cp == 0xFFFD || IsControl(rune)) continue;
                if (Rune.IsWhiteSpace(rune)) { sb.Append(' '); continue; }
            }
            if (chinese && IsChinese(cp)) { sb.Append(' ').Append(rune.ToString()).Append(' '); continue; }
            sb.Append(rune.ToString());
        }
        var text = sb.ToString();
        if (stripAccents ?? lower) text = StripMarks(text);
        return lower ? text.ToLowerInvariant() : text;
    };

    private static bool IsControl(Rune r) => r.Value is not ('\t' or '\n' or '\r') &&
        Rune.GetUnicodeCategory(r) is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.PrivateUse or UnicodeCategory.Surrogate;

    internal static bool IsChinese(int cp) => cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF
        or >= 0x2A700 and <= 0x2B73F or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}

/// <summary>A tokenizer.json pattern: {"String": s} (literal) or {"Regex": r}.</summary>
internal sealed class Pattern
{
    private readonly string? literal;
    private readonly CodePointRegex? regex;
    private Pattern(string? literal, CodePointRegex? regex) { this.literal = literal; this.regex = regex; }

    public static Pattern Create(JsonObject o, JsonReader r, string field)
    {
        if (o["String"] is { } s) { var lit = r.Str(s, field + ".String"); return lit.Length == 0 ? throw r.Error(field + ".String", "a non-empty string") : new(lit, null); }
        if (o["Regex"] is { } re) return new(null, new CodePointRegex(r.Str(re, field + ".Regex"), r.Source, field + ".Regex"));
        throw r.Error(field, "{\"String\": …} or {\"Regex\": …}");
    }

    public List<(int Start, int Length)> Matches(string text)
    {
        if (regex is not null) return regex.Matches(text);
        var result = new List<(int, int)>();
        for (int at = text.IndexOf(literal!, StringComparison.Ordinal); at >= 0; at = text.IndexOf(literal!, at + literal!.Length, StringComparison.Ordinal))
            result.Add((at, literal!.Length));
        return result;
    }

    public string Replace(string text, string content)
    {
        var sb = new StringBuilder(text.Length);
        int prev = 0;
        foreach (var (start, length) in Matches(text)) { sb.Append(text, prev, start - prev).Append(content); prev = start + length; }
        return sb.Append(text, prev, text.Length - prev).ToString();
    }
}

// ---- pre-tokenizers -------------------------------------------------------------------------------------------------

/// <summary>A piece of text between pre-tokenizer splits; AtStart: it begins at offset 0 of the whole input.</summary>
internal readonly record struct Piece(string Text, bool AtStart);

internal static class PreTokenizers
{
    public delegate List<Piece> Step(Piece piece);

    public static Step? Create(JsonNode? node, JsonReader r, string field)
    {
        if (node is null) return null;
        var o = r.Obj(node, field);
        switch (r.Type(o, field))
        {
            case "Sequence":
                var steps = r.Arr(o["pretokenizers"], field + ".pretokenizers").Select((n, i) => Create(n, r, $"{field}.pretokenizers[{i}]")).Where(s => s is not null).ToArray();
                return p => steps.Aggregate(new List<Piece> { p }, (pieces, step) => pieces.SelectMany(x => step!(x)).ToList());
            case "ByteLevel":
                return ByteLevel(r.Bool(o["add_prefix_space"], field + ".add_prefix_space", true), r.Bool(o["use_regex"], field + ".use_regex", true), r);
            case "Metaspace":
                return Metaspace(o, r, field);
            case "Split":
                var pattern = Pattern.Create(r.Obj(o["pattern"], field + ".pattern"), r, field + ".pattern");
                bool invert = r.Bool(o["invert"], field + ".invert", false);
                string behavior = r.Str(o["behavior"] ?? "Isolated", field + ".behavior");
                return p => Split(p, invert ? Invert(p.Text, pattern.Matches(p.Text)) : pattern.Matches(p.Text), behavior, r, field);
            case "Whitespace":
                var words = new CodePointRegex(@"\w+|[^\w\s]+", r.Source, field);
                return p => Split(p, words.Matches(p.Text), "Removed-Invert", r, field);
            case "WhitespaceSplit":
                var nonSpace = new CodePointRegex(@"\S+", r.Source, field);
                return p => Split(p, nonSpace.Matches(p.Text), "Removed-Invert", r, field);
            case "BertPreTokenizer":
                // Split on whitespace (removed) and on each punctuation character (isolated).
                var bert = new CodePointRegex(@"[^\s\p{P}!-/:-@\[-`{-~]+|[\p{P}!-/:-@\[-`{-~]", r.Source, field);
                return p => Split(p, bert.Matches(p.Text), "Removed-Invert", r, field);
            case "Punctuation":
                var punct = new CodePointRegex(@"[\p{P}!-/:-@\[-`{-~]", r.Source, field);
                string pb = r.Str(o["behavior"] ?? "Isolated", field + ".behavior");
                return p => Split(p, punct.Matches(p.Text), pb, r, field);
            case "Digits":
                var digits = new CodePointRegex(r.Bool(o["individual_digits"], field + ".individual_digits", false) ? @"\p{N}" : @"\p{N}+", r.Source, field);
                return p => Split(p, digits.Matches(p.Text), "Isolated", r, field);
            case "Replace":
                var rp = Pattern.Create(r.Obj(o["pattern"], field + ".pattern"), r, field + ".pattern");
                string content = r.Str(o["content"], field + ".content");
                return p => [p with { Text = rp.Replace(p.Text, content) }];
            case var t: throw new BadInputException($"{r.Source}: field '{field}': pre-tokenizer type '{t}' is not supported");
        }
    }

    /// <summary>GPT-2's split pattern (ByteLevel with use_regex).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static Step ByteLevel(bool addPrefixSpace, bool useRegex, JsonReader r)
    {
        var regex = useRegex ? new CodePointRegex(Gpt2Pattern, r.Source, "pre_tokenizer") : null;
        return p =>
        {
            string text = addPrefixSpace && !p.Text.StartsWith(' ') ? " " + p.Text : p.Text;
            var parts = regex is null ? [p with { Text = text }] : Split(p with { Text = text }, regex.Matches(text), "Isolated", r, "pre_tokenizer");
            return parts.Select(x => x with { Text = ByteLevelChars.Encode(x.Text) }).ToList();
        };
    }

    private static Step Metaspace(JsonObject o, JsonReader r, string field)
    {
        string replacement = r.Str(o["replacement"] ?? "▁", field + ".replacement");
        // Older files have add_prefix_space instead of prepend_scheme.
        string scheme = r.OptStr(o["prepend_scheme"], field + ".prepend_scheme") ?? (r.Bool(o["add_prefix_space"], field + ".add_prefix_space", true) ? "always" : "never");
        if (scheme is not ("always" or "first" or "never")) throw r.Error(field + ".prepend_scheme", "always, first or never");
        bool split = r.Bool(o["split"], field + ".split", true);
        return p =>
        {
            string text = p.Text.Replace(" ", replacement);
            if (!text.StartsWith(replacement, StringComparison.Ordinal) && (scheme == "always" || scheme == "first" && p.AtStart)) text = replacement + text;
            if (!split) return [p with { Text = text }];
            var pieces = new List<Piece>();
            int start = 0;
            for (int at = text.IndexOf(replacement, 1, StringComparison.Ordinal); at > 0; at = text.IndexOf(replacement, at + 1, StringComparison.Ordinal))
            {
                pieces.Add(new Piece(text[start..at], p.AtStart && start == 0));
                start = at;
            }
            pieces.Add(new Piece(text[start..], p.AtStart && start == 0));
            return pieces.Where(x => x.Text.Length > 0).ToList();
        };
    }

    private static List<(int, int)> Invert(string text, List<(int Start, int Length)> matches)
    {
        var result = new List<(int, int)>();
        int prev = 0;
        foreach (var (s, l) in matches) { if (s > prev) result.Add((prev, s - prev)); prev = s + l; }
        if (prev < text.Length) result.Add((prev, text.Length - prev));
        return result;
    }

    /// <summary>
    /// Splits at <paramref name="matches"/> with one of Rust's SplitDelimiterBehavior values; "Removed-Invert" keeps
    /// only the matches (what Whitespace and BertPreTokenizer do).
    /// </summary>
    private static List<Piece> Split(Piece p, List<(int Start, int Length)> matches, string behavior, JsonReader r, string field)
    {
        string text = p.Text;
        var spans = new List<(int start, int end)>();
        if (behavior == "Removed-Invert")
        {
            foreach (var (s, l) in matches) spans.Add((s, s + l));
        }
        else
        {
            // (start, end, isMatch) covering the whole text
            var parts = new List<(int s, int e, bool m)>();
            int prev = 0;
            foreach (var (s, l) in matches) { if (s > prev) parts.Add((prev, s, false)); parts.Add((s, s + l, true)); prev = s + l; }
            if (prev < text.Length) parts.Add((prev, text.Length, false));
            switch (behavior)
            {
                case "Isolated": spans.AddRange(parts.Select(x => (x.s, x.e))); break;
                case "Removed": spans.AddRange(parts.Where(x => !x.m).Select(x => (x.s, x.e))); break;
                case "MergedWithPrevious":
                    foreach (var x in parts)
                        if (x.m && spans.Count > 0 && spans[^1].end == x.s && !parts.Any(y => y.m && y.e == x.s)) spans[^1] = (spans[^1].start, x.e);
                        else spans.Add((x.s, x.e));
                    break;
                case "MergedWithNext":
                    for (int i = 0; i < parts.Count; i++)
                        if (parts[i].m && i + 1 < parts.Count && !parts[i + 1].m) { spans.Add((parts[i].s, parts[i + 1].e)); i++; }
                        else spans.Add((parts[i].s, parts[i].e));
                    break;
                case "Contiguous":
                    foreach (var x in parts)
                        if (x.m && spans.Count > 0 && parts.Any(y => y.m && y.e == x.s)) spans[^1] = (spans[^1].start, x.e);
                        else spans.Add((x.s, x.e));
                    break;
                default: throw r.Error(field + ".behavior", "Isolated, Removed, MergedWithPrevious, MergedWithNext or Contiguous");
            }
        }
        return spans.Where(s => s.end > s.start).Select(s => new Piece(text[s.start..s.end], p.AtStart && s.start == 0)).ToList();
    }
}

/// <summary>GPT-2's reversible map between bytes and printable characters (byte-level BPE).</summary>
public static class ByteLevelChars
{
    private static readonly char[] ToChar = Build();
    private static readonly Dictionary<char, byte> ToByte = Enumerable.Range(0, 256).ToDictionary(b => ToChar[b], b => (byte)b);

    private static char[] Build()
    {
        var printable = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToHashSet();
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++) map[b] = printable.Contains(b) ? (char)b : (char)(256 + n++);
        return map;
    }

    public static char[] Table() => (char[])ToChar.Clone();

    public static string Encode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>
    /// The bytes of byte-level tokens decoded as UTF-8 (invalid sequences become U+FFFD); a token with a character
    /// outside the table contributes its own UTF-8, as in Rust's ByteLevel decoder.
    /// </summary>
    public static string Decode(IEnumerable<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens)
        {
            if (t.All(ToByte.ContainsKey)) bytes.AddRange(t.Select(ch => ToByte[ch]));
            else bytes.AddRange(Encoding.UTF8.GetBytes(t));
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}

// ---- post-processors ------------------------------------------------------------------------------------------------

/// <summary>Adds a single sequence's special tokens: (token, id) pairs before and after it.</summary>
internal sealed record PostProcessor((string Token, int Id)[] Before, (string Token, int Id)[] After)
{
    public static readonly PostProcessor None = new([], []);

    public static PostProcessor Create(JsonNode? node, JsonReader r, string field, Func<string, int?> idOf)
    {
        if (node is null) return None;
        var o = r.Obj(node, field);
        (string, int) Special(JsonNode? n, string f)
        {
            // BertProcessing / RobertaProcessing: ["[CLS]", 101]
            var a = r.Arr(n, f);
            return a.Count == 2 ? (r.Str(a[0], f + "[0]"), r.Int(a[1], f + "[1]")) : throw r.Error(f, "[token, id]");
        }
        switch (r.Type(o, field))
        {
            case "ByteLevel": return None;
            case "BertProcessing" or "RobertaProcessing":
                return new([Special(o["cls"], field + ".cls")], [Special(o["sep"], field + ".sep")]);
            case "Sequence":
                var parts = r.Arr(o["processors"], field + ".processors").Select((n, i) => Create(n, r, $"{field}.processors[{i}]", idOf)).ToList();
                // each processor wraps the output of the one before it
                return new(parts.AsEnumerable().Reverse().SelectMany(x => x.Before).ToArray(), parts.SelectMany(x => x.After).ToArray());
            case "TemplateProcessing":
                var specials = o["special_tokens"] as JsonObject ?? new JsonObject();
                var before = new List<(string, int)>();
                var after = new List<(string, int)>();
                bool seenA = false;
                var single = r.Arr(o["single"], field + ".single");
                for (int i = 0; i < single.Count; i++)
                {
                    string f = $"{field}.single[{i}]";
                    var item = r.Obj(single[i], f);
                    if (item["Sequence"] is JsonObject seq)
                    {
                        if (r.Str(seq["id"], f + ".Sequence.id") != "A") throw r.Error(f + ".Sequence.id", "\"A\" in the single template");
                        seenA = true;
                        continue;
                    }
                    string id = r.Str(r.Obj(item["SpecialToken"], f + ".SpecialToken")["id"], f + ".SpecialToken.id");
                    var pairs = new List<(string, int)>();
                    if (specials[id] is JsonObject st)
                    {
                        var ids = r.Arr(st["ids"], $"{field}.special_tokens.{id}.ids");
                        var toks = r.Arr(st["tokens"], $"{field}.special_tokens.{id}.tokens");
                        for (int k = 0; k < ids.Count; k++) pairs.Add((k < toks.Count ? r.Str(toks[k], $"{field}.special_tokens.{id}.tokens[{k}]") : id, r.Int(ids[k], $"{field}.special_tokens.{id}.ids[{k}]")));
                    }
                    else pairs.Add((id, idOf(id) ?? throw r.Error(f + ".SpecialToken.id", $"a token of the vocabulary ('{id}' is not)")));
                    (seenA ? after : before).AddRange(pairs);
                }
                if (!seenA) throw r.Error(field + ".single", "a template with the sequence $A");
                return new(before.ToArray(), after.ToArray());
            case var t: throw new BadInputException($"{r.Source}: field '{field}': post-processor type '{t}' is not supported");
        }
    }
}

// ---- decoders -------------------------------------------------------------------------------------------------------

internal static class Decoders
{
    public delegate List<string> Chain(List<string> tokens);

    public static Chain? Create(JsonNode? node, JsonReader r, string field)
    {
        if (node is null) return null;
        var o = r.Obj(node, field);
        switch (r.Type(o, field))
        {
            case "Sequence":
                var parts = r.Arr(o["decoders"], field + ".decoders").Select((n, i) => Create(n, r, $"{field}.decoders[{i}]")).Where(d => d is not null).ToArray();
                return t => parts.Aggregate(t, (acc, d) => d!(acc));
            case "ByteLevel": return t => [ByteLevelChars.Decode(t)];
            case "Fuse": return t => [string.Concat(t)];
            case "Replace":
                var pattern = Pattern.Create(r.Obj(o["pattern"], field + ".pattern"), r, field + ".pattern");
                string content = r.Str(o["content"], field + ".content");
                return t => t.Select(x => pattern.Replace(x, content)).ToList();
            case "Strip":
                char c = r.Str(o["content"], field + ".content") is { Length: 1 } s ? s[0] : throw r.Error(field + ".content", "one character");
                int start = r.OptInt(o["start"], field + ".start", 0), stop = r.OptInt(o["stop"], field + ".stop", 0);
                return t => t.Select(x => Strip(x, c, start, stop)).ToList();
            case "ByteFallback": return ByteFallback;
            case "Metaspace":
                string rep = r.Str(o["replacement"] ?? "▁", field + ".replacement");
                string scheme = r.OptStr(o["prepend_scheme"], field + ".prepend_scheme") ?? (r.Bool(o["add_prefix_space"], field + ".add_prefix_space", true) ? "always" : "never");
                return t => t.Select((x, i) => i == 0 && scheme != "never" ? x.Replace(rep, "") : x.Replace(rep, " ")).ToList();
            case "WordPiece":
                string prefix = r.Str(o["prefix"] ?? "##", field + ".prefix");
                bool cleanup = r.Bool(o["cleanup"], field + ".cleanup", true);
                return t => t.Select((x, i) =>
                {
                    if (i > 0) x = x.StartsWith(prefix, StringComparison.Ordinal) ? x[prefix.Length..] : " " + x;
                    return cleanup ? CleanUp(x) : x;
                }).ToList();
            case "BPEDecoder":
                string suffix = r.Str(o["suffix"] ?? "</w>", field + ".suffix");
                return t => t.Select((x, i) => x.Replace(suffix, i == t.Count - 1 ? "" : " ")).ToList();
            case var ty: throw new BadInputException($"{r.Source}: field '{field}': decoder type '{ty}' is not supported");
        }
    }

    private static string Strip(string x, char c, int start, int stop)
    {
        int s = 0, e = x.Length;
        while (s < start && s < e && x[s] == c) s++;
        for (int k = 0; k < stop && e > s && x[e - 1] == c; k++) e--;
        return x[s..e];
    }

    // Consecutive <0xXX> tokens become their bytes; bytes that are not valid UTF-8 give one U+FFFD each (as in Rust).
    private static List<string> ByteFallback(List<string> tokens)
    {
        var result = new List<string>();
        var bytes = new List<byte>();
        void Flush()
        {
            if (bytes.Count == 0) return;
            try { result.Add(new UTF8Encoding(false, true).GetString(bytes.ToArray())); }
            catch (DecoderFallbackException) { result.Add(new string('\uFFFD', bytes.Count)); }
            bytes.Clear();
        }
        foreach (var t in tokens)
        {
            if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>' &&
                byte.TryParse(t.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var b)) { bytes.Add(b); continue; }
            Flush();
            result.Add(t);
        }
        Flush();
        return result;
    }

    /// <summary>Hugging Face's clean_up_tokenization: no space before . ? ! , and English contractions.</summary>
    public static string CleanUp(string s) => s.Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",")
        .Replace(" ' ", "'").Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");
}
