using TorchSharp;

namespace VlaBias.Model;

/// <summary>
/// Scalars made once for the life of the process. An implicit double → Scalar conversion at each call leaves a Scalar
/// that only the finalizer frees, and the finalizer thread can free it while the native call still reads it (TorchSharp
/// does not keep it alive over the call): a bench run died with "Expected false to be true ... toFloat" inside
/// index_fill. Hot paths (every decode step, every attention layer) take theirs from here.
/// </summary>
public static class Scalars
{
    public static readonly Scalar MinusInfinity = double.NegativeInfinity.ToScalar();
}
