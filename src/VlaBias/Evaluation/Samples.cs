// One model output on one evaluation item (a line of samples.jsonl). A sample carries what the metrics
// need about its item (gender, pair, context, role, leans, references), so metrics are computed from samples alone:
// the same code serves an unsharded run, merged shards, and the trainer's validation.
using System.Text.Json;
using System.Text.Json.Serialization;
using VlaBias.Data;

namespace VlaBias.Evaluation;

/// <summary>caption | probe | fact: what the model was asked for.</summary>
public enum SampleKind { Caption, Probe, Fact }

public sealed record Sample
{
    [JsonPropertyName("id")] public string Id { get; init; } = "";
    [JsonPropertyName("kind")] public SampleKind Kind { get; init; }
    [JsonPropertyName("prompt")] public string Prompt { get; init; } = "";
    [JsonPropertyName("output")] public string? Output { get; init; }
    [JsonPropertyName("references")] public IReadOnlyList<string>? References { get; init; }
    [JsonPropertyName("answer")] public string? Answer { get; init; }             // gold answer of a fact question
    [JsonPropertyName("options")] public IReadOnlyList<string>? Options { get; init; }
    [JsonPropertyName("probs")] public IReadOnlyList<double>? Probs { get; init; }  // renormalized over options
    [JsonPropertyName("attribute")] public string? Attribute { get; init; }
    [JsonPropertyName("attribute_split")] public Split? AttributeSplit { get; init; }
    [JsonPropertyName("logprob")] public double? LogProb { get; init; }
    [JsonPropertyName("image")] public string Image { get; init; } = "";
    [JsonPropertyName("gender")] public Gender Gender { get; init; }
    [JsonPropertyName("tone")] public string? Tone { get; init; }
    [JsonPropertyName("pair")] public string? Pair { get; init; }
    [JsonPropertyName("context")] public string? Context { get; init; }
    [JsonPropertyName("role")] public string? Role { get; init; }
    [JsonPropertyName("lean_context")] public string? LeanContext { get; init; }
    [JsonPropertyName("lean_role")] public string? LeanRole { get; init; }

    public double? PYes => Options is null || Probs is null ? null : Probs[IndexOf("yes")];
    private int IndexOf(string option)
    {
        for (int i = 0; i < Options!.Count; i++) if (Options[i] == option) return i;
        return 0;
    }

    public static readonly JsonSerializerOptions Json = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, Converters = { ManifestValues.Json } };

    public string ToLine() => JsonSerializer.Serialize(this, Json);

    /// <summary>A stable key of the sample (item, kind, prompt, options) for caching, sorting and merging shards.</summary>
    public string Key => $"{Id}\u001f{Kind.Name()}\u001f{Prompt}\u001f{(Options is null ? "" : string.Join(",", Options))}";

    public static List<Sample> ReadAll(string path)
    {
        var list = new List<Sample>();
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try { list.Add(JsonSerializer.Deserialize<Sample>(text, Json) ?? throw new JsonException("null")); }
            catch (JsonException e) { throw new BadInputException($"{path}: line {line}: not a sample ({e.Message})"); }
        }
        return list;
    }
}

public static class SampleKinds
{
    public static string Name(this SampleKind k) => k switch { SampleKind.Caption => "caption", SampleKind.Probe => "probe", _ => "fact" };
}
