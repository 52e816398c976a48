// Steering vectors (Ratzlaff et al.): one direction [hidden] per decoder layer, acting on the
// residual stream (the output of LlamaDecoderLayer) through forward hooks while a SteeringScope is alive.
//   remove: h ← h − s·(h·v̂)v̂   (s = 1 projects the direction out exactly; v's sign does not matter)
//   add:    h ← h + s·v        (v as stored: mean-diff vectors point man − woman, gradient vectors towards gendered words)
// File: safetensors with tensors "layers.{i}" [hidden] (float32) and string metadata (method, layers, position, ...).
using System.Globalization;
using TorchSharp;
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Steering;

public enum SteerMode { Remove, Add }

public sealed class SteeringVectors : IDisposable
{
    public SteeringVectors(IReadOnlyDictionary<int, Tensor> byLayer, IReadOnlyDictionary<string, string> metadata)
    {
        ByLayer = byLayer;
        Metadata = metadata;
    }

    /// <summary>Decoder layer index → direction [hidden] (float32, CPU).</summary>
    public IReadOnlyDictionary<int, Tensor> ByLayer { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public void Save(string path)
    {
        var tensors = ByLayer.ToDictionary(kv => $"layers.{kv.Key}", kv => kv.Value);
        var meta = new Dictionary<string, string>(Metadata)
        {
            ["format"] = "vlatune-steering",
            ["layers"] = string.Join(",", ByLayer.Keys.Order()),
        };
        SafeTensors.Save(path, tensors, meta);
    }

    public static SteeringVectors Load(string path)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: steering vector file not found (make one with `vlatune steer build`)");
        using var file = SafeTensorsFile.Open(path);
        var byLayer = new Dictionary<int, Tensor>();
        foreach (var name in file.Entries.Keys)
        {
            if (!name.StartsWith("layers.", StringComparison.Ordinal) || !int.TryParse(name["layers.".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int layer))
                throw new BadInputException($"{path}: tensor '{name}' is not a steering vector (expected layers.<index>)");
            var t = file.Read(name).to_type(ScalarType.Float32);
            if (t.dim() != 1) throw new BadInputException($"{path}: tensor '{name}' has {t.dim()} dimensions, expected one [hidden]");
            byLayer[layer] = t;
        }
        if (byLayer.Count == 0) throw new BadInputException($"{path}: no steering vectors in the file");
        return new SteeringVectors(byLayer, new Dictionary<string, string>(file.Metadata));
    }

    /// <summary>Installs the hooks; disposing the returned scope removes them.</summary>
    public SteeringScope Apply(LlavaModel model, double scale, SteerMode mode)
    {
        var layers = model.LanguageModel.Model.Layers;
        int hidden = model.Config.Text.HiddenSize;
        foreach (var (i, v) in ByLayer)
        {
            if (i < 0 || i >= layers.Count) throw new BadInputException($"steering vector for layer {i}, but the model has layers 0..{layers.Count - 1}");
            if (v.shape[0] != hidden) throw new BadInputException($"steering vector for layer {i} has size {v.shape[0]}, the model's hidden size is {hidden}");
        }
        return new SteeringScope(model, this, scale, mode);
    }

    public void Dispose() { foreach (var t in ByLayer.Values) t.Dispose(); }

    /// <summary>The hooked forward: h (B, T, C) → steered h.</summary>
    public static Tensor Steer(Tensor h, Tensor v, double scale, SteerMode mode)
    {
        var dir = v.to(h.device).to_type(h.dtype);
        if (mode == SteerMode.Add) return h + dir * scale;
        double norm = v.norm().ToDouble();
        if (norm == 0) return h;                         // no direction: nothing to remove
        var unit = dir / norm;
        var coef = (h * unit).sum(-1, keepdim: true);   // (B, T, 1)
        return h - coef * unit * scale;
    }
}

/// <summary>Forward hooks on the decoder layers of one model, removed on Dispose (use it in a <c>using</c>).</summary>
public sealed class SteeringScope : IDisposable
{
    private readonly List<Action> removers = [];

    internal SteeringScope(LlavaModel model, SteeringVectors vectors, double scale, SteerMode mode)
    {
        var layers = model.LanguageModel.Model.Layers;
        foreach (var (i, v) in vectors.ByLayer)
        {
            var handle = layers[i].register_forward_hook((_, _, output) => SteeringVectors.Steer(output, v, scale, mode));
            removers.Add(() => handle.remove());
        }
    }

    public void Dispose()
    {
        foreach (var remove in removers) remove();
        removers.Clear();
    }
}
