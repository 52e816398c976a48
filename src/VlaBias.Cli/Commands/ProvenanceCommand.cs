using VlaBias.Data;
using System.CommandLine;
using VlaBias.Reproducibility;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune provenance check|record: what made a committed result, and whether it is stale (Reproducibility/Provenance.cs).</summary>
public static class ProvenanceCommand
{
    public static Command Create()
    {
        var cmd = new Command("provenance", "What made a result file (FILE.provenance.json beside it) and whether it is stale.");
        cmd.Subcommands.Add(Check());
        cmd.Subcommands.Add(Record());
        return cmd;
    }

    private static Command Check()
    {
        var files = new Argument<string[]>("files") { Description = "Result files (tables, figures) with a FILE.provenance.json beside them", Arity = ArgumentArity.OneOrMore };
        var ignoreCode = new Option<bool>("--ignore-code") { Description = "A change of the sources is a note, not stale (inputs and the file itself are still checked)" };
        var cmd = new Command("check", "Recompute the hashes of each file, its inputs and the code; exit 1 naming what changed when one is stale.\n\n" +
            "Example:\n  vlatune provenance check eval/methods/comparison.md eval/main-job/summary.md");
        cmd.Arguments.Add(files);
        cmd.Options.Add(ignoreCode);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            bool allFresh = true;
            foreach (var f in p.GetValue(files)!)
            {
                var c = Provenance.Check(f, p.GetValue(ignoreCode));
                Console.WriteLine($"{f}: {(c.Fresh ? "fresh" : "STALE")}");
                foreach (var s in c.Stale) Console.WriteLine($"  stale: {s}");
                foreach (var n in c.Notes) Console.WriteLine($"  note: {n}");
                if (!c.Fresh && c.Regenerate is not null) Console.WriteLine($"  regenerate: {c.Regenerate}");
                allFresh &= c.Fresh;
            }
            return allFresh ? ExitCodes.Ok : ExitCodes.MissedGoal;
        }));
        return cmd;
    }

    private static Command Record()
    {
        var file = new Argument<string>("file") { Description = "The result file" };
        var command = new Option<string>("--command") { Description = "The command that made it (as a person would retype it)", Required = true };
        var recipe = new Option<string?>("--recipe") { Description = "Recipe it was made with" };
        var model = new Option<string?>("--model") { Description = "Model folder" };
        var data = new Option<string?>("--data") { Description = "Data manifest (its images are hashed too)" };
        var suite = new Option<string?>("--suite") { Description = "Evaluation suite (its word lists and world are added)" };
        var inputs = new Option<string[]>("--input") { Description = "Any other input file or folder, KIND=PATH (repeatable)", AllowMultipleArgumentsPerToken = true };
        var generated = new Option<string[]>("--generated") { Description = "An input vlatune makes from the others (a run's report), KIND=PATH: absent elsewhere is not stale", AllowMultipleArgumentsPerToken = true };
        var cmd = new Command("record", "Write FILE.provenance.json for a result made another way (a README table, a screenshot).\n\n" +
            "Example:\n  vlatune provenance record eval/report_screenshot.png --command \"chromium --headless --screenshot …\" --input report=checkpoints/runs/latest/report.html");
        cmd.Arguments.Add(file);
        foreach (var o in new Option[] { command, recipe, model, data, suite, inputs, generated }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var list = Provenance.InputsOf(p.GetValue(recipe), p.GetValue(model), p.GetValue(data), p.GetValue(suite),
                dataGenerated: p.GetValue(data) == DefaultData.Manifest);
            foreach (var (kv, isGenerated) in (p.GetValue(inputs) ?? []).Select(x => (x, false)).Concat((p.GetValue(generated) ?? []).Select(x => (x, true))))
            {
                string option = isGenerated ? "--generated" : "--input";
                var parts = kv.Split('=', 2);
                if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0) throw new BadInputException($"{option}: '{kv}' is not KIND=PATH");
                if (!File.Exists(parts[1]) && !Directory.Exists(parts[1])) throw new BadInputException($"{option}: {parts[1]}: not found");
                list.Add(new ProvenanceInput(parts[0], parts[1], isGenerated));
            }
            foreach (var i in list.Where(i => !i.Generated && !File.Exists(i.Path) && !Directory.Exists(i.Path)))
                throw new BadInputException($"--{i.Kind}: {i.Path}: not found");
            Provenance.Write(p.GetValue(file)!, p.GetValue(command)!, list);
            Console.WriteLine(Provenance.SidecarOf(p.GetValue(file)!));
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
