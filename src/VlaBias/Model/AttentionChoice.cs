// Which attention the language model runs for one shape in a reduced precision (bf16, fp16), measured once and
// remembered: libtorch's scaled_dot_product_attention (on the CPU its flash kernel) against the same arithmetic written
// as two matmuls around an fp32 softmax (Hugging Face's eager attention). In: q (B, H, T, D), keys and values
// (B, kvH, S, D), the boolean mask (B, 1, T, S) or none (causal), whether a gradient is recorded; out: (B, H, T, D).
//
// Why a choice at all: on AMD EPYC family 25 model 17 (Zen 4, avx512_bf16, no AMX) libtorch 2.10's flash kernel ran
// bf16 forward + backward 2.7-6.5× slower than the two matmuls ((8, 8, 128, 64) causal: 24.8 against 9.1 ms), since
// its small bf16 GEMMs leave oneDNN, while in fp32 it was the faster (13.6 against 15.0 ms). A CPU with AMX packs
// those GEMMs for its tiles, so the answer depends on the machine: it is measured, per CPU model, on the first call
// of a shape bucket (batch·heads and both lengths rounded up to powers of two), kept in attention.json beside the
// kernel calibration, parsed defensively, written atomically, and not written when other processes held the cores.
// fp32 and fp64 always run scaled_dot_product_attention, so an fp32 result is one arithmetic on every CPU.
// The two matmuls hold the scores of the whole call, B·H·T·S fp32 values, where the flash kernel holds a tile: above
// MaxScoreBytes the choice is scaled_dot_product_attention without measuring.
// VLATUNE_ATTENTION=sdpa|matmul forces one path everywhere (any dtype); auto (or unset) measures.
using System.Diagnostics;
using Serilog;
using TorchSharp;
using static TorchSharp.torch;

namespace VlaBias.Model;

public sealed class AttentionChoice
{
    public enum Mode { Auto, Sdpa, Matmul }

    /// <summary>Median microseconds per call of each path on one shape bucket (forward, plus backward when a gradient is recorded).</summary>
    public sealed record Entry(double SdpaUs, double MatmulUs)
    {
        /// <summary>The matmul path only where it measured clearly faster (a tenth), so noise does not flip the choice.</summary>
        public bool MatmulFaster => MatmulUs < 0.9 * SdpaUs;
    }

    /// <summary>Scores above this many bytes (fp32, the whole call) always go to scaled_dot_product_attention.</summary>
    public const long MaxScoreBytes = 256L << 20;

    private static readonly Lazy<AttentionChoice> DefaultInstance = new(() => new AttentionChoice(
        Path.Combine(KernelCalibration.CacheDirectory(Environment.GetEnvironmentVariable), "attention.json"),
        mode: ParseMode(Environment.GetEnvironmentVariable("VLATUNE_ATTENTION"))));
    private readonly object gate = new();
    private readonly Func<bool> coresFree;
    private readonly CalibrationFile cache;
    private readonly Dictionary<string, Entry> entries;
    private readonly HashSet<string> unsaved = new(StringComparer.Ordinal);
    // the per-call path (every layer of every step or decoded token): a tuple key, no string, no lock
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(ScalarType, bool, long, long, long, long, long, long, int), bool> asked = new();

    /// <param name="file">The cache file (read now when it exists; written after each new quiet measurement).</param>
    /// <param name="cpuKey">The CPU the measurements belong to (default: this machine's, CpuInfo.Key).</param>
    /// <param name="coresFree">Whether no other process is running now (default: CoreLoad); a measurement taken otherwise is not written.</param>
    public AttentionChoice(string file, string? cpuKey = null, Func<bool>? coresFree = null, Mode mode = Mode.Auto)
    {
        CacheFile = file;
        cache = new CalibrationFile(file, cpuKey ?? CpuInfo.This.Key, "vlatune attention calibration: median µs per call, scaled_dot_product_attention vs two matmuls",
            "sdpa_us", "matmul_us", "attention");
        this.coresFree = coresFree ?? CoreLoad.Quiet;
        ForcedMode = mode;
        entries = mode == Mode.Auto
            ? cache.Read().ToDictionary(kv => kv.Key, kv => new Entry(kv.Value.First, kv.Value.Second), StringComparer.Ordinal)
            : new(StringComparer.Ordinal);
    }

