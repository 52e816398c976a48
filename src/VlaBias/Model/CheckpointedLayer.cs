// Gradient checkpointing of one decoder layer (the reentrant scheme of torch.utils.checkpoint): the forward runs the
// layer without building a graph and saves only its input (and the rotary tables and mask it was called with); the
// backward runs the layer again with gradients from that input and back-propagates the incoming gradient through it,
// which accumulates the layer's parameter gradients (LoRA weights) and returns the gradient of the input. The layer
// has no randomness at train time in vlatune (LoRA dropout is applied before the base layer only when > 0; callers
// that use dropout get a different mask on recomputation, as with PyTorch's checkpoint without RNG preservation).
// CheckpointedPrefixLayer is the same for a layer of a shared prompt prefix's forward (Generation/SharedPrefix.cs):
// its keys and values go into the PrefixCache, where every continuation attends to them, so they are outputs of the
// function beside the hidden state, and backward recomputes the layer and back-propagates all three incoming gradients.
// Saved per layer: the input and the keys and values the continuation needs anyway, not the layer's activations.
using TorchSharp;
using static TorchSharp.torch;

namespace VlaBias.Model;

internal sealed class CheckpointedLayer : autograd.SingleTensorFunction<CheckpointedLayer>
{
    public override string Name => nameof(CheckpointedLayer);

    /// <summary>Layers recomputed in backward so far in this process (tests check that checkpointing really happened).</summary>
    internal static long Recomputed => Interlocked.Read(ref recomputed);
    private static long recomputed;
    internal static void CountRecomputation() => Interlocked.Increment(ref recomputed);

    /// <summary>The layer's output for <paramref name="x"/>, its activations recomputed in backward.</summary>
    public static Tensor Apply(LlamaDecoderLayer layer, Tensor x, DecoderContext ctx)
    {
        // The function's output only enters the graph when an input requires grad; the first layer's input (frozen
        // embeddings) may not, so a 0-element tensor that does stands in and gets no gradient.
        using var anchor = empty(0, requires_grad: true);
        var mask = ctx.Mask ?? empty(0);
        return apply(layer, x, ctx.Cos, ctx.Sin, mask, ctx.Mask is not null, anchor);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (layer, x, cos, sin, mask) = LayerCheckpoint.Save(ctx, vars);
        using var _ = no_grad();
        return layer.call(new DecoderInput(x, new DecoderContext(cos, sin, mask, null, 0)));
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var gradInput = LayerCheckpoint.Backward(ctx, (layer, x, cos, sin, mask) => [layer.call(new DecoderInput(x, new DecoderContext(cos, sin, mask, null, 0)))], [gradOutput]);
        // one gradient per apply() argument: layer, x, cos, sin, mask, has_mask, anchor
        return [null!, gradInput!, null!, null!, null!, null!, null!];
    }
}

/// <summary>What both checkpoints save in forward (the layer's input, rotary tables and mask) and do in backward.</summary>
internal static class LayerCheckpoint
{
    /// <summary>Saves apply's arguments (layer, x, cos, sin, mask, has_mask, ...) for backward and returns them.</summary>
    public static (LlamaDecoderLayer layer, Tensor x, Tensor cos, Tensor sin, Tensor? mask) Save(autograd.AutogradContext ctx, object[] vars)
    {
        var layer = (LlamaDecoderLayer)vars[0];
        Tensor x = (Tensor)vars[1], cos = (Tensor)vars[2], sin = (Tensor)vars[3], mask = (Tensor)vars[4];
        bool hasMask = (bool)vars[5];
        ctx.save_for_backward([x, cos, sin, mask]);
        ctx.save_data("layer", layer);
        ctx.save_data("has_mask", hasMask);
        ctx.save_data("x_requires_grad", x.requires_grad);
        return (layer, x, cos, sin, hasMask ? mask : null);
    }

