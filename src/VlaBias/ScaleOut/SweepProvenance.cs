// The provenance sidecar of a seed-sweep summary: the sweep's command and recipe (from its sweep file), and the model,
// data and suite of its first run (from the run's config.yaml).
using VlaBias.Data;
using VlaBias.Recipes;
using VlaBias.Reproducibility;

namespace VlaBias.ScaleOut;

public static class SweepProvenance
{
    /// <summary>Writes the provenance of <c>outDir</c>/summary.md (<paramref name="here"/>: this process's command line): the sweep's command and recipe, and the model, data and suite of its first run.</summary>
    public static void Record(string outDir, string here, IReadOnlyList<string>? runDirs = null)
    {
        string md = Path.Combine(outDir, SweepSummary.MarkdownFile);
        string? command = null, recipe = null;
        // The sweep's own folder, or the folder of the runs given (a summary written elsewhere, e.g. a committed copy).
        string sweepDir = File.Exists(Path.Combine(outDir, SeedSweep.SweepFile)) || runDirs is not { Count: > 0 }
            ? outDir : Path.GetDirectoryName(Path.GetFullPath(runDirs[0]))!;
        var sweepFile = Path.Combine(sweepDir, SeedSweep.SweepFile);
        if (File.Exists(sweepFile) && System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(sweepFile)) is System.Text.Json.Nodes.JsonObject o)
        {
            command = o["command"]?.GetValue<string>();
            recipe = o["recipe"]?.GetValue<string>();
            runDirs ??= (o["seeds"] as System.Text.Json.Nodes.JsonArray ?? []).Select(s => SeedSweep.RunDir(outDir, s!.GetValue<long>())).ToList();
            if (command is not null && Path.GetFullPath(sweepDir) != Path.GetFullPath(outDir) && !here.Contains(" tune ")) command += " && " + here;
        }
        string? first = runDirs?.FirstOrDefault(d => File.Exists(Path.Combine(d, "config.yaml")));
        string? model = null, data = null, suite = null;
        if (first is not null)
        {
            var c = Recipe.Load(Path.Combine(first, "config.yaml"));
            model = c.OptStr("model"); data = c.OptStr("data"); suite = c.OptStr("suite");
        }
        var inputs = Provenance.InputsOf(recipe is not null && File.Exists(recipe) ? recipe : null, model, data, suite,
            dataGenerated: data == DefaultData.Manifest);
        Provenance.Write(md, command ?? here, inputs);
    }
}
