// Inference-time debiasing methods applied to a loaded model for caption / ask / eval:
//   steering vectors   forward hooks on decoder layers (Steering/), removed when the Applied scope is disposed
//   soft prompt        a trained prompt-tuning prefix (Adapters/SoftPrompt.cs), detached on dispose
//   prompt engineering a text prefix before every prompt (--prompt-prefix, or --fairness-instruction), in the
//                      model's PromptFormat until dispose
//   penalty decoding   beam search with −λ added to the log-probability of every gendered token (GenderPenalty)
// Identity() names what is applied, so the evaluator's result cache never mixes outputs of different methods.
using System.Globalization;
using Serilog;
using VlaBias.Adapters;
using VlaBias.Generation;
using VlaBias.Steering;

namespace VlaBias.Methods;

public sealed record Interventions
{
    /// <summary>Our wording of a fairness instruction (prompt engineering).</summary>
    public const string FairnessInstruction = "describe only what is visible; do not guess a person's gender from the setting.";

    public string? Steer { get; init; }
    public double SteerScale { get; init; } = 1.0;
    public SteerMode SteerMode { get; init; } = SteerMode.Remove;
    public string? SoftPrompt { get; init; }
    public string? PromptPrefix { get; init; }
    public bool Fairness { get; init; }
    /// <summary>"default" (the suite's / data/words gender list), a JSON file with "man" and "woman" lists, or a text file of words.</summary>
    public string? PenaltyWords { get; init; }
    public double Penalty { get; init; }
    public int Beams { get; init; } = 1;

    public static readonly Interventions None = new();

    /// <summary>The text put before every prompt, or null.</summary>
    public string? Prefix => (Fairness, PromptPrefix) switch
    {
        (true, { Length: > 0 } p) => FairnessInstruction + " " + p,
        (true, _) => FairnessInstruction,
        (false, { Length: > 0 } p) => p,
        _ => null,
    };

    public bool UsesPenalty => Penalty != 0;

    /// <summary>Applies steering, soft prompt and prompt prefix to <paramref name="vla"/> until the result is disposed.</summary>
    public Applied Apply(Vla vla)
    {
        if (Beams < 1) throw new BadInputException("--beams: must be at least 1");
        if (!double.IsFinite(SteerScale)) throw new BadInputException($"--steer-scale: not a number: {SteerScale}");
        if (Penalty < 0 || !double.IsFinite(Penalty)) throw new BadInputException($"--penalty: must be a number >= 0, got {Penalty}");
        var applied = new Applied(vla, vla.Prompts);
        try
        {
            if (Prefix is { } prefix)
            {
                vla.Prompts = vla.Prompts with { Prefix = prefix };
                var unknown = UnknownWords(vla, prefix);
                if (unknown.Count > 0)
                    Log.Warning("prompt prefix: {Count} word(s) are not in the tokenizer's vocabulary and become {Unk}: {Words}",
                        unknown.Count, "<unk>", string.Join(" ", unknown));
            }
            if (SoftPrompt is not null)
            {
                applied.Soft = Adapters.SoftPrompt.Load(vla.Model, SoftPrompt);
                vla.Attach(applied.Soft);
            }
            if (Steer is not null)
            {
                applied.Vectors = SteeringVectors.Load(Steer);
                applied.Hooks = applied.Vectors.Apply(vla.Model, SteerScale, SteerMode);
            }
            return applied;
        }
        catch { applied.Dispose(); throw; }
    }

    /// <summary>The decoding penalty, or null when λ = 0 (plain decoding).</summary>
    public TokenPenalty? PenaltyFor(Vla vla, string defaultWordsPath) =>
        UsesPenalty ? GenderPenalty.Create(vla.Tokenizer, GenderPenalty.LoadWords(PenaltyWords is null or "default" ? defaultWordsPath : PenaltyWords), Penalty) : null;

    /// <summary>Words of <paramref name="text"/> that a closed-vocabulary (WordPiece) tokenizer maps to its unknown token.</summary>
    public static List<string> UnknownWords(Vla vla, string text)
    {
        var result = new List<string>();
        if (!vla.Tokenizer.TryGetId("<unk>", out var unk)) return result;
        foreach (var w in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            if (vla.Tokenizer.Encode(w).Contains(unk)) result.Add(w);
        return result;
    }

    /// <summary>"" when nothing is applied; otherwise a description that changes with any setting or file.</summary>
    public string Identity()
    {
        var parts = new List<string>();
        if (Steer is not null) parts.Add($"steer={FileStamp(Steer)}:{SteerMode}:{SteerScale.ToString("R", CultureInfo.InvariantCulture)}");
        if (SoftPrompt is not null) parts.Add($"soft={FileStamp(Directory.Exists(SoftPrompt) ? Path.Combine(SoftPrompt, Adapters.SoftPrompt.WeightsFileName) : SoftPrompt)}");
        if (Prefix is { } p) parts.Add($"prefix={p}");
        if (Beams > 1) parts.Add($"beams={Beams}");
        if (UsesPenalty) parts.Add($"penalty={Penalty.ToString("R", CultureInfo.InvariantCulture)}:{(PenaltyWords is null or "default" ? "default" : FileStamp(PenaltyWords))}");
        return string.Join("|", parts);
    }

    private static string FileStamp(string path)
    {
        var f = new FileInfo(path);
        return f.Exists ? $"{f.FullName}:{f.Length}:{f.LastWriteTimeUtc.Ticks}" : path;
    }

    /// <summary>What Apply installed; Dispose removes the hooks, detaches the soft prompt and gives back the prompt format it found.</summary>
    public sealed class Applied(Vla vla, Generation.PromptFormat before) : IDisposable
    {
        internal SteeringVectors? Vectors { get; set; }
        internal SteeringScope? Hooks { get; set; }
        internal SoftPrompt? Soft { get; set; }

        public void Dispose()
        {
            Hooks?.Dispose(); Hooks = null;
            Vectors?.Dispose(); Vectors = null;
            if (Soft is not null) vla.Detach(Soft);
            Soft?.Dispose(); Soft = null;
            vla.Prompts = before;
        }
    }
}
