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
// libtorch's two there (57 bench-size weights at one row: ~7 ms against ~11 ms). In decode mode (LinearKernels.Decoding)
// libtorch runs on one thread and this kernel takes every linear of up to 64 rows on all cores (a SpinPool).
//
// This file is only the arithmetic; which calls it takes is decided by LinearKernels (no autograd graph needed,
// contiguous fp32 CPU weights, Vector512 hardware-accelerated, few enough rows). nn.functional.linear is the reference
// the tests compare it with (odd K, N and M tails, bias, views).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace VlaBias.Model;

internal static class SmallRowKernel
{
    /// <summary>
    /// x [.., K] · Wᵀ (+ b) → [.., N], split over <paramref name="pool"/>'s threads when one is given; the caller has
    /// checked <see cref="LinearKernels.Applies"/> (contiguous fp32 CPU weights).
    /// </summary>
    public static unsafe Tensor Forward(Tensor x, Tensor w, Tensor? b, SpinPool? pool = null)
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
                int parts = pool is null ? 1 : (int)Math.Min(pool.Workers + 1, n / 64);
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
