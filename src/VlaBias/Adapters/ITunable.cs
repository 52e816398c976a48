// What a debiasing run trains on a frozen base, behind one face (PEFT's PeftModel): LoRA adapters (LoraAdapter) or a
// soft prompt (SoftPrompt). The trainer asks it for its parameters, the tensors of a resumable checkpoint, to save
// itself in its own file format, to read saved weights back, and to step aside (Disable) so the one model in memory
// gives the base's outputs: the base figures of a run, KL to the base on retain examples.
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VlaBias.Adapters;

/// <summary>What is trained: lora (adapters on the frozen base) or prompt (a soft prefix).</summary>
public enum TuneMethod { Lora, Prompt }

public static class TuneMethods
{
    /// <summary>The name recipes and trainer_state.json use.</summary>
    public static string Name(this TuneMethod method) => method switch { TuneMethod.Lora => "lora", _ => "prompt" };

    public static TuneMethod Parse(string name) => name switch
    {
        "lora" => TuneMethod.Lora,
        "prompt" => TuneMethod.Prompt,
        _ => throw new BadInputException($"method: unknown value '{name}' (expected lora or prompt)"),
    };
}

public interface ITunable
{
    TuneMethod Method { get; }

    /// <summary>The tensors the optimizer updates.</summary>
    IEnumerable<Parameter> Parameters();

    long ParameterCount { get; }

    /// <summary>The trained tensors by name, as a resumable training checkpoint stores them.</summary>
    IReadOnlyDictionary<string, Tensor> CheckpointTensors();

    /// <summary>Writes the tuner's own files (PEFT's adapter files, or the soft prompt's) to DIR.</summary>
    void Save(string dir);

    /// <summary>Reads weights that <see cref="Save"/> wrote for this same tuner back into it.</summary>
    void LoadWeights(string dir);

    bool Enabled { get; }

    /// <summary>The base's behaviour until the result is disposed.</summary>
    IDisposable Disable();
}

/// <summary>Runs an action once, on Dispose (the end of a Disable scope).</summary>
internal sealed class RestoreScope(Action onDispose) : IDisposable
{
    private Action? action = onDispose;
    public void Dispose() { action?.Invoke(); action = null; }
}
