// When a debiasing run stops, and why, as a typed reason (the CLI's exit code reads its kind, never its text):
//   threshold    stop_rule threshold: the first evaluation with validation bias ≤ threshold and CIDEr-D ≥
//                (1 − max_accuracy_drop) × base (the accuracy guard; with no validation captions there is no guard)
//   ema_loss     stop_rule ema-loss (Girrbach et al.): the EMA 0.9 of the training loss under the threshold for more
//                than ema_patience consecutive steps
//   non_finite   a loss was NaN or infinite: the run ends at once and keeps its last good checkpoint
//   max_steps    none of these before max_steps
// An evaluation runs every eval_every steps, at max_steps, and at the step a stop rule fired.
namespace VlaBias.Training;

public enum StopKind { MaxSteps, Threshold, EmaLoss, NonFiniteLoss }

public sealed record StopReason(StopKind Kind, string Text)
{
    /// <summary>Whether a stop rule's goal was reached (threshold or ema-loss).</summary>
    public bool GoalReached => Kind is StopKind.Threshold or StopKind.EmaLoss;

    public override string ToString() => Text;
}

internal sealed class StopPolicy(TuneConfig cfg, Func<ValidationPoint> basePointOf)
{
    public StopPolicy(TuneConfig cfg, ValidationPoint basePoint) : this(cfg, () => basePoint) { }

    // the base validation, asked for when a rule needs it (with overlap it may still be running on the worker)
    private ValidationPoint basePoint => basePointOf();

    public static StopReason NonFinite(double loss, long step) =>
        new(StopKind.NonFiniteLoss, $"non-finite loss ({loss}) at step {step}; the last good checkpoint is kept");

    /// <summary>After an optimizer step: the state with its below-threshold count updated (ema-loss rule), and the reason when the rule fires.</summary>
    public (RunState state, StopReason? reason) AfterStep(RunState s)
    {
        if (cfg.StopRule != "ema-loss") return (s, null);
        s = s with { BelowCount = s.Ema < cfg.Threshold ? s.BelowCount + 1 : 0 };
        return s.BelowCount > cfg.EmaPatience
            ? (s, new StopReason(StopKind.EmaLoss, $"EMA of the training loss ({s.Ema:F4}) below {cfg.Threshold} for more than {cfg.EmaPatience} consecutive steps (Girrbach rule)"))
            : (s, null);
    }

    public bool EvaluateNow(long step, StopReason? reason) => step % cfg.EvalEvery == 0 || step == cfg.MaxSteps || reason is not null;

    /// <summary>The accuracy guard: validation CIDEr-D ≥ (1 − max_accuracy_drop) × base (passes when validation has no captions).</summary>
    public bool Guard(ValidationPoint v) => double.IsNaN(basePoint.CiderD) || v.CiderD >= (1 - cfg.MaxAccuracyDrop) * basePoint.CiderD;

    /// <summary>After an evaluation: the threshold rule's reason when it fires.</summary>
    public StopReason? AfterEvaluation(ValidationPoint v) =>
        cfg.StopRule == "threshold" && v.Bias <= cfg.Threshold && Guard(v)
            ? new StopReason(StopKind.Threshold, $"validation pairwise probe gap {v.Bias:F4} <= threshold {cfg.Threshold} with CIDEr-D {v.CiderD:F3} >= {(1 - cfg.MaxAccuracyDrop):F2} x base {basePoint.CiderD:F3} at step {v.Step}")
            : null;

    /// <summary>The reason a resumed run had already stopped for (its checkpoint is written at the step a rule fired):
    /// the threshold rule on the evaluation of that step, or the ema-loss rule's count; null when it was still running.</summary>
    public StopReason? Restored(RunState s)
    {
        if (cfg.StopRule == "ema-loss" && s.BelowCount > cfg.EmaPatience) return AfterStep(s with { BelowCount = s.BelowCount - 1 }).reason;
        return s.Evaluations.LastOrDefault() is { } v && v.Step == s.Step ? AfterEvaluation(v) : null;
    }

    /// <summary>The reason a finished loop ends with: its stop rule's, or max_steps (noting when no adapter passed the guard).</summary>
    public static StopReason AtEnd(StopReason? reason, bool anyPassedGuard) => reason ?? new StopReason(StopKind.MaxSteps,
        anyPassedGuard ? "max_steps reached" : "max_steps reached; no evaluation passed the accuracy guard, the last adapter is kept");
}
