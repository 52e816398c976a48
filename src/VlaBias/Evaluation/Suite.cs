// An evaluation suite: which manifest and split, which prompts, the word lists the caption metrics use,
// and the statistics settings. Read from eval/suites/<name>.yaml (flat keys, unknown keys are an error).
using VlaBias.Recipes;

namespace VlaBias.Evaluation;

public sealed record Suite(
    string Name, string SourcePath, string Manifest, string Split, string Words, string World,
    string CaptionPrompt, IReadOnlyList<string> ProbeOptions, bool ProbesWithUnknown, bool Captions, bool Facts, bool Probes,
    int MaxNewTokens, int BatchSize, int Bootstrap, int LicSeeds, long Seed)
{
    public static Suite Load(string path, Action<Recipe>? overrides = null)
    {
        var r = Recipe.Load(path);
        overrides?.Invoke(r);
        var s = From(r, path);
        r.CheckAllUsed();
        return s;
    }

    public static Suite From(Recipe r, string path)
    {
        var s = new Suite(
            r.Str("name", Path.GetFileNameWithoutExtension(path)), path,
            r.Str("manifest", "data/generated/scenes/manifest.jsonl"), r.Str("split", "test"),
            r.Str("words", "data/words/gender_words.json"), r.Str("world", "data/scenes/world.json"),
            r.Str("caption_prompt", "describe the image."), r.List("probe_options", ["yes", "no"]),
            r.Bool("probes_with_unknown", true), r.Bool("captions", true), r.Bool("facts", true), r.Bool("probes", true),
            r.Int("max_new_tokens", 16), r.Int("batch_size", 64), r.Int("bootstrap", 1000), r.Int("lic_seeds", 5), r.Long("seed", 0));
        if (s.Bootstrap < 1) throw new BadInputException($"{path}: key 'bootstrap': expected at least 1 resample, got {s.Bootstrap}");
        return s;
    }

    /// <summary>A command-line resample count for the suite's <c>bootstrap</c>, checked before it replaces the suite's:
    /// bad input naming <paramref name="option"/> when below 1 (every confidence interval needs a resample).</summary>
    public static int? BootstrapOption(int? value, string option = "--bootstrap") =>
        value is int b && b < 1 ? throw new BadInputException($"{option}: expected at least 1 resample, got {b}") : value;
}
