// The probing benchmark in the manner of Girrbach et al.: yes/no questions about personality traits, skills and
// occupations (data/probing/probing.json, our own wording and lists, each list split train/test), asked with and
// without an "unknown" option. In: the JSON file. Out: ManifestQuestions (kind "probe", attribute = the value,
// attribute_split = train|test, options), added to manifest items by the importers. The evaluator scores them as
// option probabilities in one forward pass and reports the group gap per attribute and the pairwise gap where
// counterfactual pairs exist (Evaluation/Metrics).
using System.Text.Json.Nodes;

namespace VlaBias.Data;

public sealed record ProbeCategory(string Name, string Question, IReadOnlyList<string> Train, IReadOnlyList<string> Test);

public sealed class ProbingSuite
{
    public const string DefaultPath = "data/probing/probing.json";
    public static readonly string[] YesNo = ["yes", "no"];
    public static readonly string[] YesNoUnknown = ["yes", "no", "unknown"];

    public ProbingSuite(IReadOnlyList<ProbeCategory> categories, string answerYesNo, string answerWithUnknown)
    {
        Categories = categories; AnswerYesNo = answerYesNo; AnswerWithUnknown = answerWithUnknown;
    }

    public IReadOnlyList<ProbeCategory> Categories { get; }
    public string AnswerYesNo { get; }
    public string AnswerWithUnknown { get; }

    public static ProbingSuite Load(string path = DefaultPath)
    {
        path = Assets.Resolve(path);
        if (!File.Exists(path)) throw new BadInputException($"{path}: probing suite not found");
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new BadInputException($"{path}: expected a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new BadInputException($"{path}: not valid JSON ({e.Message})"); }
        string Str(JsonNode? n, string field) => n is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0
            ? s : throw new BadInputException($"{path}: field '{field}': expected a non-empty string");
        IReadOnlyList<string> List(JsonNode? n, string field) => n is JsonArray a && a.Count > 0
            ? a.Select((x, i) => Str(x, $"{field}[{i}]")).ToList() : throw new BadInputException($"{path}: field '{field}': expected a non-empty list");
        if (o["categories"] is not JsonObject cats) throw new BadInputException($"{path}: field 'categories': expected an object");
        var list = new List<ProbeCategory>();
        foreach (var (name, node) in cats)
        {
            var q = Str(node?["question"], $"categories.{name}.question");
            if (!q.Contains("{value}")) throw new BadInputException($"{path}: field 'categories.{name}.question': has no {{value}} placeholder");
            list.Add(new ProbeCategory(name, q, List(node?["train"], $"categories.{name}.train"), List(node?["test"], $"categories.{name}.test")));
        }
        var seen = list.SelectMany(c => c.Train.Concat(c.Test)).GroupBy(x => x).FirstOrDefault(g => g.Count() > 1);
        if (seen is not null) throw new BadInputException($"{path}: value '{seen.Key}' appears twice (values name attributes and must be unique)");
        return new ProbingSuite(list, Str(o["answer_yes_no"], "answer_yes_no"), Str(o["answer_with_unknown"], "answer_with_unknown"));
    }

    /// <summary>Every probe question: each value of each category, train then test, with yes/no and with yes/no/unknown.</summary>
    public IReadOnlyList<ManifestQuestion> Questions(bool withUnknown = true, bool withoutUnknown = true)
    {
        var result = new List<ManifestQuestion>();
        foreach (var c in Categories)
            foreach (var (values, split) in new[] { (c.Train, "train"), (c.Test, "test") })
                foreach (var v in values)
                {
                    string q = c.Question.Replace("{article}", "aeiou".Contains(v[0]) ? "an" : "a").Replace("{value}", v);
                    if (withoutUnknown) result.Add(new ManifestQuestion { Q = $"{q} {AnswerYesNo}", Kind = QuestionKind.Probe, Attribute = v, AttributeSplit = ManifestValues.ParseSplit(split), Options = YesNo });
                    if (withUnknown) result.Add(new ManifestQuestion { Q = $"{q} {AnswerWithUnknown}", Kind = QuestionKind.Probe, Attribute = v, AttributeSplit = ManifestValues.ParseSplit(split), Options = YesNoUnknown });
                }
        return result;
    }

    /// <summary>The item with every probe question appended (existing questions kept; no answers: probes have none).</summary>
    public ManifestItem AddTo(ManifestItem item, bool withUnknown = true, bool withoutUnknown = true) =>
        item with { Questions = item.Questions.Concat(Questions(withUnknown, withoutUnknown)).ToList() };
}
