// The decoder-only language model of a LLaVA checkpoint: Llama (RMSNorm, rotary embeddings, SwiGLU MLP,
// grouped-query attention) or Qwen2 (the same with q/k/v biases). inputs_embeds [B, T, C] + key mask [B, S] →
// decoder layers (optionally writing a KV cache) → final norm → lm_head → logits [B, T, V].
// Names follow Hugging Face: language_model.model.layers.{i}.self_attn.q_proj.weight, language_model.lm_head.weight.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VlaBias.Model;

/// <summary>What a decoder layer needs besides its hidden states; the same for every layer of one forward.</summary>
public sealed record DecoderContext(Tensor Cos, Tensor Sin, Tensor? Mask, IKvCache? Cache, long CacheStart);

/// <summary>Input of a decoder layer or its attention (a record so hooks on <c>.call()</c> still see one argument).</summary>
public sealed record DecoderInput(Tensor Hidden, DecoderContext Context);

public sealed class LlamaAttention : nn.Module<DecoderInput, Tensor>
{
    // nn.Module rather than KernelLinear and not readonly: LoRA adapters swap these children (Adapters/LoraAdapter.cs).
    private nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, o_proj;
    private readonly int heads, kvHeads, headDim, layerIndex;

    public LlamaAttention(TextConfig c, int layerIndex, LinearKernels kernels) : base(nameof(LlamaAttention))
    {
        heads = c.NumAttentionHeads;
        kvHeads = c.NumKeyValueHeads;
        headDim = c.HeadDim;
        this.layerIndex = layerIndex;
        q_proj = new KernelLinear(c.HiddenSize, heads * headDim, c.AttentionBias, kernels);
        k_proj = new KernelLinear(c.HiddenSize, kvHeads * headDim, c.AttentionBias, kernels);
        v_proj = new KernelLinear(c.HiddenSize, kvHeads * headDim, c.AttentionBias, kernels);
        o_proj = new KernelLinear(heads * headDim, c.HiddenSize, false, kernels);
        RegisterComponents();
    }

    public override Tensor forward(DecoderInput input)
    {
        using var scope = NewDisposeScope();
        var (x, ctx) = input;
        long b = x.shape[0], t = x.shape[1];
        var q = q_proj.call(x).view(b, t, heads, headDim).transpose(1, 2);     // (B, H, T, D)
        var k = k_proj.call(x).view(b, t, kvHeads, headDim).transpose(1, 2);   // (B, kvH, T, D)
        var v = v_proj.call(x).view(b, t, kvHeads, headDim).transpose(1, 2);
        q = RotaryEmbedding.Apply(q, ctx.Cos, ctx.Sin);
        k = RotaryEmbedding.Apply(k, ctx.Cos, ctx.Sin);
        if (ctx.Cache is PrefixCache prefix && prefix.Continues(ctx.CacheStart))
        {
            // questions continuing a shared prefix: attend to it without copying it to every row
            var po = prefix.Attend(layerIndex, q, k, v, ctx.Mask ?? throw new InvalidOperationException("a continuation needs its mask"));
            return o_proj.call(po.transpose(1, 2).reshape(b, t, heads * headDim)).MoveToOuterDisposeScope();
        }
        if (ctx.Cache is not null) (k, v) = ctx.Cache.Update(layerIndex, k, v, ctx.CacheStart); // (B, kvH, S, D)
        // scaled_dot_product_attention, or in bf16 the two-matmul form where it measured faster on this CPU
        var o = AttentionChoice.Default.Attend(q, k, v, ctx.Mask);                    // (B, H, T, D)
        return o_proj.call(o.transpose(1, 2).reshape(b, t, heads * headDim)).MoveToOuterDisposeScope();
    }
}

