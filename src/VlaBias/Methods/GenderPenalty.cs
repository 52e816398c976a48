// Penalty-guided decoding: beam search where appending a gendered token costs λ, i.e. the candidate's score is
// log p(token) − λ·1[token is a gendered word]. The ideal rule penalises a gendered word only where the image gives no
// evidence of gender (the evaluator knows which items are 'unclear'); at inference there is no label, so this penalises
// gendered words ALWAYS: a confident gendered word survives a small λ, a guessed one is replaced by a neutral one.
// Words → tokens: a word counts when it is one token of the vocabulary as written, or with the SentencePiece (▁) or
// byte-level BPE (Ġ) word-start marker; multi-token words are not penalised (tiny-base's WordPiece vocabulary has every
// world word as one token).
using System.Text.Json.Nodes;
using VlaBias.Generation;
using VlaBias.Text;

namespace VlaBias.Methods;

public static class GenderPenalty
{
    /// <summary>λ·1[next is gendered], as a TokenPenalty (subtracted from the log-probability). λ = 0 gives 0 everywhere.</summary>
    public static TokenPenalty Create(VlaTokenizer tokenizer, IEnumerable<string> words, double lambda)
    {
        var ids = TokenIds(tokenizer, words);
        return (_, next) => ids.Contains(next) ? -lambda : 0.0;
    }

    public static HashSet<int> TokenIds(VlaTokenizer tokenizer, IEnumerable<string> words)
    {
        var ids = new HashSet<int>();
        foreach (var w in words)
            foreach (var form in new[] { w, "▁" + w, "Ġ" + w, char.ToUpperInvariant(w[0]) + w[1..], "▁" + char.ToUpperInvariant(w[0]) + w[1..], "Ġ" + char.ToUpperInvariant(w[0]) + w[1..] })
                if (tokenizer.TryGetId(form, out var id)) ids.Add(id);
        return ids;
    }

    /// <summary>Words of a gender_words.json-style file ("man" + "woman" lists) or of a text file (one word per line).</summary>
    public static IReadOnlyList<string> LoadWords(string path)
    {
        path = Assets.Resolve(path);
        if (!File.Exists(path)) throw new BadInputException($"{path}: penalty word list not found");
        var text = File.ReadAllText(path);
        if (text.TrimStart().StartsWith('{'))
        {
            JsonObject o;
            try { o = JsonNode.Parse(text) as JsonObject ?? throw new BadInputException($"{path}: expected a JSON object"); }
            catch (System.Text.Json.JsonException e) { throw new BadInputException($"{path}: not valid JSON ({e.Message})"); }
            var lists = new[] { "man", "woman" }.Select(k => o[k] as JsonArray ?? throw new BadInputException($"{path}: missing list '{k}'"));
            return lists.SelectMany(a => a.Select(x => x!.GetValue<string>().ToLowerInvariant())).Distinct().ToList();
        }
        var words = text.Split('\n').Select(l => l.Trim().ToLowerInvariant()).Where(l => l.Length > 0 && !l.StartsWith('#')).Distinct().ToList();
        if (words.Count == 0) throw new BadInputException($"{path}: no words");
        return words;
    }
}
