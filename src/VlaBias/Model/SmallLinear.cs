// A linear layer for few rows, in fp32 on the CPU: y[m, n] = Σ_k x[m, k]·W[n, k] (+ b[n]), W in Hugging Face's
// [out, in] layout, x [.., in] with at most MaxRows rows. This is the shape of decoding (one new token per sequence).
//
// Why (profile of `vlatune bench`, bench sizes, 2 threads): a decode step at batch 1 is bound by streaming the weights
// from memory, 96 MB per token. libtorch's small-M sgemm/sgemv reach ~10 GB/s on this machine, a plain read of the
// same bytes ~29 GB/s, and at 4–32 rows libtorch is no faster than at 1 (its small-M GEMM reaches 7–57 GFLOP/s).
// This kernel reads every weight once per call, front to back: for 4+ rows of x, blocks of 4 output rows × 4 x rows
// keep 16 dot products in AVX-512 registers (8 loads per 16 FMAs); a single x row streams W one row at a time (one
// sequential stream the prefetcher follows; interleaving 4 rows of 2 KB halved the bandwidth).
// Threads: outside a generation it runs on the calling thread and only up to 8 rows; splitting it over a second thread
// while libtorch's OpenMP threads own the cores made decode steps slower (9 → 12–45 ms), and one thread already beats
// libtorch's two there (57 bench-size weights at one row: ~7 ms against ~11 ms). During the steps of a generation
// (Decoding) libtorch runs on one thread and this kernel takes every linear of up to 64 rows on all cores.
//
// Used only when no autograd graph is needed (no input requires a gradient, or grad mode is off), for contiguous fp32
// CPU weights, and where Vector512 is hardware-accelerated; everything else goes to nn.functional.linear, which is
// also the reference the tests compare with (odd K, N and M tails, bias, views). VLATUNE_SMALL_LINEAR=0 turns it off.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VlaBias.Model;

public static class SmallLinear
{
    /// <summary>Rows of x up to which the kernel is used: 8 on one thread (libtorch's GEMM on two is faster above), 64 in decode mode.</summary>
    public static int MaxRows => decoding ? DecodeMaxRows : 8;

    /// <summary>Off with VLATUNE_SMALL_LINEAR=0, or where AVX-512 is not available.</summary>
    public static bool Enabled { get; set; } =
        Vector512.IsHardwareAccelerated && Environment.GetEnvironmentVariable("VLATUNE_SMALL_LINEAR") != "0";

    /// <summary>The module applied to x: this kernel when it applies to a plain Linear, otherwise <c>module.call(x)</c>.</summary>
    public static Tensor Call(nn.Module<Tensor, Tensor> module, Tensor x) =>
        module is Linear lin && Applies(x, lin.weight!, lin.bias) ? Forward(x, lin.weight!, lin.bias) : module.call(x);

    /// <summary>Rows of a decode step up to which <see cref="Decoding"/> switches to decode mode.</summary>
    public const int DecodeMaxRows = 64;

    private static bool decoding;
    private static SpinPool? pool;

    /// <summary>
    /// Decode mode for the steps of a generation with <paramref name="rows"/> sequences (disposing the result ends it):
    /// libtorch runs on one thread, and this kernel takes every linear of up to DecodeMaxRows rows and splits it over
    /// the intra-op thread count with its own spinning workers. A decode step is almost all linears of few rows; the
    /// rest (norms, rotary, attention over the cache) is too small for libtorch to parallelise anyway. Measured on the
    /// bench sizes (2 cores): a batch-32 step 41–45 → 29–33 ms, a batch-1 step 9–13 → 7.5–8 ms. No-op when the kernel
    /// is off, there is one thread, there are more rows, or decode mode is already on.
    /// </summary>
    public static IDisposable Decoding(long rows)
    {
        int threads = get_num_threads();
        if (!Enabled || threads <= 1 || rows > DecodeMaxRows || decoding) return new DecodeScope(0);
        pool ??= new SpinPool(Math.Min(threads, Environment.ProcessorCount) - 1);
        set_num_threads(1);
        decoding = true;
        return new DecodeScope(threads);
    }

    /// <summary>Ends decode mode and gives libtorch back its <paramref name="threads"/> (0: nothing to end).</summary>
    private sealed class DecodeScope(int threads) : IDisposable
    {
        public void Dispose()
        {
            if (threads == 0) return;
            decoding = false;
            set_num_threads(threads);
            threads = 0;
        }
    }

    public static bool Applies(Tensor x, Tensor w, Tensor? b)
    {
        if (!Enabled || w.dim() != 2 || x.dim() < 1) return false;
        if (x.dtype != ScalarType.Float32 || w.dtype != ScalarType.Float32 || x.device_type != DeviceType.CPU || w.device_type != DeviceType.CPU) return false;
        if (!w.is_contiguous() || b is not null && (b.dtype != ScalarType.Float32 || !b.is_contiguous() || b.device_type != DeviceType.CPU)) return false;
        long k = w.shape[1];
        if (k == 0 || x.shape[^1] != k) return false; // nn.functional.linear reports the mismatch
        long m = x.numel() / k;
        if (m < 1 || m > MaxRows) return false;
        return !is_grad_enabled() || !(x.requires_grad || w.requires_grad || b is not null && b.requires_grad);
    }

