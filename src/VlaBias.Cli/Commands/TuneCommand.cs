using System.CommandLine;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune [tune]: the LoRA debiasing run (SPEC §6). Options are wired here; the trainer is issue "debiasing trainer".</summary>
public static class TuneCommand
{
    public static T Create<T>(T cmd) where T : Command
    {
        var lr = new Option<double?>("--lr") { Description = "Learning rate (recipe default 1e-4)" };
        var threshold = new Option<double?>("--threshold") { Description = "Stop when the validation pairwise probe gap is at or below this (default 0.05)" };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Upper bound on optimizer steps (default 20000)" };
        var recipe = new Option<string?>("--recipe") { Description = "YAML recipe (default recipes/default.yaml)" };
        foreach (var o in new Option[] { lr, threshold, maxSteps, recipe }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            Console.Error.WriteLine("vlatune: the debiasing trainer (tune) is not available in this build yet; " +
                                    "`vlatune caption` and `vlatune ask` are. See the README's status section.");
            return ExitCodes.Internal;
        }));
        return cmd;
    }
}
