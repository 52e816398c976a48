// A resumable training checkpoint: trainable weights, optimizer state and a small JSON state, written into a fresh
// folder and swapped in with renames, so a kill at any moment leaves the previous complete checkpoint (DIR or DIR.old).
// Used by `vlatune pretrain` (every weight) and `vlatune tune` (the tuner's tensors only).
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace VlaBias.Training;

/// <summary>
/// A resumable training checkpoint: trainable weights, optimizer state and a small JSON state, written into a fresh
/// folder and swapped in with renames, so a kill at any moment leaves the previous complete checkpoint.
/// </summary>
public static class TrainingCheckpoint
{
    public sealed record State(long Step, double Loss, JsonObject? Extra = null);

    public static bool Exists(string dir) => File.Exists(Path.Combine(dir, "state.json")) || File.Exists(Path.Combine(dir + ".old", "state.json"));

    public static void Save(string dir, nn.Module model, TorchSharp.Modules.OptimizerHelper opt, State state, IReadOnlyDictionary<string, Tensor>? weights = null)
    {
        string tmp = dir + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        var tensors = weights ?? model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        Weights.SafeTensors.Save(Path.Combine(tmp, "weights.safetensors"), tensors);
        using (var f = File.Create(Path.Combine(tmp, "optimizer.bin")))
        using (var w = new BinaryWriter(f)) opt.save_state_dict(w);
        var json = new JsonObject { ["step"] = state.Step, ["loss"] = double.IsFinite(state.Loss) ? state.Loss : null, ["extra"] = state.Extra?.DeepClone() };
        File.WriteAllText(Path.Combine(tmp, "state.json"), json.ToJsonString(JsonFormat.Pretty));
        string old = dir + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, true);
        if (Directory.Exists(dir)) Directory.Move(dir, old);
        Directory.Move(tmp, dir);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    /// <param name="targets">Where the checkpoint's tensors go (default: the model's state dict, by name).</param>
    public static State Load(string dir, nn.Module model, TorchSharp.Modules.OptimizerHelper opt, IReadOnlyDictionary<string, Tensor>? targets = null)
    {
        if (!File.Exists(Path.Combine(dir, "state.json")) && File.Exists(Path.Combine(dir + ".old", "state.json"))) dir += ".old";
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "state.json")))!;
        var sd = targets ?? model.state_dict();
        using (var file = Weights.SafeTensorsFile.Open(Path.Combine(dir, "weights.safetensors")))
        using (no_grad())
            foreach (var name in file.Entries.Keys)
            {
                if (!sd.TryGetValue(name, out var target)) throw new BadInputException($"{dir}: checkpoint tensor '{name}' is not in the model");
                file.ReadInto(name, target);
            }
        using (var f = File.OpenRead(Path.Combine(dir, "optimizer.bin")))
        using (var r = new BinaryReader(f)) opt.load_state_dict(r);
        return new State(state["step"]!.GetValue<long>(), state["loss"]?.GetValue<double>() ?? double.NaN, state["extra"] as JsonObject);
    }
}
