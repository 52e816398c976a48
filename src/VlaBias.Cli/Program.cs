// vlatune: one command for auditing and reducing social bias in vision-language assistants (README.md).
// The root command is `tune`, so `vlatune --lr 1e-4 --threshold 0.05 --max-steps 20000` runs the main job.
using System.CommandLine;
using VlaBias.Cli;
using VlaBias.Cli.Commands;

var root = TuneCommand.Create(new RootCommand(
    "vlatune: probe a vision-language assistant for social bias, debias it with LoRA on counterfactual pairs until the " +
    "held-out bias falls under a threshold, prove it with the evaluator, and export it.\n\n" +
    "Without a subcommand, runs the debiasing job (tune) on recipes/default.yaml.\n\n" +
    "Examples:\n" +
    "  vlatune --lr 1e-4 --threshold 0.05 --max-steps 20000\n" +
    "  vlatune caption --model checkpoints/tiny-base image.png --json\n" +
    "  vlatune ask --model checkpoints/tiny-base image.png --question \"is the person friendly?\" --options yes,no"));
root.Subcommands.Add(TuneCommand.Create(new Command("tune", "LoRA debiasing run (the same as the root command)")));
root.Subcommands.Add(CaptionCommand.Create());
root.Subcommands.Add(AskCommand.Create());
root.Subcommands.Add(DataCommand.Create());
root.Subcommands.Add(PretrainCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(ExportCommand.Create());
root.Subcommands.Add(CompareCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(SteerCommand.Create());
root.Subcommands.Add(MethodsCommand.Create());
root.Subcommands.Add(RunsCommand.Create());
root.Subcommands.Add(ProvenanceCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
return Cli.Invoke(root, args);
