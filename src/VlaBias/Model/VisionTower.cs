// The ViT image encoder of a LLaVA model: CLIP (class token, pre-layernorm, quick_gelu) or SigLIP (no class token,
// no pre-layernorm, tanh-gelu). pixel_values [B, 3, H, W] → patch embeddings [B, N(+1), C] → encoder layers →
// the hidden state of layer vision_feature_layer, which the projector turns into image embeddings.
// Parameter names are Hugging Face's (vision_tower.vision_model.embeddings.patch_embedding.weight, …). The encoder's
// linears run on every patch of every image (tens to hundreds of rows), where libtorch is the faster kernel
// (LinearKernels.LibtorchOnly); the projector's take the model's kernel choice.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VlaBias.Model;

public sealed class VisionAttention : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, out_proj; // swapped by LoRA adapters
    private readonly int heads, headDim;

    public VisionAttention(VisionConfig c) : base(nameof(VisionAttention))
    {
        heads = c.NumAttentionHeads;
        headDim = c.HeadDim;
        q_proj = new KernelLinear(c.HiddenSize, c.HiddenSize, true, LinearKernels.LibtorchOnly);
        k_proj = new KernelLinear(c.HiddenSize, c.HiddenSize, true, LinearKernels.LibtorchOnly);
        v_proj = new KernelLinear(c.HiddenSize, c.HiddenSize, true, LinearKernels.LibtorchOnly);
        out_proj = new KernelLinear(c.HiddenSize, c.HiddenSize, true, LinearKernels.LibtorchOnly);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1];
        var q = q_proj.call(x).view(b, n, heads, headDim).transpose(1, 2);   // (B, H, N, D)
        var k = k_proj.call(x).view(b, n, heads, headDim).transpose(1, 2);
        var v = v_proj.call(x).view(b, n, heads, headDim).transpose(1, 2);
        var o = nn.functional.scaled_dot_product_attention(q, k, v);        // bidirectional
        return out_proj.call(o.transpose(1, 2).reshape(b, n, heads * headDim)).MoveToOuterDisposeScope();
    }
}

public sealed class VisionMlp : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> fc1, fc2; // swapped by LoRA adapters
    private readonly Func<Tensor, Tensor> act;

    public VisionMlp(VisionConfig c) : base(nameof(VisionMlp))
    {
        fc1 = new KernelLinear(c.HiddenSize, c.IntermediateSize, true, LinearKernels.LibtorchOnly);
        fc2 = new KernelLinear(c.IntermediateSize, c.HiddenSize, true, LinearKernels.LibtorchOnly);
        RegisterComponents();
        act = Activations.Get(c.HiddenAct);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return fc2.call(act(fc1.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(x)).</summary>
public sealed class VisionEncoderLayer : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm layer_norm1, layer_norm2;
    private readonly VisionAttention self_attn;
    private readonly VisionMlp mlp;

    public VisionEncoderLayer(VisionConfig c) : base(nameof(VisionEncoderLayer))
    {
        layer_norm1 = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        self_attn = new VisionAttention(c);
        layer_norm2 = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        mlp = new VisionMlp(c);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        x = x + self_attn.call(layer_norm1.call(x));
        x = x + mlp.call(layer_norm2.call(x));
        return x.MoveToOuterDisposeScope();
    }
}

public sealed class VisionEncoder : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<VisionEncoderLayer> layers;

    public VisionEncoder(VisionConfig c) : base(nameof(VisionEncoder))
    {
        layers = new ModuleList<VisionEncoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new VisionEncoderLayer(c)).ToArray());
        RegisterComponents();
    }

    public int Count => layers.Count;

    /// <summary>Runs the first <paramref name="upTo"/> layers (the later ones cannot change the selected hidden state).</summary>
    public Tensor Run(Tensor x, int upTo)
    {
        for (int i = 0; i < upTo; i++) x = layers[i].call(x);
        return x;
    }

    public override Tensor forward(Tensor x) => Run(x, layers.Count);
}

