using VlaBias.Data;
using VlaBias.Model;

namespace VlaBias.Tests.Training;

/// <summary>A few rendered Counterfactual Scenes, a random 48-px model over the world's vocabulary, and a suite file.</summary>
public sealed class TinyWorld
{
    public string Dir { get; }
    public string Manifest { get; }
    public string Model { get; }
    public string Suite { get; }

    public TinyWorld(string dir, int tunePairs = 8, int valPairs = 4, int testPairs = 4, long seed = 1)
    {
        Dir = dir;
        var repo = RepoRoot();
        var world = World.Load(Path.Combine(repo, "data/scenes/world.json"));
        var result = SceneSynth.Generate(world, new SynthOptions
        {
            Pretrain = 16, TunePairs = tunePairs, TuneUnclear = 2, ValPairs = valPairs, ValUnclear = 2, TestPairs = testPairs, TestUnclear = 2,
        }, Path.Combine(dir, "scenes"));
        Manifest = result.ManifestPath;
        Model = Path.Combine(dir, "model");
        var words = world.Vocabulary().Concat(["user", "assistant", ":"]).ToList();
        RandomCheckpoint.Write(Model, words, seed: seed, std: 0.1,
            config: v => RandomCheckpoint.ClipLlama(v, imageSize: world.ImageSize, patch: 12, visionHidden: 32, hidden: 64, layers: 2));
        Suite = Path.Combine(dir, "suite.yaml");
        File.WriteAllText(Suite, string.Join('\n',
            "name: tiny", $"manifest: {Manifest}", "split: test",
            $"words: {Path.Combine(repo, "data/words/gender_words.json")}", $"world: {Path.Combine(repo, "data/scenes/world.json")}",
            "caption_prompt: describe the image.", "max_new_tokens: 8", "batch_size: 32", "bootstrap: 20", "lic_seeds: 1") + "\n");
    }

    public static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "VlaBias.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }
}
