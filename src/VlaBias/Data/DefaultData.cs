// The default data set: Counterfactual Scenes rendered from data/scenes/world.json into data/generated/scenes/ on first
// use (deterministic, a few seconds), and rendered again when world.json changed since (world.sha256 records its hash).
// Commands that take a manifest call Ensure with it, so only the default one is ever generated.
using Serilog;

namespace VlaBias.Data;

public static class DefaultData
{
    public const string Dir = "data/generated/scenes";
    public const string Manifest = Dir + "/" + SceneSynth.ManifestName;
    public const string WorldFile = "data/scenes/world.json";

    /// <summary>Renders the default data set when <paramref name="manifest"/> is it and it is missing or stale; returns <paramref name="manifest"/>.</summary>
    public static string Ensure(string manifest, string world = WorldFile)
    {
        if (manifest == Manifest) Render(world);
        return manifest;
    }

    /// <summary>The default data set, rendered when missing or older than <paramref name="world"/>; returns its manifest.</summary>
    public static string Render(string world = WorldFile, string dir = Dir)
    {
        var manifest = Path.Combine(dir, SceneSynth.ManifestName);
        var stamp = Path.Combine(dir, "world.sha256");
        string hash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(world)));
        if (File.Exists(manifest) && File.Exists(stamp) && File.ReadAllText(stamp).Trim() == hash) return manifest;
        Log.Information("generating the default Counterfactual Scenes data set in {Dir} ({Why})", dir, File.Exists(manifest) ? "world.json changed" : "first use");
        var result = SceneSynth.Generate(World.Load(world), new SynthOptions(), dir).ManifestPath;
        AtomicFile.WriteAllText(stamp, hash + "\n");
        return result;
    }
}
