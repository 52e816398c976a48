// The machine's roof: square matmul throughput in GFLOP/s (2·n³ per product), measured in the same run as the
// figures it normalises. fp32 is the roof MFU refers to; bf16 is reported beside it because some CPUs run it ~2× faster.
// One size can sit in a slow spot of the BLAS (on an AMD EPYC Zen 4, MKL's 2048³ fp32 product gave 116 GFLOP/s while
// a full fine-tuning step reached 1.04 of it), so Best measures several sizes and keeps the fastest.
using static TorchSharp.torch;

namespace VlaBias.Bench;

public static class MatmulRoof
{
    /// <summary>GFLOP/s samples of [n, n] @ [n, n] products in <paramref name="dtype"/>.</summary>
    public static Timings Measure(int n, ScalarType dtype, int warmup, int repeats)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var a = randn(n, n).to_type(dtype);
        var b = randn(n, n).to_type(dtype);
        var ms = Timings.TimeMs(warmup, repeats, () => a.matmul(b).Dispose());
        double flops = 2.0 * n * n * n;
        return new Timings(ms.Values.Select(t => flops / (t * 1e-3) / 1e9).ToArray());
    }

    /// <summary>
    /// Whether bf16 ran under a quarter of fp32's speed at the same size: the CPU has no native bf16 matmul (no
    /// avx512_bf16, no AMX) and libtorch converts every element (AMD EPYC family 25 model 1: 1.3 against 106-163 GFLOP/s).
    /// Where bf16 is native it ran 2.5-5× fp32's speed, far from this line.
    /// </summary>
    public static bool Bf16Emulated(double bf16Gflops, double f32Gflops) => bf16Gflops < f32Gflops / 4;

    /// <summary>
    /// The size of <paramref name="sizes"/> with the highest median GFLOP/s, its samples, and every measured size's median.
    /// Sizes are measured in the order given; once <paramref name="stopAfter"/> answers true for a size and its median,
    /// the larger ones are left out (an emulated dtype would take minutes on each and not change the answer).
    /// </summary>
    public static (int n, Timings gflops, IReadOnlyDictionary<int, double> medians) Best(IReadOnlyList<int> sizes, ScalarType dtype, int warmup, int repeats,
        Func<int, double, bool>? stopAfter = null)
    {
        var all = new Dictionary<int, Timings>();
        foreach (int n in sizes)
        {
            all[n] = Measure(n, dtype, warmup, repeats);
            if (stopAfter?.Invoke(n, all[n].Median) == true) break;
        }
        var best = all.MaxBy(kv => kv.Value.Median);
        return (best.Key, best.Value, all.ToDictionary(kv => kv.Key, kv => kv.Value.Median));
    }
}