    /// <summary>The process-wide choice: cached under KernelCalibration.CacheDirectory, VLATUNE_ATTENTION read once.</summary>
    public static AttentionChoice Default => DefaultInstance.Value;

    public string CacheFile { get; }
    public Mode ForcedMode { get; }

    /// <summary>Measurements this object has taken (not read from the cache).</summary>
    public int Measured { get; private set; }

    /// <summary>Every shape bucket asked since this object was made, with whether the matmul path was taken.</summary>
    public IReadOnlyDictionary<string, bool> Asked() => asked.ToDictionary(kv => Key(kv.Key), kv => kv.Value, StringComparer.Ordinal);

    public static Mode ParseMode(string? value) => value switch
    {
        null or "" or "auto" => Mode.Auto,
        "sdpa" => Mode.Sdpa,
        "matmul" => Mode.Matmul,
        _ => throw new BadInputException($"VLATUNE_ATTENTION: unknown value '{value}' (expected auto, sdpa or matmul)"),
    };

    /// <summary>The attention of q (B, H, T, D) over keys and values (B, kvH, S, D), H a multiple of kvH; mask (B, 1, T, S), true = may attend, or null for causal.</summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        if (UseMatmul(q, k)) return MatmulAttention(q, k, v, mask);
        return Sdpa(q, k, v, mask);
    }

    /// <summary>Whether this call takes the matmul path: forced, or a reduced precision whose bucket measured it faster.</summary>
    public bool UseMatmul(Tensor q, Tensor k)
    {
        if (ForcedMode != Mode.Auto) return ForcedMode == Mode.Matmul;
        if (q.dtype is not (ScalarType.BFloat16 or ScalarType.Float16) || q.device_type != DeviceType.CPU) return false;
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], kvh = k.shape[1], s = k.shape[2];
        if (4L * b * h * t * s > MaxScoreBytes) return false;
        bool grad = is_grad_enabled() && (q.requires_grad || k.requires_grad);
        var id = (q.dtype, grad, (long)KernelCalibration.Bucket(b), h, kvh, (long)KernelCalibration.Bucket(t), (long)KernelCalibration.Bucket(s), d, get_num_threads());
        if (asked.TryGetValue(id, out bool known)) return known;
        bool choice = Get(Key(id), id.Item1, grad, id.Item3, h, kvh, id.Item6, id.Item7, d).MatmulFaster;
        asked[id] = choice;
        return choice;
    }

    private static string Key((ScalarType, bool, long, long, long, long, long, long, int) id) =>
        Key(id.Item1, id.Item2, id.Item3, id.Item4, id.Item5, id.Item6, id.Item7, id.Item8, id.Item9);

    public static string Key(ScalarType dtype, bool grad, long batch, long heads, long kvHeads, long t, long s, long d, int threads) =>
        $"{(dtype == ScalarType.BFloat16 ? "bf16" : "f16")} {(grad ? "forward+backward" : "forward")} batch {batch} heads {heads}/{kvHeads} T {t} S {s} D {d} threads {threads}";

    private Entry Get(string key, ScalarType dtype, bool grad, long b, long h, long kvh, long t, long s, long d)
    {
        lock (gate)
        {
            if (entries.TryGetValue(key, out var entry)) return entry;
            bool quiet = coresFree();
            entry = Measure(dtype, grad, b, h, kvh, t, s, d);
            quiet &= coresFree();
            entries[key] = entry;
            Measured++;
            Log.Debug("attention: {Key}: sdpa {Sdpa:F0} µs, matmul {Matmul:F0} µs → {Choice}{Loaded}", key, entry.SdpaUs, entry.MatmulUs,
                entry.MatmulFaster ? "matmul" : "sdpa", quiet ? "" : " (cores shared: not cached)");
            if (quiet) Save();
            else unsaved.Add(key);
            return entry;
        }
    }

    /// <summary>scaled_dot_product_attention with the key/value heads repeated for each query head (an expand and one copy, as before this choice).</summary>
    public static Tensor Sdpa(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], kvh = k.shape[1], s = k.shape[2], g = h / kvh;
        Tensor o;
        if (g > 1 && t == 1)
        {
            // One query per row (a decode step): group the query heads by their key/value head instead of copying
            // the whole cache to every query head. q (B, H, 1, D) → (B, kvH, g, D); the mask (B, 1, 1, S) broadcasts,
            // and without a mask there is one key (no cache), which every grouped query sees under is_causal too.
            var qg = q.reshape(b, kvh, g, d);
            o = (mask is null ? nn.functional.scaled_dot_product_attention(qg, k, v, is_casual: true)
                : nn.functional.scaled_dot_product_attention(qg, k, v, mask)).reshape(b, h, t, d);
        }
        else
        {
            if (g > 1)
            {
                // Each key/value head serves g query heads: expand is a view, reshape makes the one copy SDPA needs
                // (cheaper than repeat_interleave's index-based copy, and the same values).
                k = k.unsqueeze(2).expand(b, kvh, g, s, d).reshape(b, h, s, d);
                v = v.unsqueeze(2).expand(b, kvh, g, s, d).reshape(b, h, s, d);
            }
            o = mask is null ? nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true)
                : nn.functional.scaled_dot_product_attention(q, k, v, mask);
        }
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// softmax(q·kᵀ/√D, masked) · v with the softmax in fp32 and the matmuls in q's dtype. The g query heads of a
    /// key/value head are multiplied as g·T rows of one matrix, so keys and values are never copied per query head.
    /// Without a mask, causal as scaled_dot_product_attention's is_causal: query i sees keys 0..i.
    /// </summary>
    public static Tensor MatmulAttention(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], kvh = k.shape[1], s = k.shape[2], g = h / kvh;
        var scores = q.reshape(b, kvh, g * t, d).matmul(k.transpose(-2, -1)).to_type(ScalarType.Float32).mul(1.0 / Math.Sqrt(d))
            .view(b, kvh, g, t, s);
        var allowed = mask is null
            ? ones(t, s, dtype: ScalarType.Bool, device: q.device).tril()   // (T, S) broadcasts
            : mask.unsqueeze(2);                                             // (B, 1, 1, T, S)
        var probs = scores.masked_fill(allowed.logical_not(), Scalars.MinusInfinity).softmax(-1).to_type(q.dtype).view(b, kvh, g * t, s);
        return probs.matmul(v).view(b, h, t, d).MoveToOuterDisposeScope();
    }

    /// <summary>Interleaved timings of both paths on constant inputs of the bucket's shape (the global generator is untouched).</summary>
    private static Entry Measure(ScalarType dtype, bool grad, long b, long h, long kvh, long t, long s, long d)
    {
        using var scope = NewDisposeScope();
        using var gradMode = grad ? enable_grad() : no_grad();
        var q = full(new[] { b, h, t, d }, 0.1f).to_type(dtype);
        var k = full(new[] { b, kvh, s, d }, 0.1f).to_type(dtype);
        var v = full(new[] { b, kvh, s, d }, 0.1f).to_type(dtype);
        // causal over the last T of S keys: the same number of allowed scores as a cached continuation
        var mask = arange(s).unsqueeze(0).le(arange(s - t, s).unsqueeze(1)).view(1, 1, t, s).expand(b, 1, t, s);
        if (grad) { q.requires_grad = true; k.requires_grad = true; v.requires_grad = true; }
        double Time(Func<Tensor, Tensor, Tensor, Tensor?, Tensor> f)
        {
            using var inner = NewDisposeScope();
            long t0 = Stopwatch.GetTimestamp();
            var o = f(q, k, v, mask);
            if (grad) o.sum().backward();
            double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            if (grad) { q.grad!.zero_(); k.grad!.zero_(); v.grad!.zero_(); }
            return us;
        }
        Time(Sdpa); Time(MatmulAttention); // first-call allocation and packing
        var sdpa = new List<double>();
        var matmul = new List<double>();
        var budget = Stopwatch.StartNew();
        for (int i = 0; i < 9 && (i < 3 || budget.ElapsedMilliseconds < 300); i++)
        {
            sdpa.Add(Time(Sdpa));
            matmul.Add(Time(MatmulAttention));
        }
        return new Entry(KernelCalibration.Median(sdpa), KernelCalibration.Median(matmul));
    }

    /// <summary>Writes this CPU's quiet entries (not those measured under load) into the cache file.</summary>
    private void Save() =>
        cache.Save(entries.Where(kv => !unsaved.Contains(kv.Key)).Select(kv => KeyValuePair.Create(kv.Key, (kv.Value.SdpaUs, kv.Value.MatmulUs))));
}
