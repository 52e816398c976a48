// The compute dtypes a model can be loaded in (`--dtype auto|f32|bf16`), and the process's peak memory for reports.
// auto picks bf16 for checkpoints above AutoBf16Parameters when the CPU has native bf16 matmuls (avx512_bf16 or AMX)
// and either they measured at least MinSpeedup× faster than fp32 on the model's MLP shape (DTypeCalibration: 5× the
// fp32 roof on a Xeon with AMX, but the flags alone do not promise it) or the fp32 weights would take more than half
// the memory available; fp32 otherwise. Small models stay fp32, where bf16's rounding costs accuracy and buys little
// time. The choice and its reason are logged (at debug level when a small model stays f32).
using Serilog;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Model;

public static class ComputeDType
{
    public static readonly string[] Names = ["auto", "f32", "bf16"];

    /// <summary>Parameters above which auto picks bf16 (on a CPU with bf16 matmuls).</summary>
    public const long AutoBf16Parameters = 100_000_000;

    /// <summary>bf16 must measure at least this much faster than fp32 for auto to pick it on speed.</summary>
    public const double MinSpeedup = 1.1;

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
    /// <param name="parameters">The checkpoint's parameter count when the caller counts it too (default: counted here).</param>
    public static Choice Resolve(string name, string dir, Func<long>? parameters = null)
    {
        string folder = Assets.Resolve(dir);
        var choice = Resolve(name, parameters ?? (() => ParameterCount(folder)), CpuInfo.This, () =>
        {
            var text = LlavaConfig.Load(Path.Combine(folder, "config.json")).Text;
            return DTypeCalibration.Default.Speedup(text.IntermediateSize, text.HiddenSize);
        }, AvailableBytes());
        // a small model staying f32 is the everyday case (tiny-base): logged at debug level, so one-line errors stay one line
        var level = choice.DType == ScalarType.Float32 && choice.Reason.Contains("at most", StringComparison.Ordinal) ? Serilog.Events.LogEventLevel.Debug : Serilog.Events.LogEventLevel.Information;
        Log.Write(level, "dtype: {Dtype} ({Reason})", choice.DType == ScalarType.BFloat16 ? "bf16" : "f32", choice.Reason);
        return choice;
    }

    /// <summary>
    /// auto's rule on a parameter count (read only for auto), a CPU, bf16's measured speedup over fp32 (fp32 time over
    /// bf16 time; asked only when it decides) and the memory available in bytes (null: unknown).
    /// </summary>
    public static Choice Resolve(string name, Func<long> parameters, CpuInfo cpu, Func<double> bf16Speedup, long? availableBytes)
    {
        if (!name.Equals("auto", StringComparison.OrdinalIgnoreCase)) return new Choice(Parse(name), $"--dtype {name}");
        long n = parameters();
        string size = n >= 1_000_000_000 ? $"{n / 1e9:F1} B" : $"{n / 1e6:F1} M";
        if (n <= AutoBf16Parameters) return new Choice(ScalarType.Float32, $"auto: {size} parameters, at most {AutoBf16Parameters / 1_000_000} M");
        if (!cpu.HasBf16) return new Choice(ScalarType.Float32, $"auto: {size} parameters, but the CPU reports neither avx512_bf16 nor amx_bf16");
        string flags = string.Join(" and ", new[] { "avx512_bf16", "amx_bf16" }.Where(cpu.Flags.Contains));
        double speedup = bf16Speedup();
        string measured = $"bf16 linears measured {speedup:F2}× the speed of f32 here";
        if (speedup >= MinSpeedup) return new Choice(ScalarType.BFloat16, $"auto: {size} parameters, above {AutoBf16Parameters / 1_000_000} M, the CPU has {flags}, {measured}");
        if (availableBytes is long avail && 4.0 * n > 0.5 * avail)
            return new Choice(ScalarType.BFloat16, $"auto: {size} parameters; {measured}, but f32 weights ({4.0 * n / 1e9:F1} GB) would take over half the {avail / 1e9:F1} GB available");
        return new Choice(ScalarType.Float32, $"auto: {size} parameters and the CPU has {flags}, but {measured} (below {MinSpeedup:F1}×)");
    }

    /// <summary>MemAvailable of /proc/meminfo in bytes, or null off Linux.</summary>
    public static long? AvailableBytes()
    {
        const string path = "/proc/meminfo";
        try
        {
            if (!File.Exists(path)) return null;
            foreach (var line in File.ReadLines(path))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal) && long.TryParse(line["MemAvailable:".Length..].Trim().Split(' ')[0], out long kb))
                    return kb * 1024;
        }
        catch (IOException) { }
        return null;
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
        try
        {
            if (!File.Exists(path)) return null;
            foreach (var line in File.ReadLines(path))
                if (StatusKb(line, "VmHWM") is long kb) return kb * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>
    /// The kB value of a /proc status line "Field:&lt;tab&gt;&lt;spaces&gt;N kB" (the padding shrinks as N grows: none from
    /// 8 digits on), or null when the line is another field or not that shape.
    /// </summary>
    public static long? StatusKb(string line, string field)
    {
        if (!line.StartsWith(field + ":", StringComparison.Ordinal)) return null;
        var parts = line[(field.Length + 1)..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 1 && long.TryParse(parts[0], out long kb) ? kb : null;
    }
}
