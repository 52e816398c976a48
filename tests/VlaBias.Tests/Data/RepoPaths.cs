namespace VlaBias.Tests.Data;

/// <summary>Finds files of the repository (data/…) from the test binary's folder.</summary>
internal static class RepoPaths
{
    public static string Root
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "VlaBias.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("VlaBias.sln not found above " + AppContext.BaseDirectory);
        }
    }

    public static string WorldJson => Path.Combine(Root, "data", "scenes", "world.json");
    public static string GenderWordsJson => Path.Combine(Root, "data", "words", "gender_words.json");

    private static VlaBias.Data.World? _world;
    public static VlaBias.Data.World World => _world ??= VlaBias.Data.World.Load(WorldJson);

    public static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "vlabias-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }
}
