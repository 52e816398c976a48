// Whether bf16 matmuls are faster than fp32 on this CPU for a model's shape, measured once and remembered: --dtype
// auto asks it before picking bf16 for a large checkpoint, because the bf16 flags do not say the speed (a Xeon with AMX
// ran bf16 matmuls ~3–5× faster than fp32; a CPU with avx512_bf16 but no AMX may not). One measurement: a linear of
// Rows × K inputs through an N × K weight (the decoder's MLP up-projection), fp32 against bf16, interleaved, median of
// up to 7 calls each (~0.1–2 s on 7B's shape). Kept in dtype.json beside the kernel calibration (KernelCalibration's
// cache folder) per CPU model and thread count; read defensively, written atomically, and not written when other
// processes held the cores during the measurement (CoreLoad), so a loaded run decides only for itself.
using System.Diagnostics;
using Serilog;
using static TorchSharp.torch;

namespace VlaBias.Model;

public sealed class DTypeCalibration(string file, string? cpuKey = null, Func<bool>? coresFree = null)
{
    /// <summary>Rows of the measured linear: a batch of prompts' worth of positions.</summary>
    public const int Rows = 256;

    private readonly CalibrationFile cache = new(file, cpuKey ?? CpuInfo.This.Key, "vlatune dtype calibration: median µs per linear call, fp32 vs bf16",
        "f32_us", "bf16_us", "dtype", decimals: 3);
    private readonly Func<bool> quiet = coresFree ?? CoreLoad.Quiet;

    public static DTypeCalibration Default { get; } = new(Path.Combine(KernelCalibration.CacheDirectory(Environment.GetEnvironmentVariable), "dtype.json"));

    /// <summary>Measurements this object has taken (not read from the cache).</summary>
    public int Measured { get; private set; }

    /// <summary>fp32 time over bf16 time (above 1: bf16 faster) for an N × K weight, from the cache or measured now.</summary>
    public double Speedup(long n, long k)
    {
        string key = $"{n}x{k} rows {Rows} threads {get_num_threads()}";
        if (cache.Read().TryGetValue(key, out var known)) return known.First / known.Second;
        bool before = quiet();
        var (f32Us, bf16Us) = Measure(n, k);
        Measured++;
        bool cached = before && quiet();
        Log.Debug("dtype: {Key}: f32 {F32:F0} µs, bf16 {Bf16:F0} µs per linear{Loaded}", key, f32Us, bf16Us, cached ? "" : " (cores shared: not cached)");
        if (cached) cache.Save([KeyValuePair.Create(key, (f32Us, bf16Us))]);
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
}
