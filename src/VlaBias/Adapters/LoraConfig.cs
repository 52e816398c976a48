// What a LoRA adapter is (SPEC §4): rank, alpha, dropout, which Linear modules it wraps. The same fields PEFT's
// LoraConfig has, so a config read from adapter_config.json maps one to one.
namespace VlaBias.Adapters;

/// <param name="TargetModules">
/// Module names matched against the last component of a module path (PEFT's list semantics): "q_proj" matches
/// "language_model.model.layers.3.self_attn.q_proj".
/// </param>
/// <param name="IncludeVision">Also wrap matching modules of the vision tower (its names are q_proj, k_proj, v_proj, out_proj, fc1, fc2).</param>
/// <param name="IncludeProjector">Also wrap matching modules of the projector (linear_1, linear_2).</param>
public sealed record LoraConfig(
    int R = 8,
    double Alpha = 16,
    double Dropout = 0.0,
    IReadOnlyList<string>? TargetModules = null,
    bool UseRsLora = false,
    string? BaseModelNameOrPath = null,
    bool IncludeVision = false,
    bool IncludeProjector = false)
{
    public static readonly IReadOnlyList<string> DefaultTargetModules =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public IReadOnlyList<string> TargetModules { get; init; } = TargetModules ?? DefaultTargetModules;

    /// <summary>alpha / r, or alpha / √r for rank-stabilised LoRA (Kalajdzievski 2023).</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(R) : Alpha / R;

    /// <summary>Throws a BadInputException naming the first field that is out of range.</summary>
    public void Validate()
    {
        if (R < 1) throw new BadInputException($"LoRA r must be at least 1, got {R}");
        if (!double.IsFinite(Alpha) || Alpha <= 0) throw new BadInputException($"LoRA alpha must be a positive number, got {Alpha}");
        if (!(Dropout >= 0 && Dropout < 1)) throw new BadInputException($"LoRA dropout must be in [0, 1), got {Dropout}");
        if (TargetModules.Count == 0) throw new BadInputException("LoRA target_modules is empty");
        foreach (var t in TargetModules)
            if (string.IsNullOrWhiteSpace(t)) throw new BadInputException("LoRA target_modules contains an empty name");
    }
}
