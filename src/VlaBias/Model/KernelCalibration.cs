// Which kernel is faster for one linear shape on this machine, measured once and remembered: the small-row kernel
// against libtorch for (mode, N×K weight, rows rounded up to a power of two, threads). LinearKernels asks it at first use
// of a shape; the answer is a pair of median times, kept in memory and in a JSON cache per CPU model
// ($VLATUNE_CACHE_DIR, else $XDG_CACHE_HOME/vlatune, else ~/.cache/vlatune; kernels.json), so a later process does not
// measure again. The cache is parsed defensively: a file that is not what this code writes is ignored and rewritten;
// writes are atomic. A measurement taken while other processes hold the cores (CoreLoad) or the pool is contended is
// used by this process only and not written, so one loaded run does not fix the choice for every later one.
// Modes: "caller" = the kernel on the calling thread against libtorch at its current thread count (the choice outside
// decode mode); "decode" = the kernel split over the SpinPool against libtorch at its current thread count (whether
// decode mode pays at all). A measurement takes a few ms per shape (at most ~15 timed calls each side, ~40 ms budget).
using System.Diagnostics;
using Serilog;
using static TorchSharp.torch;

namespace VlaBias.Model;

public sealed class KernelCalibration
{
    /// <summary>Median microseconds per call of each kernel on one shape.</summary>
    public sealed record Entry(double LibtorchUs, double SmallUs)
    {
        public bool SmallFaster => SmallUs < LibtorchUs;
    }

    private static readonly Lazy<KernelCalibration> DefaultInstance = new(() => new KernelCalibration(Path.Combine(CacheDirectory(Environment.GetEnvironmentVariable), "kernels.json")));
    private readonly object gate = new();
    private readonly Func<bool> coresFree;
    private readonly HashSet<string> unsaved = new(StringComparer.Ordinal); // measured under load: this process only
    private readonly Dictionary<string, Entry> entries;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string, long, long, int, int), Entry> fast = new();
    private readonly CalibrationFile cache;

    /// <param name="file">The cache file (read now when it exists; written after each new measurement).</param>
    /// <param name="cpuKey">The CPU the measurements belong to (default: this machine's, CpuInfo.Key).</param>
    /// <param name="coresFree">Whether no other process is running now (default: CoreLoad); a measurement taken otherwise is not written.</param>
    public KernelCalibration(string file, string? cpuKey = null, Func<bool>? coresFree = null)
    {
        this.coresFree = coresFree ?? CoreLoad.Quiet;
        CacheFile = file;
        cache = new CalibrationFile(file, cpuKey ?? CpuInfo.This.Key, "vlatune kernel calibration: median µs per linear call, small-row kernel vs libtorch",
            "libtorch_us", "small_us", "kernels");
        entries = cache.Read().ToDictionary(kv => kv.Key, kv => new Entry(kv.Value.First, kv.Value.Second), StringComparer.Ordinal);
    }

    /// <summary>The process-wide calibration, cached under <see cref="CacheDirectory"/>.</summary>
    public static KernelCalibration Default => DefaultInstance.Value;

    public string CacheFile { get; }

    /// <summary>Measurements this object has taken (not read from the cache); tests use it to see the cache work.</summary>
    public int Measured { get; private set; }

    /// <summary>$VLATUNE_CACHE_DIR, else $XDG_CACHE_HOME/vlatune, else ~/.cache/vlatune.</summary>
    public static string CacheDirectory(Func<string, string?> env)
    {
        if (env("VLATUNE_CACHE_DIR") is { Length: > 0 } own) return own;
        if (env("XDG_CACHE_HOME") is { Length: > 0 } xdg) return Path.Combine(xdg, "vlatune");
        string home = env("HOME") is { Length: > 0 } h ? h : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return Path.Combine(home, ".cache", "vlatune");
    }

    /// <summary>Rows rounded up to a power of two: the row counts one measurement stands for.</summary>
    public static int Bucket(long rows)
    {
        int b = 1;
        while (b < rows) b <<= 1;
        return b;
    }

    public static string Key(string mode, long n, long k, int rowsBucket, int threads) => $"{mode} {n}x{k} rows {rowsBucket} threads {threads}";

    /// <summary>Every shape this object has answered for since it was made (key as in <see cref="Key"/>), with its times.</summary>
    public IReadOnlyDictionary<string, Entry> Asked() =>
        fast.ToDictionary(kv => Key(kv.Key.Item1, kv.Key.Item2, kv.Key.Item3, kv.Key.Item4, kv.Key.Item5), kv => kv.Value, StringComparer.Ordinal);

    /// <summary>The measured times for this shape, measuring now (a few ms) when neither memory nor the cache has them.</summary>
    internal Entry Get(string mode, long n, long k, long rows, SpinPool? pool)
    {
        int bucket = Bucket(rows), threads = get_num_threads();
        var id = (mode, n, k, bucket, threads);
        if (fast.TryGetValue(id, out var seen)) return seen; // the per-call path: no string, no lock
        string key = Key(mode, n, k, bucket, threads);
        lock (gate)
        {
            if (!entries.TryGetValue(key, out var entry))
            {
                bool quiet = coresFree() && pool?.Contended != true;
                entry = Measure(n, k, bucket, pool);
                quiet &= coresFree() && pool?.Contended != true; // quiet before and after
                entries[key] = entry;
                Measured++;
                Log.Debug("kernels: {Key}: libtorch {Torch:F1} µs, small-row {Small:F1} µs → {Choice}{Loaded}", key, entry.LibtorchUs, entry.SmallUs,
                    entry.SmallFaster ? "small-row" : "libtorch", quiet ? "" : " (cores shared: not cached)");
                if (quiet) Save();
                else unsaved.Add(key);
            }
            fast[id] = entry;
            return entry;
        }
    }

    /// <summary>Interleaved timings of both kernels on constant inputs (no random draws: the global generator is untouched).</summary>
    private static Entry Measure(long n, long k, int rows, SpinPool? pool)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = full(new long[] { rows, k }, 0.01f);
        var w = full(new long[] { n, k }, 0.02f);
        var b = zeros(n);
        var torchTimes = new List<double>();
        var smallTimes = new List<double>();
        double Time(Func<Tensor> f)
        {
            long t0 = Stopwatch.GetTimestamp();
            f().Dispose();
            return Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        }
        Tensor Torch() => nn.functional.linear(x, w, b);
        Tensor Small() => SmallRowKernel.Forward(x, w, b, pool);
        Time(Torch); Time(Small); // warm-up: first-call allocations, caches, waking threads
        var budget = Stopwatch.StartNew();
        for (int i = 0; i < 15 && (i < 3 || budget.ElapsedMilliseconds < 40); i++)
        {
            torchTimes.Add(Time(Torch));
            smallTimes.Add(Time(Small));
        }
        return new Entry(Median(torchTimes), Median(smallTimes));
    }

    /// <summary>Median of timings (sorts the list); DTypeCalibration uses it too.</summary>
    internal static double Median(List<double> xs)
    {
        xs.Sort();
        return xs.Count % 2 == 1 ? xs[xs.Count / 2] : (xs[xs.Count / 2 - 1] + xs[xs.Count / 2]) / 2;
    }

    /// <summary>Writes this CPU's quiet entries (not those measured under load) into the cache file.</summary>
    private void Save() =>
        cache.Save(entries.Where(kv => !unsaved.Contains(kv.Key)).Select(kv => KeyValuePair.Create(kv.Key, (kv.Value.LibtorchUs, kv.Value.SmallUs))));
}
