// CaptionTokenizer: one caption string in, one string of space-separated lowercase tokens out, punctuation removed.
//
// It stands in for what pycocoevalcap does before scoring (tokenizer/ptbtokenizer.py): run Stanford CoreNLP 3.4.1's
// PTBTokenizer with -preserveLines -lowerCase on each caption, then drop every token in
//     '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;
// and join what is left with single spaces. We do not run Java; instead:
//   1. Newlines and tabs become spaces; curly quotes (‘ ’ “ ”) become ASCII ' and "; the text is lowercased
//      (invariant culture).
//   2. The text is split on whitespace, and each chunk is split further:
//      - ( ) [ ] { } " ? ! ; are always tokens of their own;
//      - , and : are tokens of their own except between two digits (1,000 and 10:30 stay whole);
//      - $ and % are split off (PTB: "$5" -> "$ 5", "50%" -> "50 %");
//      - from the end of a word we peel "..." (ellipsis), a final "." unless the word is an abbreviation
//        (letter-dot sequences such as "u.s." or "a.m.", or mr. mrs. ms. dr. st. jr. sr. vs. etc. inc. ltd. co. mt.
//        prof.), trailing hyphens and a trailing ' or ` (e.g. "dogs'" -> "dogs '");
//      - from the start of a word we peel an opening ' or ` unless the rest is a clitic or starts with a digit
//        ("'90s" stays);
//      - clitics are split the PTB way: n't ("don't" -> "do n't", "can't" -> "ca n't"), 's 'm 'd 're 've 'll
//        ("person's" -> "person 's"), and the Treebank special words cannot -> can not, gonna -> gon na,
//        gotta -> got ta, wanna -> wan na, gimme -> gim me, lemme -> lem me;
//      - hyphens and slashes inside a word are kept ("t-shirt", "and/or").
//   3. Tokens that are punctuation in pycocoevalcap's list (in the raw forms we produce: " ' ` `` '' ( ) { } . ? ! ,
//      : - -- ... ;) are dropped, and so are [ ] and runs of three or more hyphens.
//
// Where Java's PTBTokenizer can differ (rare in captions):
//   - "[" / "]" become -LSB- / -RSB- in Java, which are not in pycocoevalcap's list, so pycocoevalcap keeps them as
//     tokens; we drop them.
//   - Java groups runs such as "!!" or "?!" into one token that survives the filter; we split and drop them.
//   - Java's abbreviation lists are much longer (months, titles, company suffixes, ...); a period after an
//     abbreviation we don't know is split off and dropped here but kept in Java ("feb." -> "feb" here, "feb." there).
//   - Java recognises URLs, e-mail addresses, emoticons, SGML tags, fractions, and normalises some characters
//     (e.g. "&" inside entities, non-breaking spaces, soft hyphens); we leave such text as ordinary word chunks.
//   - Java also splits a few more contractions ("'tis", "d'ye", "more'n"); we don't.
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// Lowercases a caption and splits off / removes punctuation the way pycocoevalcap's PTBTokenizer step does
/// (Stanford PTBTokenizer -lowerCase, then removal of <c>'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;</c>).
/// The output is the tokens joined by single spaces, ready for <see cref="Bleu"/>, <see cref="RougeL"/> and
/// <see cref="CiderD"/>. See the file header for the exact rules and where they can differ from Java.
/// </summary>
public static partial class CaptionTokenizer
{
    static readonly HashSet<string> Dropped = new(StringComparer.Ordinal)
    {
        "\"", "'", "`", "``", "''", "(", ")", "{", "}", "[", "]", ".", "?", "!", ",", ":", "-", "--", "...", ";",
    };

    static readonly HashSet<string> Abbreviations = new(StringComparer.Ordinal)
    {
        "mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.", "etc.", "inc.", "ltd.", "co.", "mt.", "prof.",
    };

    static readonly string[] Clitics = ["'s", "'m", "'d", "'re", "'ve", "'ll"];

    static readonly Dictionary<string, string[]> SpecialWords = new(StringComparer.Ordinal)
    {
        ["cannot"] = ["can", "not"], ["gonna"] = ["gon", "na"], ["gotta"] = ["got", "ta"],
        ["wanna"] = ["wan", "na"], ["gimme"] = ["gim", "me"], ["lemme"] = ["lem", "me"],
    };

