using System.CommandLine;
using static TorchSharp.torch;

namespace VlaBias.Cli.Commands;

/// <summary>The --dtype option of the commands that load a model.</summary>
public static class ModelOptions
{
    public static Option<string> DType() =>
        new("--dtype") { Description = "Compute dtype: f32 or bf16 (weights are converted while loading)", DefaultValueFactory = _ => "f32" };

    public static ScalarType ParseDType(string? name) => VlaBias.Model.ComputeDType.Parse(name ?? "f32");
}
