// The key/value cache of a shared prompt prefix (the prompt up to and including the image tokens): one forward over
// the G distinct prefixes at column 0 stores each layer's K and V [G, kvH, P, D] as they are (no copy, autograd kept:
// with LoRA on the decoder the prefix keys and values depend on trainable weights and gradients flow back through
// them). Reorder maps the B rows of the continuation to their prefix rows; one forward over the continuations then
// starts at column P and attends over the prefix rows gathered along the batch, concatenated with its own keys and
// values. The continuation is not stored: this cache serves one continuation forward (option scoring, a loss term).
using static TorchSharp.torch;

namespace VlaBias.Model;

public sealed class PrefixCache(int layers) : IKvCache
{
    private readonly Tensor?[] keys = new Tensor?[layers], values = new Tensor?[layers];
    private Tensor? rows;           // continuation row → prefix row; null = one to one

    /// <summary>Columns of the prefix (0 before the prefix forward).</summary>
    public long Length { get; private set; }

    public long Batch => rows?.shape[0] ?? keys[0]?.shape[0] ?? 0;

    public (Tensor k, Tensor v) Update(int layer, Tensor k, Tensor v, long start)
    {
        if (keys[layer] is null)
        {
            if (start != 0) throw new InvalidOperationException($"the prefix forward starts at column 0, not {start}");
            keys[layer] = k.DetachFromDisposeScope();
            values[layer] = v.DetachFromDisposeScope();
            Length = k.shape[2];
            return (k, v);
        }
        if (start != Length) throw new InvalidOperationException($"a continuation starts at column {Length} (the prefix length), not {start}");
        var pk = rows is null ? keys[layer]! : keys[layer]!.index_select(0, rows);
        var pv = rows is null ? values[layer]! : values[layer]!.index_select(0, rows);
        return (cat([pk, k], 2), cat([pv, v], 2));
    }

    /// <summary>Row i of what follows continues prefix row <paramref name="rows"/>[i] (composes with an earlier reorder).</summary>
    public void Reorder(Tensor rows)
    {
        var index = rows.to_type(ScalarType.Int64).to(keys[0]?.device ?? CPU);
        var composed = (this.rows is null ? index.clone() : this.rows.index_select(0, index)).DetachFromDisposeScope();
        this.rows?.Dispose();
        this.rows = composed;
    }

    public void Dispose()
    {
        foreach (var t in keys) t?.Dispose();
        foreach (var t in values) t?.Dispose();
        rows?.Dispose();
    }
}