public sealed class VisionEmbeddings : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d patch_embedding;
    private readonly Parameter? class_embedding;
    private readonly Embedding position_embedding;
    private readonly int numPositions;

    public VisionEmbeddings(VisionConfig c) : base(nameof(VisionEmbeddings))
    {
        patch_embedding = nn.Conv2d(c.NumChannels, c.HiddenSize, c.PatchSize, stride: c.PatchSize, bias: c.IsSiglip);
        if (!c.IsSiglip) class_embedding = new Parameter(randn(c.HiddenSize));
        numPositions = c.NumPatches + (c.IsSiglip ? 0 : 1);
        position_embedding = nn.Embedding(numPositions, c.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        long b = pixels.shape[0];
        var x = patch_embedding.call(pixels.to_type(patch_embedding.weight!.dtype)).flatten(2).transpose(1, 2); // (B, N, C)
        if (class_embedding is not null)
            x = cat([class_embedding.expand(b, 1, -1), x], 1);                                                 // (B, N+1, C)
        var positions = arange(numPositions, device: pixels.device).unsqueeze(0);
        return (x + position_embedding.call(positions)).MoveToOuterDisposeScope();
    }
}

/// <summary>vision_model: embeddings, (CLIP) pre_layrnorm, encoder, post_layernorm (unused for LLaVA features).</summary>
public sealed class VisionTransformer : nn.Module<Tensor, Tensor>
{
    private readonly VisionEmbeddings embeddings;
    private readonly LayerNorm? pre_layrnorm;
    private readonly VisionEncoder encoder;
    private readonly LayerNorm post_layernorm;

    public VisionTransformer(VisionConfig c) : base(nameof(VisionTransformer))
    {
        embeddings = new VisionEmbeddings(c);
        if (!c.IsSiglip) pre_layrnorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        encoder = new VisionEncoder(c);
        post_layernorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        RegisterComponents();
    }

    /// <summary>hidden_states[layer] in Hugging Face's indexing: 0 is the embedding output, i the output of layer i; negative counts from the end.</summary>
    public Tensor HiddenState(Tensor pixels, int layer)
    {
        using var scope = NewDisposeScope();
        int index = layer < 0 ? encoder.Count + 1 + layer : layer;
        var x = embeddings.call(pixels);
        if (pre_layrnorm is not null) x = pre_layrnorm.call(x);
        return encoder.Run(x, index).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        return post_layernorm.call(HiddenState(pixels, -1)).MoveToOuterDisposeScope();
    }
}

/// <summary>The vision_tower module (CLIPVisionModel / SiglipVisionModel): holds vision_model.</summary>
public sealed class VisionTower : nn.Module<Tensor, Tensor>
{
    private readonly VisionTransformer vision_model;

    public VisionTower(VisionConfig c) : base(nameof(VisionTower))
    {
        vision_model = new VisionTransformer(c);
        RegisterComponents();
    }

    public Tensor HiddenState(Tensor pixels, int layer) => vision_model.HiddenState(pixels, layer);
    public override Tensor forward(Tensor pixels) => vision_model.call(pixels);
}

/// <summary>multi_modal_projector: linear_1 → act → linear_2, vision hidden size → text hidden size.</summary>
public sealed class MultiModalProjector : nn.Module<Tensor, Tensor>
{
    private nn.Module<Tensor, Tensor> linear_1, linear_2; // swapped by LoRA adapters
    private readonly Func<Tensor, Tensor> act;

    public MultiModalProjector(LlavaConfig c, LinearKernels kernels) : base(nameof(MultiModalProjector))
    {
        linear_1 = new KernelLinear(c.Vision.HiddenSize, c.Text.HiddenSize, c.ProjectorBias, kernels);
        linear_2 = new KernelLinear(c.Text.HiddenSize, c.Text.HiddenSize, c.ProjectorBias, kernels);
        RegisterComponents();
        act = Activations.Get(c.ProjectorHiddenAct);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return linear_2.call(act(linear_1.call(x))).MoveToOuterDisposeScope();
    }
}
