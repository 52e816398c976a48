// A file of named tensors as checkpoints ship them: safetensors (read by the project, SafeTensorsFile) or a PyTorch
// torch.save pickle (.bin, PyTorchBinFile). Loaders (LlavaModel.LoadWeights, LoraAdapter.Load) see only this face:
// names with shapes to check everything first, then one tensor at a time copied into its parameter.
using TorchSharp;

namespace VlaBias.Weights;

public interface ITensorFile : IDisposable
{
    string Path { get; }

    /// <summary>Tensor name → shape, known without reading tensor data.</summary>
    IReadOnlyDictionary<string, long[]> Shapes { get; }

    /// <summary>Copies a tensor into <paramref name="destination"/> of the same shape, converting dtype if they differ.</summary>
    void ReadInto(string name, torch.Tensor destination);
}

public static class TensorFile
{
    /// <summary>Opens a .safetensors file or a PyTorch .bin/.pt/.pth pickle (decided by the extension) and validates it.</summary>
    public static ITensorFile Open(string path) =>
        path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? SafeTensorsFile.Open(path) : PyTorchBinFile.Open(path);
}
