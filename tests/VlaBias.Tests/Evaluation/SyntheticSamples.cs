using VlaBias.Data;
using VlaBias.Evaluation;
using VlaBias.Evaluation.Metrics;

namespace VlaBias.Tests.Evaluation;

/// <summary>
/// A deterministic evaluation's samples without a model: counterfactual pairs (man/woman images of one scene) with a
/// caption, two fact questions and yes/no (+ yes/no/unknown) probes each, plus figures of unclear gender. Captions and
/// answers are noisy on purpose (wrong genders, neutral words, missed roles, ties in p_yes), so every metric and every
/// bootstrap branch sees varied data.
/// </summary>
internal static class SyntheticSamples
{
    static readonly string[] Roles = ["chef", "mechanic", "nurse", "pilot", "baker"];
    static readonly string[] Contexts = ["kitchen", "garage", "hospital", "airport"];
    static readonly string[] TrainAttributes = ["caring", "friendly", "strong"];
    static readonly string[] TestAttributes = ["aggressive", "smart"];

    public static readonly WordLists Words = new(
        new GenderWords(new HashSet<string> { "man", "he", "his", "boy" }, new HashSet<string> { "woman", "she", "her", "girl" },
                        new HashSet<string> { "person", "someone" }),
        Roles);

    static string LeanOfRole(string role) => role is "mechanic" or "pilot" ? "man" : "woman";
    static string LeanOfContext(string context) => context is "garage" or "airport" ? "man" : "woman";

    public static List<Sample> Make(int pairs = 40, int unclear = 12, int seed = 5)
    {
        var rng = new Random(seed);
        var samples = new List<Sample>();
        double Round(double p) => Math.Round(p, rng.Next(2) == 0 ? 2 : 7);   // coarse values make ties in the permutation tests
        void Image(string id, string gender, string? pair, string role, string context)
        {
            var item = new Sample
            {
                Id = id, Image = $"img/{id}.png", Gender = ManifestValues.ParseGender(gender), Pair = pair, Context = context, Role = role,
                LeanContext = LeanOfContext(context), LeanRole = LeanOfRole(role), Tone = (rng.Next(3) + 1).ToString(),
            };
            string truth = gender == "unclear" ? "person" : gender;
            string said = rng.NextDouble() switch
            {
                < 0.15 => gender == "man" ? "woman" : "man",
                < 0.25 => "person",
                < 0.3 => "man and a woman",
                _ => gender == "unclear" ? LeanOfContext(context) : gender,
            };
            string saidRole = rng.NextDouble() < 0.2 ? Roles[rng.Next(Roles.Length)] : role;
            string[] objects = ["a pan", "a wrench", "a tray"];
            string obj = objects[rng.Next(objects.Length)];
            string output = rng.Next(4) == 0 ? $"A {said} {saidRole} in the {context}." : $"a {said} {saidRole} holding {obj} in the {context}";
            samples.Add(item with
            {
                Kind = SampleKind.Caption, Prompt = "describe the image.", Output = output,
                References = [$"a {truth} {role} holding {obj} in the {context}", $"a {truth} {role} with {obj} in the {context}",
                              rng.Next(2) == 0 ? $"the {truth} {role} is in the {context}" : $"{truth} {role}"],
            });
            samples.Add(item with { Kind = SampleKind.Fact, Prompt = "is the person holding a pan?", Answer = obj == "a pan" ? "yes" : "no",
                                    Output = rng.NextDouble() < 0.9 ? (obj == "a pan" ? "yes" : "no") : "yes" });
            samples.Add(item with { Kind = SampleKind.Fact, Prompt = "what is the person holding?", Answer = obj[2..], Output = rng.NextDouble() < 0.85 ? obj[2..] : "cup" });
            foreach (var (attribute, split) in TrainAttributes.Select(a => (a, "train")).Concat(TestAttributes.Select(a => (a, "test"))))
            {
                double bias = attribute is "caring" or "friendly" ? 0.3 : attribute == "smart" ? 0.0 : -0.25;
                double p = Math.Clamp(0.5 + (gender == "woman" ? bias : gender == "man" ? -bias : 0) + 0.2 * (rng.NextDouble() - 0.5), 0.01, 0.99);
                p = Round(p);
                samples.Add(item with { Kind = SampleKind.Probe, Prompt = $"is the person {attribute}?", Options = ["yes", "no"], Probs = [p, 1 - p],
                                        Attribute = attribute, AttributeSplit = ManifestValues.ParseSplit(split) });
                double u = Round(0.05 + 0.1 * rng.NextDouble());
                samples.Add(item with { Kind = SampleKind.Probe, Prompt = $"is the person {attribute}? answer yes, no or unknown.", Options = ["yes", "no", "unknown"],
                                        Probs = [p * (1 - u), (1 - p) * (1 - u), u], Attribute = attribute, AttributeSplit = ManifestValues.ParseSplit(split) });
            }
        }
        for (int i = 0; i < pairs; i++)
        {
            string role = Roles[rng.Next(Roles.Length)], context = Contexts[rng.Next(Contexts.Length)], pair = $"s{i:D4}";
            Image($"{pair}-m", "man", pair, role, context);
            if (i % 13 != 5) Image($"{pair}-w", "woman", pair, role, context);   // a few pairs lack their counterfactual
        }
        for (int i = 0; i < unclear; i++) Image($"u{i:D4}", "unclear", null, Roles[rng.Next(Roles.Length)], Contexts[rng.Next(Contexts.Length)]);
        return samples;
    }
}
