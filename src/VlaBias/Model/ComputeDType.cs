// The compute dtypes a model can be loaded in (`--dtype f32|bf16`), and the process's peak memory for reports.
using static TorchSharp.torch;

namespace VlaBias.Model;

public static class ComputeDType
{
    public static readonly string[] Names = ["f32", "bf16"];

    public static ScalarType Parse(string name) => name.ToLowerInvariant() switch
    {
        "f32" or "float32" or "fp32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ => throw new BadInputException($"--dtype: unknown value '{name}' (expected f32 or bf16)"),
    };

    /// <summary>Peak resident set size of this process in bytes (VmHWM of /proc/self/status), or null off Linux.</summary>
    public static long? PeakRssBytes()
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return null;
        foreach (var line in File.ReadLines(path))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0]) * 1024;
        return null;
    }
}
