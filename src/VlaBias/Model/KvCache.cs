// Key/value caches for incremental decoding. The decoder layers see only IKvCache: a forward over T new tokens hands
// each layer's K and V [B, kv_heads, T, D] to Update with the column they start at, and attends over what it returns,
// the keys and values of columns 0..start+T-1. Rows share columns: batched prompts are left-padded to one length.
// KvCache is the one generation uses: preallocated once per generation, written in place without autograd.
// Another implementation can keep tensors that carry gradients (concatenating, for a prefix shared in training) or
// share one image prefix across the rows of a batch as expanded views; the model and its layers need no change.
using static TorchSharp.torch;

namespace VlaBias.Model;

public interface IKvCache : IDisposable
{
    /// <summary>Rows (sequences) in the cache now.</summary>
    long Batch { get; }

    /// <summary>Stores k, v [B, kvH, T, D] of <paramref name="layer"/> at columns start.. and returns keys and values over columns 0..start+T-1.</summary>
    (Tensor k, Tensor v) Update(int layer, Tensor k, Tensor v, long start);

    /// <summary>Keeps rows <paramref name="rows"/> (beam search reordering); the batch size may change.</summary>
    void Reorder(Tensor rows);
}

/// <summary>Per layer K and V of shape [B, kv_heads, capacity, D], preallocated, written in place under no_grad.</summary>
public sealed class KvCache : IKvCache
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
