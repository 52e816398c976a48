// Learning-rate schedules of the trainers: linear warmup, then cosine decay or a constant rate.
namespace VlaBias.Training;

public static class LearningRate
{
    /// <summary>Linear warmup to <paramref name="peak"/> over <paramref name="warmup"/> steps, then cosine to minRatio·peak at <paramref name="total"/>.</summary>
    public static double WarmupCosine(long step, long warmup, long total, double peak, double minRatio = 0.1)
    {
        if (warmup > 0 && step < warmup) return peak * (step + 1) / warmup;
        if (total <= warmup) return peak;
        double progress = Math.Min(1.0, (double)(step - warmup) / Math.Max(1, total - warmup));
        return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }

    public static double Constant(long step, long warmup, double peak) => warmup > 0 && step < warmup ? peak * (step + 1) / warmup : peak;

    /// <summary>A debiasing run's rate at <paramref name="step"/>: warmup, then cosine to 0 at max_steps or constant (schedule).</summary>
    public static double For(TuneConfig cfg, long step) => cfg.Schedule == "cosine"
        ? WarmupCosine(step, cfg.WarmupSteps, cfg.MaxSteps, cfg.Lr, 0.0)
        : Constant(step, cfg.WarmupSteps, cfg.Lr);
}
