// The closed vocabularies of a manifest, as enums in code and as their lower-case names on disk (manifest.jsonl,
// samples.jsonl, reports): the split an item belongs to, its presented gender, and the kind of a question.
// Name() gives the name on disk; where names are sorted or used as keys (reports, rebalancing) they are compared as
// these names, so outputs keep the order they always had.
using System.Text.Json;
using System.Text.Json.Serialization;

namespace VlaBias.Data;

/// <summary>train | val | test | pretrain | tune (an item's split), or train | test (an attribute's: whether tuning may see it).</summary>
public enum Split { Train, Val, Test, Pretrain, Tune }

/// <summary>man | woman | unclear: the gender the image presents.</summary>
public enum Gender { Man, Woman, Unclear }

/// <summary>fact (has a right answer) | probe (asks about an attribute the image gives no evidence of).</summary>
public enum QuestionKind { Fact, Probe }

public static class ManifestValues
{
    /// <summary>Enums as their lower-case names in JSON (Split.Val ↔ "val").</summary>
    public static readonly JsonConverter Json = new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false);

    public static string Name(this Split s) => s switch
    {
        Split.Train => "train", Split.Val => "val", Split.Test => "test", Split.Pretrain => "pretrain", _ => "tune",
    };

    public static string Name(this Gender g) => g switch { Gender.Man => "man", Gender.Woman => "woman", _ => "unclear" };

    public static string Name(this QuestionKind k) => k == QuestionKind.Fact ? "fact" : "probe";

    public static readonly IReadOnlyList<Split> Splits = Enum.GetValues<Split>();
    public static readonly IReadOnlyList<Gender> Genders = Enum.GetValues<Gender>();

    public static bool TryParseSplit(string? name, out Split split)
    {
        foreach (var s in Splits) if (s.Name() == name) { split = s; return true; }
        split = default;
        return false;
    }

    public static bool TryParseGender(string? name, out Gender gender)
    {
        foreach (var g in Genders) if (g.Name() == name) { gender = g; return true; }
        gender = default;
        return false;
    }

    /// <summary>The split named <paramref name="name"/>; a BadInputException naming <paramref name="field"/> otherwise.</summary>
    public static Split ParseSplit(string name, string field = "split") => TryParseSplit(name, out var s) ? s
        : throw new BadInputException($"{field}: unknown value '{name}' (expected {string.Join('|', Splits.Select(Name))})");

    /// <summary>The gender named <paramref name="name"/>; a BadInputException naming <paramref name="field"/> otherwise.</summary>
    public static Gender ParseGender(string name, string field = "gender") => TryParseGender(name, out var g) ? g
        : throw new BadInputException($"{field}: unknown value '{name}' (expected {string.Join('|', Genders.Select(Name))})");
}