    /// <summary>
    /// Runs the layer again with gradients from its saved input (<paramref name="run"/> returns the function's outputs),
    /// back-propagates <paramref name="grads"/> through them (an undefined one is skipped) and returns the input's gradient.
    /// </summary>
    public static Tensor? Backward(autograd.AutogradContext ctx, Func<LlamaDecoderLayer, Tensor, Tensor, Tensor, Tensor?, Tensor[]> run, IReadOnlyList<Tensor> grads)
    {
        CheckpointedLayer.CountRecomputation();
        var saved = ctx.get_saved_variables();
        var layer = (LlamaDecoderLayer)ctx.get_data("layer");
        bool hasMask = (bool)ctx.get_data("has_mask");
        using var scope = NewDisposeScope();
        using var _ = enable_grad();
        var x = saved[0].detach().requires_grad_(true);
        var outputs = run(layer, x, saved[1], saved[2], hasMask ? saved[3] : null);
        var pairs = outputs.Zip(grads).Where(p => p.Second is { IsInvalid: false }).ToList();
        if (pairs.Count > 0) autograd.backward(pairs.Select(p => p.First).ToList(), pairs.Select(p => p.Second).ToList());
        Tensor? gradInput = (bool)ctx.get_data("x_requires_grad") && x.grad is { } g ? g.detach().MoveToOuterDisposeScope() : null;
        foreach (var o in outputs) o.Dispose();
        return gradInput;
    }
}

/// <summary>A prefix forward's decoder layer, checkpointed: returns its output and stores its keys and values in the cache.</summary>
internal sealed class CheckpointedPrefixLayer : autograd.MultiTensorFunction<CheckpointedPrefixLayer>
{
    public override string Name => nameof(CheckpointedPrefixLayer);

    /// <summary>Keeps the keys and values one layer hands its cache (a prefix forward starts at column 0).</summary>
    private sealed class Capture : IKvCache
    {
        public Tensor? K, V;
        public long Batch => K?.shape[0] ?? 0;

        public (Tensor k, Tensor v) Update(int layer, Tensor k, Tensor v, long start)
        {
            if (start != 0) throw new InvalidOperationException($"a prefix forward starts at column 0, not {start}");
            // out of the attention's dispose scope, which ends before the layer does (the caller owns them)
            (K, V) = (k.DetachFromDisposeScope(), v.DetachFromDisposeScope());
            return (k, v);
        }

        public void Reorder(Tensor rows) => throw new NotSupportedException("a captured prefix layer is not reordered");
        public void Dispose() { }
    }

    /// <summary>The keys and values forward returns, out of every dispose scope: released once apply has wrapped them.</summary>
    private sealed class Returned
    {
        public Tensor? K, V;
    }

    /// <summary>Layer <paramref name="index"/>'s output for <paramref name="x"/>; its keys and values go to <paramref name="cache"/> at column 0.</summary>
    public static Tensor Apply(LlamaDecoderLayer layer, int index, Tensor x, DecoderContext ctx, IKvCache cache)
    {
        using var anchor = empty(0, requires_grad: true);   // see CheckpointedLayer.Apply
        var mask = ctx.Mask ?? empty(0);
        var returned = new Returned();
        var outs = apply(layer, x, ctx.Cos, ctx.Sin, mask, ctx.Mask is not null, anchor, returned);
        returned.K?.Dispose();   // apply's outputs are new handles of the same tensors
        returned.V?.Dispose();
        cache.Update(index, outs[1], outs[2], 0);
        return outs[0];
    }

    private static (Tensor output, Tensor k, Tensor v) Run(LlamaDecoderLayer layer, Tensor x, Tensor cos, Tensor sin, Tensor? mask)
    {
        var capture = new Capture();
        var output = layer.call(new DecoderInput(x, new DecoderContext(cos, sin, mask, capture, 0)));
        return (output, capture.K ?? throw new InvalidOperationException("the layer stored no keys"), capture.V!);
    }

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (layer, x, cos, sin, mask) = LayerCheckpoint.Save(ctx, vars);
        // An output nothing used (the last layer's hidden state: a prefix forward computes no logits) gets no gradient;
        // TorchSharp would make zeros from an empty_like of the output that the forward's dispose scope has freed by then.
        ctx.set_materialize_grads(false);
        using var _ = no_grad();
        var (output, k, v) = Run(layer, x, cos, sin, mask);
        var returned = (Returned)vars[7];
        (returned.K, returned.V) = (k, v);
        return [output, k, v];
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grads)
    {
        var gradInput = LayerCheckpoint.Backward(ctx, (layer, x, cos, sin, mask) =>
        {
            var (output, k, v) = Run(layer, x, cos, sin, mask);
            return [output, k, v];
        }, grads);
        // one gradient per apply() argument: layer, x, cos, sin, mask, has_mask, anchor, returned
        return [null!, gradInput!, null!, null!, null!, null!, null!, null!];
    }
}
