// Gradient checkpointing of one decoder layer (the reentrant scheme of torch.utils.checkpoint): the forward runs the
// layer without building a graph and saves only its input (and the rotary tables and mask it was called with); the
// backward runs the layer again with gradients from that input and back-propagates the incoming gradient through it,
// which accumulates the layer's parameter gradients (LoRA weights) and returns the gradient of the input. The layer
// has no randomness at train time in vlatune (LoRA dropout is applied before the base layer only when > 0; callers
// that use dropout get a different mask on recomputation, as with PyTorch's checkpoint without RNG preservation).
using TorchSharp;
using static TorchSharp.torch;

namespace VlaBias.Model;

internal sealed class CheckpointedLayer : autograd.SingleTensorFunction<CheckpointedLayer>
{
    public override string Name => nameof(CheckpointedLayer);

    /// <summary>Layers recomputed in backward so far in this process (tests check that checkpointing really happened).</summary>
    internal static long Recomputed => Interlocked.Read(ref recomputed);
    private static long recomputed;

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
        var layer = (LlamaDecoderLayer)vars[0];
        Tensor x = (Tensor)vars[1], cos = (Tensor)vars[2], sin = (Tensor)vars[3], mask = (Tensor)vars[4];
        bool hasMask = (bool)vars[5];
        ctx.save_for_backward([x, cos, sin, mask]);
        ctx.save_data("layer", layer);
        ctx.save_data("has_mask", hasMask);
        ctx.save_data("x_requires_grad", x.requires_grad);
        using var _ = no_grad();
        return layer.call(new DecoderInput(x, new DecoderContext(cos, sin, hasMask ? mask : null, null, 0)));
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        Interlocked.Increment(ref recomputed);
        var saved = ctx.get_saved_variables();
        var layer = (LlamaDecoderLayer)ctx.get_data("layer");
        bool hasMask = (bool)ctx.get_data("has_mask");
        Tensor? gradInput = null;
        using (var scope = NewDisposeScope())
        using (enable_grad())
        {
            var x = saved[0].detach().requires_grad_(true);
            var output = layer.call(new DecoderInput(x, new DecoderContext(saved[1], saved[2], hasMask ? saved[3] : null, null, 0)));
            autograd.backward([output], [gradOutput]);
            if ((bool)ctx.get_data("x_requires_grad") && x.grad is { } g) gradInput = g.detach().MoveToOuterDisposeScope();
        }
        // one gradient per apply() argument: layer, x, cos, sin, mask, has_mask, anchor
        return [null!, gradInput!, null!, null!, null!, null!, null!];
    }
}
