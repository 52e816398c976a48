// Key/value cache for incremental decoding, preallocated once per generation: per layer K and V of shape
// [B, kv_heads, capacity, D]. A forward over T new tokens writes them at columns start..start+T-1 (in place, no
// concatenation) and attends over columns 0..start+T-1. Rows share columns: batched prompts are left-padded to one length.
using static TorchSharp.torch;

namespace VlaBias.Model;

public sealed class KvCache : IDisposable
{
    private readonly Tensor[] keys, values;

    public KvCache(int layers, long batch, int kvHeads, long capacity, int headDim, ScalarType dtype, Device? device = null)
    {
        keys = new Tensor[layers];
        values = new Tensor[layers];
        for (int i = 0; i < layers; i++)
        {
            keys[i] = zeros([batch, kvHeads, capacity, headDim], dtype: dtype, device: device).DetachFromDisposeScope();
            values[i] = zeros([batch, kvHeads, capacity, headDim], dtype: dtype, device: device).DetachFromDisposeScope();
        }
        Capacity = capacity;
        Batch = batch;
    }

    public long Capacity { get; }
    public long Batch { get; private set; }

    /// <summary>Writes k, v [B, kvH, T, D] at columns start.. and returns views over columns 0..start+T-1.</summary>
    public (Tensor k, Tensor v) Update(int layer, Tensor k, Tensor v, long start)
    {
        long t = k.shape[2];
        if (start + t > Capacity)
            throw new InvalidOperationException($"KV cache capacity {Capacity} exceeded (start {start} + {t} tokens)");
        using (no_grad())
        {
            keys[layer].narrow(2, start, t).copy_(k);
            values[layer].narrow(2, start, t).copy_(v);
        }
        return (keys[layer].narrow(2, 0, start + t), values[layer].narrow(2, 0, start + t));
    }

    /// <summary>Keeps rows <paramref name="rows"/> (beam search reordering); the batch size may change.</summary>
    public void Reorder(Tensor rows)
    {
        for (int i = 0; i < keys.Length; i++)
        {
            var k = keys[i].index_select(0, rows).DetachFromDisposeScope();
            var v = values[i].index_select(0, rows).DetachFromDisposeScope();
            keys[i].Dispose(); values[i].Dispose();
            keys[i] = k; values[i] = v;
        }
        Batch = rows.shape[0];
    }

    public void Dispose()
    {
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
    }
}
