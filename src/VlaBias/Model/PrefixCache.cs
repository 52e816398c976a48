// The key/value cache of a shared prompt prefix (the prompt up to and including the image tokens): one forward over
// the G distinct prefixes at column 0 stores each layer's K and V [G, kvH, P, D] as they are (no copy, autograd kept:
// with LoRA on the decoder the prefix keys and values depend on trainable weights and gradients flow back through
// them). Reorder maps the B rows of the continuation to their prefix rows; one forward over the continuations then
// starts at column P, and each layer's attention (Attend) scores its queries against the prefix rows' keys in place
// (the rows of one prefix in one matmul) and against its own keys, under one softmax: no per-row copy of the prefix,
// for inference memory and for what autograd keeps. The continuation is not stored: this cache serves one
// continuation forward (option scoring, a loss term).
using TorchSharp;
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
        // what IKvCache promises (keys and values over every column, per row); LlamaAttention takes Attend instead
        var pk = rows is null ? keys[layer]! : keys[layer]!.index_select(0, rows);
        var pv = rows is null ? values[layer]! : values[layer]!.index_select(0, rows);
        return (cat([pk, k], 2), cat([pv, v], 2));
    }

    /// <summary>Whether a forward starting at <paramref name="start"/> continues this prefix (and should use <see cref="Attend"/>).</summary>
    public bool Continues(long start) => Length > 0 && start == Length;

    /// <summary>
    /// Attention of a continuation over its prefix rows and its own positions, without copying the prefix to every row:
    /// q [B, H, T, D], k and v [B, kvH, T, D] (the continuation's, rotary applied), mask [B, 1, T, P + T] (true = may
    /// attend) → [B, H, T, D]. The rows of one prefix meet its keys and values in one matmul each (query heads grouped by
    /// their key/value head, as grouped-query attention pairs them); scores over prefix and continuation share one
    /// softmax, taken in fp32. Autograd keeps the prefix tensors once, not B copies of them.
    /// </summary>
    public Tensor Attend(int layer, Tensor q, Tensor k, Tensor v, Tensor mask)
    {
        using var scope = NewDisposeScope();
        Tensor pk = keys[layer]!, pv = values[layer]!;                     // [G, kvH, P, D]
        long b = q.shape[0], heads = q.shape[1], t = q.shape[2], d = q.shape[3];
        long prefixes = pk.shape[0], kvHeads = pk.shape[1], p = pk.shape[2], group = heads / kvHeads;
        var qg = q.reshape(b, kvHeads, group * t, d);                       // head h = kvHead · group + i
        var (groups, uniform, orderIndex, backIndex) = layout ??= Layout.Of(rows, prefixes, b, q.device);

        // Rows of prefix j: [n_j, kvH, gT, X] ↔ [kvH, n_j·gT, X], one matmul against that prefix's [kvH, ·, ·]. When every
        // prefix has the same number of rows (K probes per image, the same questions for every image) all prefixes go in
        // one batched matmul over [G, kvH, n·gT, X] instead: a handful of operations per layer whatever G is.
        Tensor PerPrefix(Tensor rowsTensor, Tensor prefixTensor, bool transposed, long width)
        {
            long x = rowsTensor.shape[3];
            if (uniform)
            {
                long n = groups[0].Count;
                var flat = rowsTensor.index_select(0, orderIndex).view(prefixes, n, kvHeads, group * t, x).permute(0, 2, 1, 3, 4)
                    .reshape(prefixes, kvHeads, n * group * t, x);
                var res = flat.matmul(transposed ? prefixTensor.transpose(-2, -1) : prefixTensor);          // [G, kvH, n·gT, W]
                return res.view(prefixes, kvHeads, n, group * t, width).permute(0, 2, 1, 3, 4).reshape(b, kvHeads, group * t, width)
                    .index_select(0, backIndex);
            }
            return cat(groups.Select(g =>
            {
                long n = g.Count;
                var part = rowsTensor.index_select(0, g.Rows);
                var flat = part.permute(1, 0, 2, 3).reshape(kvHeads, n * group * t, x);
                var mine = prefixTensor[g.Prefix];
                return flat.matmul(transposed ? mine.transpose(-2, -1) : mine).reshape(kvHeads, n, group * t, width).permute(1, 0, 2, 3);
            }).ToList(), 0).index_select(0, backIndex);
        }

        double scale = 1.0 / Math.Sqrt(d);
        var prefixScores = PerPrefix(qg, pk, transposed: true, p);                                   // [B, kvH, gT, P]
        var ownScores = qg.matmul(k.transpose(-2, -1));                                               // [B, kvH, gT, T]
        var allowed = mask.unsqueeze(2).expand(b, 1, group, t, p + t).reshape(b, 1, group * t, p + t);
        var probs = (cat([prefixScores, ownScores], -1).to_type(ScalarType.Float32) * scale)
            .masked_fill(allowed.logical_not(), Scalars.MinusInfinity).softmax(-1).to_type(q.dtype);
        var fromPrefix = PerPrefix(probs.narrow(-1, 0, p), pv, transposed: false, d);                 // [B, kvH, gT, D]
        var fromOwn = probs.narrow(-1, p, t).matmul(v);
        return (fromPrefix + fromOwn).reshape(b, heads, t, d).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Which continuation rows belong to which prefix, the same for every layer of a forward (so found once): per prefix
    /// with rows, its index and rows; whether all prefixes have equally many; the rows grouped by prefix (order) and the
    /// permutation back to row order.
    /// </summary>
    private sealed record Layout(List<(int Prefix, long Count, Tensor Rows)> Groups, bool Uniform, Tensor Order, Tensor Back) : IDisposable
    {
        public static Layout Of(Tensor? rows, long prefixes, long b, Device device)
        {
            long[] prefixOf = rows is null ? Enumerable.Range(0, (int)b).Select(i => (long)i).ToArray() : rows.cpu().data<long>().ToArray();
            var groups = Enumerable.Range(0, (int)prefixes)
                .Select(j => (j, idx: Enumerable.Range(0, (int)b).Where(i => prefixOf[i] == j).Select(i => (long)i).ToArray()))
                .Where(x => x.idx.Length > 0).ToList();
            var order = groups.SelectMany(x => x.idx).ToArray();
            var back = new long[b];
            for (int i = 0; i < order.Length; i++) back[order[i]] = i;
            bool uniform = groups.Count == prefixes && groups.All(x => x.idx.Length == groups[0].idx.Length);
            return new Layout(groups.Select(x => (x.j, (long)x.idx.Length, tensor(x.idx, device: device).DetachFromDisposeScope())).ToList(),
                uniform, tensor(order, device: device).DetachFromDisposeScope(), tensor(back, device: device).DetachFromDisposeScope());
        }

        public void Dispose()
        {
            foreach (var g in Groups) g.Rows.Dispose();
            Order.Dispose();
            Back.Dispose();
        }
    }

    private Layout? layout;

    /// <summary>Row i of what follows continues prefix row <paramref name="rows"/>[i] (composes with an earlier reorder).</summary>
    public void Reorder(Tensor rows)
    {
        layout?.Dispose();
        layout = null;
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
        layout?.Dispose();
    }
}