/// <summary>SwiGLU: down_proj(act(gate_proj(x)) * up_proj(x)).</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> gate_proj, up_proj, down_proj; // swapped by LoRA adapters
    private readonly Func<Tensor, Tensor> act;

    public LlamaMlp(TextConfig c, LinearKernels kernels) : base(nameof(LlamaMlp))
    {
        gate_proj = new KernelLinear(c.HiddenSize, c.IntermediateSize, false, kernels);
        up_proj = new KernelLinear(c.HiddenSize, c.IntermediateSize, false, kernels);
        down_proj = new KernelLinear(c.IntermediateSize, c.HiddenSize, false, kernels);
        RegisterComponents();
        act = Activations.Get(c.HiddenAct);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(act(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-norm residual block; its output is the residual stream that steering hooks act on.</summary>
public sealed class LlamaDecoderLayer : nn.Module<DecoderInput, Tensor>
{
    private readonly RMSNorm input_layernorm, post_attention_layernorm;
    private readonly LlamaAttention self_attn;
    private readonly LlamaMlp mlp;

    public LlamaDecoderLayer(TextConfig c, int index, LinearKernels kernels) : base(nameof(LlamaDecoderLayer))
    {
        input_layernorm = new RMSNorm(c.HiddenSize, c.RmsNormEps);
        self_attn = new LlamaAttention(c, index, kernels);
        post_attention_layernorm = new RMSNorm(c.HiddenSize, c.RmsNormEps);
        mlp = new LlamaMlp(c, kernels);
        RegisterComponents();
    }

    public override Tensor forward(DecoderInput input)
    {
        using var scope = NewDisposeScope();
        var x = input.Hidden;
        x = x + self_attn.call(input with { Hidden = input_layernorm.call(x) });
        x = x + mlp.call(post_attention_layernorm.call(x));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>language_model.model: embed_tokens, layers, norm.</summary>
public sealed class LlamaModel : nn.Module<Tensor, Tensor>
{
    private readonly Embedding embed_tokens;
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly RMSNorm norm;
    private readonly RotaryEmbedding rotary;

    public LlamaModel(TextConfig c, LinearKernels kernels) : base(nameof(LlamaModel))
    {
        embed_tokens = nn.Embedding(c.VocabSize, c.HiddenSize);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new LlamaDecoderLayer(c, i, kernels)).ToArray());
        norm = new RMSNorm(c.HiddenSize, c.RmsNormEps);
        RegisterComponents();
        rotary = new RotaryEmbedding(c.HeadDim, c.RopeTheta);
    }

    public Embedding EmbedTokens => embed_tokens;
    public ModuleList<LlamaDecoderLayer> Layers => layers;

    /// <summary>
    /// Keep only each decoder layer's input during a forward with gradients and recompute the layer in backward
    /// (CheckpointedLayer.cs): activation memory of one layer instead of all, for one more forward.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    public override Tensor forward(Tensor inputIds) => Forward(embed_tokens.call(inputIds), null, null, null, 0);

    /// <summary>
    /// inputs_embeds [B, T, C] → final hidden states [B, T, C]. <paramref name="keyMask"/> [B, start+T] marks real
    /// tokens (1) and padding (0) over everything seen so far; positions default to the count of real tokens before each.
    /// </summary>
    public Tensor Forward(Tensor embeds, Tensor? keyMask, Tensor? positions, IKvCache? cache, long start)
    {
        using var scope = NewDisposeScope();
        long b = embeds.shape[0], t = embeds.shape[1];
        keyMask ??= ones(b, start + t, dtype: ScalarType.Int64, device: embeds.device);
        positions ??= AttentionMasks.PositionIds(keyMask).narrow(1, start, t);
        // Plain causal attention (the fast path) when nothing is padded and nothing is cached.
        bool plain = start == 0 && keyMask.min().ToInt64() == 1;
        var mask = plain ? null : AttentionMasks.Causal(keyMask, start, t);
        var (cos, sin) = rotary.CosSin(positions, embeds.dtype);
        var ctx = new DecoderContext(cos, sin, mask, cache, start);
        var x = embeds;
        // Checkpointed: a forward without a cache, and the forward of a shared prefix (a PrefixCache at column 0: its
        // layers' keys and values become outputs of the checkpoint). A continuation after a prefix (few positions per
        // row) keeps its activations.
        bool checkpoint = GradientCheckpointing && is_grad_enabled() && (cache is null || cache is PrefixCache && start == 0);
        int index = 0;
        foreach (var layer in layers)
        {
            x = !checkpoint ? layer.call(new DecoderInput(x, ctx))
                : cache is null ? CheckpointedLayer.Apply(layer, x, ctx)
                : CheckpointedPrefixLayer.Apply(layer, index, x, ctx, cache);
            index++;
        }
        return norm.call(x).MoveToOuterDisposeScope();
    }
}

/// <summary>language_model: model + lm_head (LlamaForCausalLM / Qwen2ForCausalLM).</summary>
public sealed class CausalLm : nn.Module<Tensor, Tensor>
{
    private readonly LlamaModel model;
    private readonly KernelLinear lm_head;

    public CausalLm(TextConfig c, LinearKernels kernels) : base(nameof(CausalLm))
    {
        model = new LlamaModel(c, kernels);
        lm_head = new KernelLinear(c.HiddenSize, c.VocabSize, false, kernels);
        if (c.TieWordEmbeddings) lm_head.weight = model.EmbedTokens.weight!;
        RegisterComponents();
    }

    public LlamaModel Model => model;
    public KernelLinear LmHead => lm_head;

    public override Tensor forward(Tensor inputIds) => lm_head.call(model.call(inputIds));
}
