// The compute dtypes a model can be loaded in (`--dtype auto|f32|bf16`), and the process's peak memory for reports.
// auto picks bf16 for checkpoints above AutoBf16Parameters when the CPU has native bf16 matmuls (avx512_bf16 or AMX:
// 5× the fp32 roof measured on a Xeon with AMX), fp32 otherwise; small models stay fp32, where bf16's rounding costs
// accuracy and buys little time. The choice and its reason are logged (at debug level when a small model stays f32).
using Serilog;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Model;

public static class ComputeDType
{
    public static readonly string[] Names = ["auto", "f32", "bf16"];

    /// <summary>Parameters above which auto picks bf16 (on a CPU with bf16 matmuls).</summary>
    public const long AutoBf16Parameters = 100_000_000;

    /// <summary>A resolved dtype with the reason it was picked.</summary>
    public sealed record Choice(ScalarType DType, string Reason);

    /// <summary>f32 or bf16 by name (auto is resolved by <see cref="Resolve(string, string)"/>, which needs the checkpoint).</summary>
    public static ScalarType Parse(string name) => name.ToLowerInvariant() switch
    {
        "f32" or "float32" or "fp32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ => throw new BadInputException($"--dtype: unknown value '{name}' (expected auto, f32 or bf16)"),
    };

    /// <summary>The dtype to load the checkpoint DIR in for --dtype <paramref name="name"/>; logs the choice.</summary>
    public static Choice Resolve(string name, string dir)
    {
        var choice = Resolve(name, () => ParameterCount(Assets.Resolve(dir)), CpuInfo.This);
        // a small model staying f32 is the everyday case (tiny-base): logged at debug level, so one-line errors stay one line
        var level = choice.DType == ScalarType.Float32 && choice.Reason.Contains("at most", StringComparison.Ordinal) ? Serilog.Events.LogEventLevel.Debug : Serilog.Events.LogEventLevel.Information;
        Log.Write(level, "dtype: {Dtype} ({Reason})", choice.DType == ScalarType.BFloat16 ? "bf16" : "f32", choice.Reason);
        return choice;
    }

    /// <summary>auto's rule on a parameter count (read only for auto) and a CPU.</summary>
    public static Choice Resolve(string name, Func<long> parameters, CpuInfo cpu)
    {
        if (!name.Equals("auto", StringComparison.OrdinalIgnoreCase)) return new Choice(Parse(name), $"--dtype {name}");
        long n = parameters();
        string size = n >= 1_000_000_000 ? $"{n / 1e9:F1} B" : $"{n / 1e6:F1} M";
        if (n <= AutoBf16Parameters) return new Choice(ScalarType.Float32, $"auto: {size} parameters, at most {AutoBf16Parameters / 1_000_000} M");
        if (!cpu.HasBf16) return new Choice(ScalarType.Float32, $"auto: {size} parameters, but the CPU reports neither avx512_bf16 nor amx_bf16");
        string flags = string.Join(" and ", new[] { "avx512_bf16", "amx_bf16" }.Where(cpu.Flags.Contains));
        return new Choice(ScalarType.BFloat16, $"auto: {size} parameters, above {AutoBf16Parameters / 1_000_000} M, and the CPU has {flags}");
    }

    /// <summary>Elements of every tensor in the checkpoint folder, from the file headers (no tensor data is read).</summary>
    public static long ParameterCount(string dir)
    {
        if (!Directory.Exists(dir)) throw new BadInputException($"{dir}: model folder not found");
        var files = ShardedCheckpoint.OpenFolder(dir);
        try
        {
            long total = 0;
            foreach (var (name, file) in files)
                if (file.Shapes.TryGetValue(name, out var shape)) total += shape.Aggregate(1L, (a, d) => a * d);
            return total;
        }
        finally { foreach (var f in files.Values.Distinct()) f.Dispose(); }
    }

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
