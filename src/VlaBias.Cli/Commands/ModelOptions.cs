using System.CommandLine;
using static TorchSharp.torch;

namespace VlaBias.Cli.Commands;

/// <summary>The --dtype option of the commands that load a model.</summary>
public static class ModelOptions
{
    public static Option<string> DType() =>
        new("--dtype") { Description = "Compute dtype: auto (bf16 above 100 M parameters on a CPU with avx512_bf16/AMX, else f32), f32 or bf16 (weights are converted while loading)", DefaultValueFactory = _ => "auto" };

    /// <summary>The dtype to load <paramref name="model"/> in (auto resolved on its parameter count and this CPU, and logged).</summary>
    public static ScalarType ResolveDType(string? name, string model) => VlaBias.Model.ComputeDType.Resolve(name ?? "auto", model).DType;
}
