// Whether bf16 matmuls are faster than fp32 on this CPU for a model's shape, measured once and remembered: --dtype
// auto asks it before picking bf16 for a large checkpoint, because the bf16 flags do not say the speed (a Xeon with AMX
// ran bf16 matmuls ~3–5× faster than fp32; a CPU with avx512_bf16 but no AMX may not). One measurement: a linear of
// Rows × K inputs through an N × K weight (the decoder's MLP up-projection), fp32 against bf16, interleaved, median of
// up to 7 calls each (~0.1–2 s on 7B's shape). Kept in dtype.json beside the kernel calibration (KernelCalibration's
// cache folder) per CPU model and thread count; read defensively, written atomically, and not written when other
// processes held the cores during the measurement (CoreLoad), so a loaded run decides only for itself.
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Serilog;
using static TorchSharp.torch;

namespace VlaBias.Model;

public sealed class DTypeCalibration(string file, string? cpuKey = null, Func<bool>? coresFree = null)
{
    /// <summary>Rows of the measured linear: a batch of prompts' worth of positions.</summary>
    public const int Rows = 256;

    private const int Version = 1;
    private readonly string cpu = cpuKey ?? CpuInfo.This.Key;
    private readonly Func<bool> quiet = coresFree ?? CoreLoad.Quiet;

    public static DTypeCalibration Default { get; } = new(Path.Combine(KernelCalibration.CacheDirectory(Environment.GetEnvironmentVariable), "dtype.json"));

    /// <summary>Measurements this object has taken (not read from the cache).</summary>
    public int Measured { get; private set; }

    /// <summary>fp32 time over bf16 time (above 1: bf16 faster) for an N × K weight, from the cache or measured now.</summary>
    public double Speedup(long n, long k)
    {
        string key = $"{n}x{k} rows {Rows} threads {get_num_threads()}";
        var all = Read();
        if (all[cpu] is JsonObject mine && mine[key] is JsonObject e && e["f32_us"] is JsonValue f && f.TryGetValue(out double f32)
            && e["bf16_us"] is JsonValue b && b.TryGetValue(out double bf16) && f32 > 0 && bf16 > 0 && double.IsFinite(f32 / bf16))
            return f32 / bf16;
        bool before = quiet();
        var (f32Us, bf16Us) = Measure(n, k);
        Measured++;
        bool cache = before && quiet();
        Log.Debug("dtype: {Key}: f32 {F32:F0} µs, bf16 {Bf16:F0} µs per linear{Loaded}", key, f32Us, bf16Us, cache ? "" : " (cores shared: not cached)");
        if (cache) Save(all, key, f32Us, bf16Us);
        return f32Us / bf16Us;
    }

    private static (double f32, double bf16) Measure(long n, long k)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = full(new long[] { Rows, k }, 0.01f);
        var w = full(new long[] { n, k }, 0.02f);
        var xb = x.to_type(ScalarType.BFloat16);
        var wb = w.to_type(ScalarType.BFloat16);
        double Time(Tensor a, Tensor m)
        {
            long t0 = Stopwatch.GetTimestamp();
            nn.functional.linear(a, m).Dispose();
            return Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        }
        Time(x, w); Time(xb, wb); // first-call packing and allocation
        var f32 = new List<double>();
        var bf16 = new List<double>();
        var budget = Stopwatch.StartNew();
        for (int i = 0; i < 7 && (i < 3 || budget.ElapsedMilliseconds < 1500); i++)
        {
            f32.Add(Time(x, w));
            bf16.Add(Time(xb, wb));
        }
        return (KernelCalibration.Median(f32), KernelCalibration.Median(bf16));
    }

    /// <summary>The cache's CPUs, or none when the file is missing or not what this code writes.</summary>
    private JsonObject Read()
    {
        try
        {
            if (File.Exists(file) && JsonNode.Parse(File.ReadAllText(file)) is JsonObject root && root["version"] is JsonValue v
                && v.TryGetValue(out int version) && version == Version && root["cpus"] is JsonObject cpus)
                return (JsonObject)cpus.DeepClone();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException or FormatException)
        {
            Log.Warning("dtype: calibration cache {File} is unreadable ({Message}); measuring again", file, e.Message);
        }
        return new JsonObject();
    }

    private void Save(JsonObject cpus, string key, double f32Us, double bf16Us)
    {
        try
        {
            if (cpus[cpu] is not JsonObject mine) cpus[cpu] = mine = new JsonObject();
            mine[key] = new JsonObject { ["f32_us"] = Math.Round(f32Us, 3), ["bf16_us"] = Math.Round(bf16Us, 3) };
            var root = new JsonObject { ["version"] = Version, ["what"] = "vlatune dtype calibration: median µs per linear call, fp32 vs bf16", ["cpus"] = cpus };
            AtomicFile.WriteAllText(file, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.Warning("dtype: could not write the calibration cache {File}: {Message}", file, e.Message);
        }
    }
}
