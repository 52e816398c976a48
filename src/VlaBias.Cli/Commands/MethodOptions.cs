using System.CommandLine;
using VlaBias.Methods;
using VlaBias.Steering;

namespace VlaBias.Cli.Commands;

/// <summary>The inference-time debiasing options shared by caption, ask and eval (library: Methods/Interventions.cs).</summary>
public sealed class MethodOptions
{
    public readonly Option<string?> Steer = new("--steer") { Description = "Steering vector file (`vlatune steer build`), applied through forward hooks on the decoder layers" };
    public readonly Option<double> SteerScale = new("--steer-scale") { Description = "Steering strength s (remove: h − s·(h·v̂)v̂; add: h + s·v)", DefaultValueFactory = _ => 1.0 };
    public readonly Option<string> SteerMode = new("--steer-mode") { Description = "remove (project the direction out) | add", DefaultValueFactory = _ => "remove" };
    public readonly Option<string?> SoftPrompt = new("--soft-prompt") { Description = "Prompt-tuning prefix: soft_prompt.safetensors or a run folder of `vlatune tune --method prompt`" };
    public readonly Option<string?> PromptPrefix = new("--prompt-prefix") { Description = "Text put before every prompt (prompt engineering)" };
    public readonly Option<bool> Fairness = new("--fairness-instruction") { Description = $"Put our fairness instruction before every prompt: \"{Interventions.FairnessInstruction}\"" };
    public readonly Option<string?> PenaltyWords = new("--penalty-words") { Description = "Penalty decoding word list: 'default' (data/words/gender_words.json, man + woman) or a file (JSON like it, or one word per line)" };
    public readonly Option<double> Penalty = new("--penalty") { Description = "Penalty decoding: λ subtracted from the log-probability of every gendered token in beam search (0 = off; implies --beams 3 when --beams is 1)", DefaultValueFactory = _ => 0.0 };

    private readonly bool decoding;

    public MethodOptions(Command cmd, bool decoding)
    {
        this.decoding = decoding;
        foreach (var o in new Option[] { Steer, SteerScale, SteerMode, SoftPrompt, PromptPrefix, Fairness }) cmd.Options.Add(o);
        if (decoding) { cmd.Options.Add(PenaltyWords); cmd.Options.Add(Penalty); }
    }

    public Interventions Read(ParseResult p, int beams = 1)
    {
        var mode = p.GetValue(SteerMode) switch
        {
            "remove" => VlaBias.Steering.SteerMode.Remove,
            "add" => VlaBias.Steering.SteerMode.Add,
            var m => throw new BadInputException($"--steer-mode: unknown value '{m}' (expected remove or add)"),
        };
        double penalty = decoding ? p.GetValue(Penalty) : 0;
        if (penalty != 0 && beams == 1) beams = 3;
        return new Interventions
        {
            Steer = p.GetValue(Steer), SteerScale = p.GetValue(SteerScale), SteerMode = mode, SoftPrompt = p.GetValue(SoftPrompt),
            PromptPrefix = p.GetValue(PromptPrefix), Fairness = p.GetValue(Fairness),
            PenaltyWords = decoding ? p.GetValue(PenaltyWords) : null, Penalty = penalty, Beams = beams,
        };
    }
}
