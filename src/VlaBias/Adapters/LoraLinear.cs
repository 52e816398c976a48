// One LoRA-wrapped linear layer (PEFT's tuners/lora/layer.py): x [.., in] → base_layer(x) + lora_B(lora_A(dropout(x))) ·
// scaling, [.., out]; base_layer(x) alone while disabled. base_layer is the model's own KernelLinear, untouched and
// frozen; lora_A [r, in] and lora_B [out, r] are the only trainable tensors. Child names are PEFT's, so state_dict keys read "<path>.base_layer.weight", "<path>.lora_A.weight".
// Precision: the adapter's weights are never below fp32. On a bf16 base (`--dtype bf16`) lora_A/lora_B, their gradients
// and so the optimizer's state stay fp32; the adapter path multiplies in the base's dtype by copies of A and B cast
// down (as PyTorch autocast runs an fp32 adapter on a bf16 model), so the [tokens, in] activations are never cast up,
// and the gradients reach A and B through those casts as fp32.
using TorchSharp;
using TorchSharp.Modules;
using VlaBias.Model;
using static TorchSharp.torch;

namespace VlaBias.Adapters;

public sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
    private readonly KernelLinear base_layer;
    private readonly Linear lora_A;
    private readonly Linear lora_B;
    private readonly nn.Module<Tensor, Tensor>? dropout; // null when p = 0 (PEFT uses nn.Identity)

    /// <param name="path">The module's path in the model (Hugging Face naming), used in messages.</param>
    /// <param name="generator">Draws lora_A; a CPU generator so the same seed gives the same adapter everywhere.</param>
    public LoraLinear(string path, KernelLinear baseLayer, int r, double scaling, double dropoutP, Generator generator) : base(nameof(LoraLinear))
    {
        Path = path;
        Scaling = scaling;
        base_layer = baseLayer;
        var w = baseLayer.weight;
        long inFeatures = w.shape[1], outFeatures = w.shape[0];
        lora_A = nn.Linear(inFeatures, r, hasBias: false);
        lora_B = nn.Linear(r, outFeatures, hasBias: false);
        using (no_grad())
        {
            // kaiming_uniform_(a=√5) on [r, in] is U(−1/√in, 1/√in); B = 0 so a fresh adapter changes nothing.
            double bound = 1.0 / Math.Sqrt(inFeatures);
            lora_A.weight.uniform_(-bound, bound, generator: generator);
            lora_B.weight.zero_();
        }
        var adapterType = AdapterDType(w.dtype);
        if (adapterType != lora_A.weight.dtype || w.device != lora_A.weight.device)
        {
            lora_A.to(adapterType).to(w.device);
            lora_B.to(adapterType).to(w.device);
        }
        if (dropoutP > 0) dropout = nn.Dropout(dropoutP);
        RegisterComponents();
    }

    /// <summary>The adapter's dtype for a base weight of <paramref name="baseType"/>: fp64 stays fp64, anything else is fp32.</summary>
    public static ScalarType AdapterDType(ScalarType baseType) => baseType == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    public string Path { get; }
    public double Scaling { get; }
    public int Rank => (int)lora_A.weight.shape[0];
    public KernelLinear BaseLayer => base_layer;
    public Linear LoraA => lora_A;
    public Linear LoraB => lora_B;

    /// <summary>False while the adapter is disabled: the module then computes its base layer alone.</summary>
    public bool Enabled { get; internal set; } = true;

    public override Tensor forward(Tensor x)
    {
        if (!Enabled) return base_layer.call(x);
        using var scope = NewDisposeScope();
        var result = base_layer.call(x);
        var xa = dropout is null ? x : dropout.call(x);
        // h·Bᵀ multiplies by a contiguous copy of Bᵀ [r, out] (an r × out copy, and its gradient copied back): then
        // backward's ∂h = ∂y·B reads it as the transpose of a row-major matrix, the layout of every linear's x·Wᵀ,
        // where BLAS is fast. Multiplying by the view B.t() leaves backward a row-major [out, r] operand with r = 8
        // columns, which MKL ran 2.2-3.1× slower ([864, 384]·[384, 8]: 665 against 217 µs; a whole q_proj-sized
        // adapter's forward and backward 5.4 against 3.5 ms at 864 rows; AMD EPYC family 25 model 1, one thread).
        // Without a gradient to record (evaluation, every decode step) there is no backward, and the view is as fast.
        // A lower-precision base (bf16) multiplies by A and B cast down to it: casting x up to fp32 instead, and the
        // delta back, cost the bench config's bf16 LoRA step about 100 of ~650 ms (fp32 sgemm on [1024, in] × [in, 8]
        // plus two casts of every adapted layer's activations, forward and backward; AMD EPYC family 25 model 17).
        bool lower = xa.dtype != lora_A.weight.dtype;
        var h = lower ? xa.matmul(lora_A.weight.to_type(xa.dtype).t()) : lora_A.call(xa);
        if (result.dtype == ScalarType.Float64) return (result + lora_B.call(h).mul(Scaling)).MoveToOuterDisposeScope();
        // result + scaling · h·Bᵀ as one GEMM that accumulates into the base output (addmm, beta 1): saves a
        // multiply pass and an add pass over [tokens, out] forward and backward. addmm's alpha is a float, which is
        // the precision fp32/bf16 kernels use for the scalar anyway; fp64 keeps the two-op form above.
        long outF = result.shape[^1], r = h.shape[^1];
        var fused = addmm(result.reshape(-1, outF), h.reshape(-1, r), BTransposed(h.dtype), 1.0f, (float)Scaling);
        return fused.view(result.shape).MoveToOuterDisposeScope();
    }

    private Tensor BTransposed(ScalarType dtype)
    {
        var b = dtype == lora_B.weight.dtype ? lora_B.weight : lora_B.weight.to_type(dtype);
        return is_grad_enabled() && lora_B.weight.requires_grad ? b.t().contiguous() : b.t();
    }

    /// <summary>
    /// W + scaling · B·A, computed in fp32 (fp64 for an fp64 model) and returned in the base weight's dtype (a new tensor; the base is not changed).
    /// Throws if the result is not finite, naming the module, so a diverged adapter never reaches a merged checkpoint.
    /// </summary>
    public Tensor Merge()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var w = base_layer.weight;
        var compute = w.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32; // never below fp32
        var delta = lora_B.weight.to_type(compute).matmul(lora_A.weight.to_type(compute)).mul(Scaling); // [out, in]
        var merged = w.to_type(compute) + delta;
        if (!merged.isfinite().all().ToBoolean())
            throw new InvalidOperationException($"LoRA merge of '{Path}' gives non-finite weights (the adapter has diverged or overflows); nothing was merged");
        var cast = merged.to_type(w.dtype);
        if (!cast.isfinite().all().ToBoolean())
            throw new InvalidOperationException($"LoRA merge of '{Path}' overflows {w.dtype}; nothing was merged");
        return cast.MoveToOuterDisposeScope();
    }
}
