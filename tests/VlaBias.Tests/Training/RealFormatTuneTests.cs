using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Data;
using VlaBias.Data.Importers;
using VlaBias.Model;
using VlaBias.Tests.Cli;
using VlaBias.Weights;

namespace VlaBias.Tests.Training;

/// <summary>
/// `vlatune tune` on the real-checkpoint path end to end: a random SigLIP + Qwen2 checkpoint with a byte-level BPE
/// tokenizer and ChatML template, data imported from counterfactual folders of generated faces with the probing
/// suite's questions. The adapter's keys must be the real module paths.
/// </summary>
public class RealFormatTuneTests
{
    [Test]
    public void Tune_runs_on_a_siglip_qwen2_checkpoint_and_imported_faces_and_writes_real_module_paths()
    {
        var dir = TestPaths.NewTempDir("realtune");
        try
        {
            var repo = TinyWorld.RepoRoot();
            var model = Path.Combine(dir, "model");
            RandomCheckpoint.WriteQwen2Siglip(model, ["yes", "no", "unknown", "man", "woman", "person", "the", "in", "this", "picture", "Answer"]);
            var faces = FaceSamples.Write(Path.Combine(dir, "faces"), faces: 2, scenes: 6, size: 32);
            var manifest = Path.Combine(dir, "data", "manifest.jsonl");
            var imported = DatasetImport.Run(new ImportOptions
            {
                Format = "counterfactual-folders", Source = faces.CounterfactualRoot, Out = manifest, SplitVal = 0.34, SplitTest = 0.17,
                Probes = ProbingSuite.Load(Path.Combine(repo, ProbingSuite.DefaultPath)),
            });
            Assert.That(imported.Pairs, Is.EqualTo(6));
            var suite = Path.Combine(dir, "suite.yaml");
            File.WriteAllText(suite, string.Join('\n', "name: faces", $"manifest: {manifest}", "split: test",
                $"words: {Path.Combine(repo, "data/words/gender_words.json")}", $"world: {Path.Combine(repo, "data/scenes/world.json")}",
                "caption_prompt: Describe the image.", "captions: false", "facts: false", "batch_size: 16", "bootstrap: 20", "lic_seeds: 1") + "\n");
            var runs = Path.Combine(dir, "runs");
            var r = CliRunner.Run(dir, "tune", "--recipe", Path.Combine(repo, "recipes/default.yaml"), "--model", model, "--data", manifest, "--suite", suite,
                "--runs-dir", runs, "--name", "faces", "--max-steps", "4", "--eval-every", "2", "--final-eval", "false", "--threshold", "0",
                "--pairs-per-step", "2", "--probes-per-pair", "2", "--retain-per-step", "2", "--threads", "1");
            Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr + r.Stdout);
            var run = Path.Combine(runs, "faces");
            var state = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "trainer_state.json")))!;
            Assert.That(state["steps"]!.GetValue<long>(), Is.EqualTo(4));
            using var adapter = SafeTensorsFile.Open(Path.Combine(run, "adapter_model.safetensors"));
            var keys = adapter.Entries.Keys.ToList();
            Assert.That(keys, Is.Not.Empty);
            Assert.That(keys, Has.All.StartsWith("base_model.model.language_model.model.layers."));
            Assert.That(keys, Has.Some.EqualTo("base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
