// The one place scale-out code calls the trainer: a resolved recipe in, the run's result out. Seed sweeps (SeedSweep)
// go through here, so when the trainer's entry point moves only this file changes.
using VlaBias.Recipes;
using VlaBias.Training;

namespace VlaBias.ScaleOut;

public static class TrainerEntry
{
    /// <summary>The folder in a run that holds the resumable checkpoint.</summary>
    public const string CheckpointDir = RunFolder.CheckpointName;

    /// <summary>One tuning run of <paramref name="recipe"/> (file + command line + sweep overrides); unknown keys are bad input.</summary>
    public static TuneResult Train(Recipe recipe, IProgress<TuneProgress>? progress = null, Action<string>? onRunDir = null)
    {
        var cfg = TuneConfig.From(recipe);
        recipe.CheckAllUsed();
        return DebiasTrainer.Run(cfg, recipe, progress, default, onRunDir);
    }
}
