// The machine's roof: square matmul throughput in GFLOP/s (2·n³ per product), measured in the same run as the
// figures it normalises. fp32 is the roof MFU refers to; bf16 is reported beside it because some CPUs run it ~2× faster.
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
}
