// Small building blocks shared by the vision tower and the language model: RMSNorm, activations, rotary position
// embeddings, and attention masks. Shapes in comments: B batch, T query length, S key length, H heads, D head dim.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VlaBias.Model;

/// <summary>Llama's RMSNorm: computed in fp32, then cast back and scaled: <c>weight * (x / rms(x)).to(dtype)</c>.</summary>
public sealed class RMSNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double eps;

    public RMSNorm(long size, double eps) : base(nameof(RMSNorm))
    {
        weight = new Parameter(ones(size));
        this.eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x.to_type(ScalarType.Float32);
        var variance = h.pow(2).mean([-1], keepdim: true);
        h = h * (variance + eps).rsqrt();
        return (weight * h.to_type(x.dtype)).MoveToOuterDisposeScope();
    }
}

public static class Activations
{
    /// <summary>The activation functions named by Hugging Face configs (<c>hidden_act</c>, <c>projector_hidden_act</c>).</summary>
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "gelu" => x => x.gelu(),
        "gelu_pytorch_tanh" or "gelu_new" => x => x.gelu(GELU.Approximate.tanh),
        "quick_gelu" => x => x * (x * 1.702).sigmoid(),
        "silu" or "swish" => x => x.silu(),
        "relu" => x => x.relu(),
        _ => throw new BadInputException($"activation '{name}' is not supported (expected gelu, gelu_pytorch_tanh, quick_gelu, silu or relu)"),
    };
}

/// <summary>Rotary position embeddings (Su et al.) in the "rotate half" convention Llama and Qwen2 use.</summary>
public sealed class RotaryEmbedding
{
    private readonly Tensor invFreq; // [D/2], fp32, not a parameter or buffer

    public RotaryEmbedding(int headDim, double theta)
    {
        using var _ = no_grad();
        invFreq = (1.0 / pow(theta, arange(0, headDim, 2, dtype: ScalarType.Float64) / headDim)).to_type(ScalarType.Float32);
        invFreq.DetachFromDisposeScope();
    }

    /// <summary>cos and sin of shape [B, 1, T, D] for positions [B, T], in <paramref name="dtype"/>.</summary>
    public (Tensor cos, Tensor sin) CosSin(Tensor positions, ScalarType dtype)
    {
        var freqs = positions.to_type(ScalarType.Float32).unsqueeze(-1) * invFreq.to(positions.device); // [B, T, D/2]
        var emb = cat([freqs, freqs], -1).unsqueeze(1);                                                  // [B, 1, T, D]
        return (emb.cos().to_type(dtype), emb.sin().to_type(dtype));
    }

    /// <summary>x·cos + rotate_half(x)·sin, with rotate_half([x1, x2]) = [−x2, x1].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return x * cos + cat([-x2, x1], -1) * sin;
    }
}

public static class AttentionMasks
{
    /// <summary>
    /// Boolean mask [B, 1, T, S] (true = may attend) for T new queries at cache positions start..start+T-1 over
    /// S = start+T keys: causal (bottom-right aligned) and restricted to keys whose <paramref name="keyMask"/> [B, S] is 1.
    /// A query always sees itself, so rows of padding queries are never fully masked (their outputs are ignored).
    /// </summary>
    public static Tensor Causal(Tensor keyMask, long start, long queryLength)
    {
        long s = keyMask.shape[1];
        var q = arange(start, start + queryLength, device: keyMask.device).unsqueeze(1);   // [T, 1]
        var k = arange(0, s, device: keyMask.device).unsqueeze(0);                        // [1, S]
        var causal = k.le(q);                                                             // [T, S]
        var diag = k.eq(q);
        var keys = keyMask.to_type(ScalarType.Bool).unsqueeze(1).unsqueeze(1);            // [B, 1, 1, S]
        return causal.unsqueeze(0).unsqueeze(0).logical_and(keys).logical_or(diag.unsqueeze(0).unsqueeze(0));
    }

    /// <summary>Position ids for left-padded rows: the number of real tokens before each position (0 for padding).</summary>
    public static Tensor PositionIds(Tensor keyMask) => (keyMask.to_type(ScalarType.Int64).cumsum(-1) - 1).clamp_min(0);
}
