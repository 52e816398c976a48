// A linear layer that chooses its kernel in its own forward: x [.., in] → x·Wᵀ (+ b) [.., out], W [out, in] in
// Hugging Face's layout, computed by libtorch or by the small-row kernel as its model's LinearKernels decide.
// Parameters are named "weight" and "bias" and initialised as torch.nn.Linear does (kaiming_uniform_(a = √5), bias
// U(±1/√in)), so state_dict keys, checkpoints and random draws are those of nn.Linear.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VlaBias.Model;

public sealed class KernelLinear : nn.Module<Tensor, Tensor>
{
    private readonly LinearKernels kernels;
    private Parameter? weightParameter;
    private Parameter? biasParameter;

    public KernelLinear(long inFeatures, long outFeatures, bool hasBias, LinearKernels kernels) : base(nameof(KernelLinear))
    {
        this.kernels = kernels;
        weight = new Parameter(empty(outFeatures, inFeatures));
        nn.init.kaiming_uniform_(weight, a: Math.Sqrt(5));
        if (hasBias)
        {
            bias = new Parameter(empty(outFeatures));
            double bound = inFeatures > 0 ? 1 / Math.Sqrt(inFeatures) : 0;
            nn.init.uniform_(bias, -bound, bound);
        }
    }

    public LinearKernels Kernels => kernels;

    /// <summary>[out, in]. Setting it shares another parameter (tied embeddings).</summary>
    public Parameter weight
    {
        get => weightParameter!;
        set
        {
            if (value.Handle == weightParameter?.Handle) return;
            weightParameter?.Dispose();
            weightParameter = (Parameter)value.DetachFromDisposeScope();
            ConditionallyRegisterParameter("weight", weightParameter);
        }
    }

    /// <summary>[out], or null.</summary>
    public Parameter? bias
    {
        get => biasParameter;
        set
        {
            biasParameter?.Dispose();
            biasParameter = (Parameter?)value?.DetachFromDisposeScope();
            ConditionallyRegisterParameter("bias", biasParameter);
        }
    }

    public override Tensor forward(Tensor x) => kernels.Linear(x, weight, bias);
}