    /// <summary>x [.., K] · Wᵀ (+ b) → [.., N]; the caller has checked <see cref="Applies"/>.</summary>
    public static unsafe Tensor Forward(Tensor x, Tensor w, Tensor? b)
    {
        long n = w.shape[0], k = w.shape[1];
        var xc = x.is_contiguous() ? x : x.contiguous();
        long m = xc.numel() / k;
        var shape = x.shape.ToArray();
        shape[^1] = n;
        var y = empty(shape, dtype: ScalarType.Float32);
        try
        {
            fixed (byte* px = xc.bytes)
            fixed (byte* pw = w.bytes)
            fixed (byte* py = y.bytes)
            fixed (byte* pb = b is null ? default : b.bytes)
            {
                int parts = decoding ? (int)Math.Min(pool!.Workers + 1, n / 64) : 1;
                if (parts <= 1 || m * n * k < (1 << 16)) Rows((float*)px, (float*)pw, (float*)pb, (float*)py, m, n, k, 0, n);
                else
                {
                    nint ax = (nint)px, aw = (nint)pw, ab = (nint)pb, ay = (nint)py;
                    pool!.Run(parts, p =>
                    {
                        long lo = n * p / parts & ~3L, hi = p == parts - 1 ? n : n * (p + 1) / parts & ~3L;
                        Rows((float*)ax, (float*)aw, (float*)ab, (float*)ay, m, n, k, lo, hi);
                    });
                }
            }
        }
        finally
        {
            if (!ReferenceEquals(xc, x)) xc.Dispose();
        }
        return y;
    }

    /// <summary>Every output column of every row (AggressiveOptimization: the first calls must not run unoptimised tier-0 code).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Rows(float* x, float* w, float* bias, float* y, long m, long n, long k, long n0, long n1)
    {
        long m4 = m & ~3L, j = n0;
        if (m4 > 0)
            for (; j + 4 <= n1; j += 4)
                for (long i = 0; i < m4; i += 4) Block4x4(x + i * k, w + j * k, k, y + i * n + j, n, bias is null ? null : bias + j);
        // Rows of x left over (all of them when m < 4), and output columns left over: one W row at a time, read
        // front to back (one sequential stream the prefetcher follows), dotted with each remaining x row from L1.
        for (long c = n0; c < n1; c++)
        {
            float bc = bias is null ? 0f : bias[c];
            for (long i = c < j ? m4 : 0; i < m; i++) y[i * n + c] = Dot(x + i * k, w + c * k, k) + bc;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> acc) => Vector512.FusedMultiplyAdd(a, b, acc);

    /// <summary>y[r, c] for 4 rows of x (stride k) and 4 rows of W (stride k); y has row stride ldy.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Block4x4(float* x, float* w, long k, float* y, long ldy, float* bias)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        float* x0 = x, x1 = x + k, x2 = x + 2 * k, x3 = x + 3 * k;
        float* w0 = w, w1 = w + k, w2 = w + 2 * k, w3 = w + 3 * k;
        long t = 0;
        for (; t + 16 <= k; t += 16)
        {
            var v0 = Vector512.Load(w0 + t); var v1 = Vector512.Load(w1 + t);
            var v2 = Vector512.Load(w2 + t); var v3 = Vector512.Load(w3 + t);
            var u = Vector512.Load(x0 + t);
            a00 = Fma(u, v0, a00); a01 = Fma(u, v1, a01); a02 = Fma(u, v2, a02); a03 = Fma(u, v3, a03);
            u = Vector512.Load(x1 + t);
            a10 = Fma(u, v0, a10); a11 = Fma(u, v1, a11); a12 = Fma(u, v2, a12); a13 = Fma(u, v3, a13);
            u = Vector512.Load(x2 + t);
            a20 = Fma(u, v0, a20); a21 = Fma(u, v1, a21); a22 = Fma(u, v2, a22); a23 = Fma(u, v3, a23);
            u = Vector512.Load(x3 + t);
            a30 = Fma(u, v0, a30); a31 = Fma(u, v1, a31); a32 = Fma(u, v2, a32); a33 = Fma(u, v3, a33);
        }
        Store(y, x0, w, k, t, bias, a00, a01, a02, a03);
        Store(y + ldy, x1, w, k, t, bias, a10, a11, a12, a13);
        Store(y + 2 * ldy, x2, w, k, t, bias, a20, a21, a22, a23);
        Store(y + 3 * ldy, x3, w, k, t, bias, a30, a31, a32, a33);
    }

    /// <summary>Finishes 4 dot products of one x row (horizontal sums, the scalar tail from <paramref name="t"/>, bias) into y[0..3].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Store(float* y, float* x, float* w, long k, long t, float* bias,
        Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        float s0 = Vector512.Sum(a0), s1 = Vector512.Sum(a1), s2 = Vector512.Sum(a2), s3 = Vector512.Sum(a3);
        for (long i = t; i < k; i++)
        {
            float xi = x[i];
            s0 += xi * w[i]; s1 += xi * w[k + i]; s2 += xi * w[2 * k + i]; s3 += xi * w[3 * k + i];
        }
        if (bias is not null) { s0 += bias[0]; s1 += bias[1]; s2 += bias[2]; s3 += bias[3]; }
        y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float Dot(float* x, float* w, long k)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default; // 4 chains hide the FMA latency
        long t = 0;
        for (; t + 64 <= k; t += 64)
        {
            a0 = Fma(Vector512.Load(x + t), Vector512.Load(w + t), a0);
            a1 = Fma(Vector512.Load(x + t + 16), Vector512.Load(w + t + 16), a1);
            a2 = Fma(Vector512.Load(x + t + 32), Vector512.Load(w + t + 32), a2);
            a3 = Fma(Vector512.Load(x + t + 48), Vector512.Load(w + t + 48), a3);
        }
        for (; t + 16 <= k; t += 16) a0 = Fma(Vector512.Load(x + t), Vector512.Load(w + t), a0);
        float s = Vector512.Sum((a0 + a1) + (a2 + a3));
        for (; t < k; t++) s += x[t] * w[t];
        return s;
    }
}
