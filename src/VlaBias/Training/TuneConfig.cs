// Every option of a debiasing run (README: "What the main command does"), read from a recipe (recipes/default.yaml for bare `vlatune`) with the
// command line winning. Names are the recipe keys; the CLI spells them in kebab case (--lora-r, --eval-every ...).
using VlaBias.Adapters;
using VlaBias.Recipes;

namespace VlaBias.Training;

public sealed record TuneConfig(
    string Model, string Data, string World, string Suite, string RunsDir, string? Name, bool Resume,
    string Objective, double ParityWeight, double CaptionKlWeight, double UnknownWeight, double RetainWeight, double RetainKlWeight,
    double Lr, string Schedule, int WarmupSteps, double WeightDecay, double GradClip, int GradAccum,
    int PairsPerStep, int ProbesPerPair, int RetainPerStep,
    int LoraR, double LoraAlpha, double LoraDropout, IReadOnlyList<string> TargetModules, bool UseRsLora, bool LoraVision, bool LoraProjector,
    double Threshold, int MaxSteps, int EvalEvery, double MaxAccuracyDrop, string StopRule, int EmaPatience,
    int ValPairs, int SaveEvery, long Seed, bool FinalEval, int TestBootstrap, string DType = "auto", TuneMethod Method = TuneMethod.Lora, int PromptTokens = 8, string Overlap = "auto", string GradientCheckpointing = "auto")
{
    /// <summary>(recipe key, description) of every option, for --help and the generic command-line mapping.</summary>
    public static readonly (string Key, string Help)[] Keys =
    [
        ("model", "Base checkpoint folder (HF layout)"),
        ("data", "Manifest with counterfactual pairs: split 'tune' trains, split 'val' decides early stopping"),
        ("world", "Synthetic world definition (for the default data)"),
        ("suite", "Evaluation suite run on base and tuned at the end"),
        ("runs_dir", "Folder of run folders"),
        ("name", "Run name (default: a timestamp)"),
        ("method", "What is trained: lora (adapters on the frozen base) | prompt (a soft prefix of prompt_tokens embeddings after BOS, before the image)"),
        ("prompt_tokens", "Prompt tuning: number of trainable prefix embeddings"),
        ("objective", "Objectives with weights from the *_weight keys: parity | unknown | retain | parity+unknown ..."),
        ("parity_weight", "Weight of (p_yes(x) - p_yes(x'))^2 over counterfactual pairs and probe prompts"),
        ("caption_kl_weight", "Weight of the symmetric KL between next-token distributions of x and x' on the gold caption (non-gender positions)"),
        ("unknown_weight", "Weight of -log p(unknown) on probes offered with an unknown option (Girrbach-compatible)"),
        ("retain_weight", "Weight of cross-entropy on truthful captions and factual answers"),
        ("retain_kl_weight", "Weight of KL(base || tuned) on the retain examples' target positions (the base: the same model with the tuner disabled)"),
        ("lr", "Peak learning rate (AdamW)"),
        ("schedule", "cosine | constant (after linear warmup)"),
        ("warmup_steps", "Linear warmup steps"),
        ("weight_decay", "AdamW weight decay (explicit; TorchSharp's default is 0)"),
        ("grad_clip", "Gradient norm clip"),
        ("grad_accum", "Micro-batches per optimizer step"),
        ("pairs_per_step", "Counterfactual pairs per micro-batch"),
        ("probes_per_pair", "Probe prompts per pair per micro-batch"),
        ("retain_per_step", "Retain examples (captions, facts) per micro-batch"),
        ("lora_r", "LoRA rank"),
        ("lora_alpha", "LoRA alpha (scaling alpha/r, or alpha/sqrt(r) with use_rslora)"),
        ("lora_dropout", "LoRA dropout"),
        ("target_modules", "Module names LoRA wraps (PEFT semantics)"),
        ("use_rslora", "rsLoRA scaling alpha/sqrt(r)"),
        ("lora_vision", "Also adapt the vision tower"),
        ("lora_projector", "Also adapt the multi-modal projector"),
        ("threshold", "Stop when the validation pairwise probe gap (train attributes) is at or below this"),
        ("max_steps", "Upper bound on optimizer steps"),
        ("eval_every", "Measure validation bias and CIDEr-D every N steps"),
        ("max_accuracy_drop", "Accuracy guard: stop only while val CIDEr-D >= (1 - this) x base"),
        ("stop_rule", "threshold (validation bias with the accuracy guard) | ema-loss (Girrbach: EMA 0.9 of the training loss below the threshold)"),
        ("ema_patience", "ema-loss rule: consecutive steps below the threshold (Girrbach: more than 10)"),
        ("val_pairs", "Validation pairs used for early stopping (0 = all)"),
        ("save_every", "Resumable checkpoint every N steps (also at every evaluation)"),
        ("seed", "Seed of data order, LoRA init and dropout"),
        ("resume", "Continue the run NAME from its last checkpoint"),
        ("final_eval", "Evaluate base and tuned on the suite's split at the end"),
        ("test_bootstrap", "Bootstrap resamples of the final evaluation"),
        ("overlap", "auto | on | off: validations and the base's evaluations on a second copy of the model on a second thread while training goes on (auto: when measured faster, see docs/main-job-timing.md)"),
        ("gradient_checkpointing", "auto | on | off: keep only each decoder layer's input in a training forward and recompute the layer in backward, for one more forward (auto: on above 100 M parameters; a 7B step needs it to fit in 24 GB)"),
        ("dtype", "Compute dtype of the base model: auto (bf16 above 100 M parameters on a CPU with avx512_bf16/AMX, else f32), f32 or bf16; LoRA weights, optimizer state and the loss stay f32"),
    ];

    public static TuneConfig From(Recipe r) => new(
        r.Str("model", "checkpoints/tiny-base"), r.Str("data", "data/generated/scenes/manifest.jsonl"), r.Str("world", "data/scenes/world.json"),
        r.Str("suite", "eval/suites/scenes.yaml"), r.Str("runs_dir", "checkpoints/runs"), r.OptStr("name"), r.Bool("resume", false),
        r.Str("objective", "parity"), r.Dbl("parity_weight", 1.0), r.Dbl("caption_kl_weight", 0.1), r.Dbl("unknown_weight", 1.0),
        r.Dbl("retain_weight", 10.0), r.Dbl("retain_kl_weight", 0.0),
        r.Dbl("lr", 1e-4), r.Choice("schedule", "constant", "cosine", "constant"), r.Int("warmup_steps", 10), r.Dbl("weight_decay", 0.0),
        r.Dbl("grad_clip", 1.0), r.Int("grad_accum", 1), r.Int("pairs_per_step", 8), r.Int("probes_per_pair", 4), r.Int("retain_per_step", 24),
        r.Int("lora_r", 8), r.Dbl("lora_alpha", 16), r.Dbl("lora_dropout", 0.0), r.List("target_modules", LoraConfig.DefaultTargetModules),
        r.Bool("use_rslora", false), r.Bool("lora_vision", false), r.Bool("lora_projector", false),
        r.Dbl("threshold", 0.05), r.Int("max_steps", 20000), r.Int("eval_every", 25), r.Dbl("max_accuracy_drop", 0.05),
        r.Choice("stop_rule", "threshold", "threshold", "ema-loss"), r.Int("ema_patience", 10),
        r.Int("val_pairs", 0), r.Int("save_every", 25), r.Long("seed", 0), r.Bool("final_eval", true), r.Int("test_bootstrap", 1000),
        r.Choice("dtype", "auto", "auto", "f32", "bf16"), TuneMethods.Parse(r.Choice("method", "lora", "lora", "prompt")), r.Int("prompt_tokens", 8),
        r.Choice("overlap", "auto", "auto", "on", "off"), r.Choice("gradient_checkpointing", "auto", "auto", "on", "off"));

    /// <summary>Parameters above which gradient_checkpointing auto turns checkpointing on (the size dtype auto uses).</summary>
    public const long AutoCheckpointParameters = 100_000_000;

    /// <summary>Whether the decoder is checkpointed for gradient_checkpointing <paramref name="mode"/> (the count is read only for auto), and why.</summary>
    public static (bool on, string reason) Checkpointing(string mode, Func<long> parameters)
    {
        if (mode != "auto") return (mode == "on", $"gradient_checkpointing {mode}");
        long n = parameters();
        return n > AutoCheckpointParameters
            ? (true, $"auto: {n / 1e6:F0} M parameters, above {AutoCheckpointParameters / 1_000_000} M")
            : (false, $"auto: {n / 1e6:F1} M parameters, at most {AutoCheckpointParameters / 1_000_000} M");
    }

    public IReadOnlySet<string> Objectives => Objective.Split('+', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet();

    public void Validate()
    {
        foreach (var o in Objectives)
            if (o is not ("parity" or "unknown" or "retain"))
                throw new BadInputException($"objective: unknown objective '{o}' (expected parity, unknown, retain, joined with +)");
        if (Lr <= 0 || !double.IsFinite(Lr)) throw new BadInputException($"lr: must be a positive number, got {Lr}");
        if (MaxSteps < 0) throw new BadInputException($"max_steps: must be >= 0, got {MaxSteps}");
        if (EvalEvery < 1) throw new BadInputException($"eval_every: must be >= 1, got {EvalEvery}");
        if (PairsPerStep < 1 || ProbesPerPair < 1) throw new BadInputException("pairs_per_step and probes_per_pair must be >= 1");
        if (GradAccum < 1) throw new BadInputException($"grad_accum: must be >= 1, got {GradAccum}");
        if (PromptTokens < 1) throw new BadInputException($"prompt_tokens: must be >= 1, got {PromptTokens}");
        if (Method == TuneMethod.Prompt && (LoraVision || LoraProjector)) throw new BadInputException("lora_vision / lora_projector: not used with method prompt; set them to false");
        if (Threshold < 0) throw new BadInputException($"threshold: must be >= 0, got {Threshold}");
    }

    public LoraConfig Lora => new(LoraR, LoraAlpha, LoraDropout, TargetModules, UseRsLora, Model, LoraVision, LoraProjector);
}