    [GeneratedRegex(@"^([a-z]\.)+$")]
    private static partial Regex LetterDots();

    /// <summary>Tokens of <paramref name="caption"/>, lowercased, punctuation removed, joined by single spaces.</summary>
    public static string Tokenize(string caption) => string.Join(' ', Tokens(caption));

    /// <summary>The tokens of <see cref="Tokenize"/> as a list.</summary>
    public static List<string> Tokens(string caption)
    {
        var text = Normalize(caption ?? "");
        var raw = new List<string>();
        foreach (var chunk in text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
            SplitChunk(chunk, raw);
        var kept = new List<string>(raw.Count);
        foreach (var t in raw)
            if (!Dropped.Contains(t) && !IsHyphenRun(t)) kept.Add(t);
        return kept;
    }

    static string Normalize(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (var c in s)
        {
            sb.Append(c switch
            {
                '\u2018' or '\u2019' => '\'',
                '\u201C' or '\u201D' => '"',
                '\n' or '\r' or '\t' => ' ',
                _ => c,
            });
        }
        return sb.ToString().ToLower(CultureInfo.InvariantCulture);
    }

    static bool IsHyphenRun(string t) => t.Length > 0 && t.All(c => c == '-');

    // Splits one whitespace-free chunk at the characters that are always (or contextually) tokens of their own,
    // and hands the words in between to SplitWord.
    static void SplitChunk(string chunk, List<string> output)
    {
        var word = new StringBuilder();
        for (int i = 0; i < chunk.Length; i++)
        {
            char c = chunk[i];
            bool betweenDigits = i > 0 && i + 1 < chunk.Length && char.IsDigit(chunk[i - 1]) && char.IsDigit(chunk[i + 1]);
            bool standalone = c is '(' or ')' or '[' or ']' or '{' or '}' or '"' or '?' or '!' or ';' or '$' or '%'
                              || (c is ',' or ':' && !betweenDigits);
            if (standalone)
            {
                FlushWord(word, output);
                output.Add(c.ToString());
            }
            else word.Append(c);
        }
        FlushWord(word, output);
    }

    static void FlushWord(StringBuilder word, List<string> output)
    {
        if (word.Length == 0) return;
        SplitWord(word.ToString(), output);
        word.Clear();
    }

    static void SplitWord(string w, List<string> output)
    {
        // Opening quotes.
        while (w.Length > 1 && (w[0] == '\'' || w[0] == '`') && !IsCliticOrNumber(w))
        {
            output.Add(w[0].ToString());
            w = w[1..];
        }
        // Closing punctuation, peeled from the end; emitted after the word in original order.
        var suffixes = new List<string>();
        while (w.Length > 0)
        {
            if (w.Length > 3 && w.EndsWith("...", StringComparison.Ordinal)) { suffixes.Add("..."); w = w[..^3]; }
            else if (w.Length > 1 && w[^1] == '.' && !IsAbbreviation(w)) { suffixes.Add("."); w = w[..^1]; }
            else if (w.Length > 1 && w[^1] == '-') { suffixes.Add("-"); w = w[..^1]; }
            else if (w.Length > 1 && (w[^1] == '\'' || w[^1] == '`') && !IsCliticOrNumber(w)) { suffixes.Add(w[^1].ToString()); w = w[..^1]; }
            else break;
        }
        foreach (var part in SplitClitic(w)) output.Add(part);
        for (int i = suffixes.Count - 1; i >= 0; i--) output.Add(suffixes[i]);
    }

    static bool IsCliticOrNumber(string w) =>
        Clitics.Contains(w) || w == "n't" || (w.Length > 1 && char.IsDigit(w[1]));

    static bool IsAbbreviation(string w) => Abbreviations.Contains(w) || LetterDots().IsMatch(w);

    static IEnumerable<string> SplitClitic(string w)
    {
        if (SpecialWords.TryGetValue(w, out var parts)) return parts;
        if (w.Length > 3 && w.EndsWith("n't", StringComparison.Ordinal)) return [w[..^3], "n't"];
        foreach (var clitic in Clitics)
            if (w.Length > clitic.Length && w.EndsWith(clitic, StringComparison.Ordinal))
                return [w[..^clitic.Length], clitic];
        return [w];
    }
}
