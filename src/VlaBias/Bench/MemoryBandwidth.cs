// The machine's streaming read bandwidth, measured in the bench run itself: sum() over a large fp32 buffer (1 GiB by
// default, far above any cache), on libtorch's intra-op threads, so each timed run reads every byte once from memory.
// decode_bandwidth_fraction divides the weight bytes a cached decode step must read × tokens/s by this figure.
using static TorchSharp.torch;

namespace VlaBias.Bench;

public static class MemoryBandwidth
{
    /// <summary>GB/s samples (10⁹ bytes per second) of reading a buffer of <paramref name="bytes"/>.</summary>
    public static Timings Measure(long bytes, int repeats)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var buffer = ones(bytes / sizeof(float));
        long read = buffer.numel() * sizeof(float);
        var ms = Timings.TimeMs(1, Math.Max(3, repeats), () => buffer.sum().Dispose());
        return new Timings(ms.Values.Select(t => read / (t * 1e-3) / 1e9).ToArray());
    }

    /// <summary>Bytes of weights one cached decode step reads: every language-model projection and lm_head once, in <paramref name="elementBytes"/>.</summary>
    public static double DecodeStepWeightBytes(Model.TextConfig text, int elementBytes = sizeof(float)) => TrainingFlops.MatmulParams(text) * elementBytes;
}
