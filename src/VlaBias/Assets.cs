// Where the files vlatune ships (recipes/, data/scenes/world.json, data/words/, data/probing/, eval/suites/,
// checkpoints/tiny-base) are found. Relative paths mean the current folder first, as in a checkout; when a relative
// path is not there, the copy installed with the tool (`dotnet tool install`, under assets/ next to vlatune.dll) or
// under $VLATUNE_HOME is used instead. Outputs are never redirected: they stay relative to the current folder.
namespace VlaBias;

public static class Assets
{
    public const string HomeVariable = "VLATUNE_HOME";

    /// <summary>Folders searched after the current one: $VLATUNE_HOME, then the tool's own assets/ folder.</summary>
    public static IEnumerable<string> Roots
    {
        get
        {
            if (Environment.GetEnvironmentVariable(HomeVariable) is { Length: > 0 } home) yield return home;
            yield return Path.Combine(AppContext.BaseDirectory, "assets");
        }
    }

    /// <summary>The path as given if it exists (or is absolute); else the first shipped copy that exists; else the path as given.</summary>
    public static string Resolve(string path)
    {
        if (Path.IsPathRooted(path) || File.Exists(path) || Directory.Exists(path)) return path;
        foreach (var root in Roots)
        {
            string candidate = Path.Combine(root, path);
            if (File.Exists(candidate) || Directory.Exists(candidate)) return candidate;
        }
        return path;
    }
}
