using static TorchSharp.torch;

namespace VlaBias.Weights;

/// <summary>
/// Walks the memory of a contiguous CPU tensor as byte spans of bounded size, so a tensor of any size (also above
/// 2 GiB, where one Span cannot reach) can be filled from or written to a file without a managed copy of it.
/// </summary>
internal static class TensorMemory
{
    /// <summary>Default span size: large enough that per-chunk overhead vanishes, small enough to stay far below 2 GiB.</summary>
    public const int DefaultChunkBytes = 64 << 20;

    /// <param name="chunk">A span over the tensor's own memory.</param>
    /// <param name="byteOffset">Where the span starts, in bytes from the start of the tensor's data.</param>
    public delegate void ChunkAction(Span<byte> chunk, long byteOffset);

    public static void ForEachChunk(Tensor tensor, int chunkBytes, ChunkAction action)
    {
        if (tensor.device_type != TorchSharp.DeviceType.CPU || !tensor.is_contiguous())
            throw new ArgumentException("tensor must be contiguous and on the CPU", nameof(tensor));
        long count = tensor.numel();
        if (count == 0) return;
        long elementSize = tensor.element_size();
        long perChunk = Math.Max(1, chunkBytes / elementSize);
        using var flat = tensor.view(-1);
        for (long start = 0; start < count; start += perChunk)
        {
            long length = Math.Min(perChunk, count - start);
            using var piece = flat.narrow(0, start, length);
            action(piece.bytes, start * elementSize);
        }
    }
}
