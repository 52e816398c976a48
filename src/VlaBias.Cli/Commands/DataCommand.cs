using System.CommandLine;
using System.Globalization;
using Serilog;
using Spectre.Console;
using VlaBias.Data;
using VlaBias.Data.Importers;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune data …: synth (render the synthetic world), import (real data sets → manifest), face-sample, audit (attribute × context/role co-occurrence), rebalance and augment (data-side debiasing).</summary>
public static class DataCommand
{
    public static Command Create()
    {
        var data = new Command("data", "Data: render the synthetic world (synth), import datasets, audit manifests");
        data.Subcommands.Add(Synth());
        data.Subcommands.Add(Import());
        data.Subcommands.Add(FaceSample());
        data.Subcommands.Add(AuditCommand());
        data.Subcommands.Add(RebalanceCommand());
        data.Subcommands.Add(Augment());
        return data;
    }

    public const string DefaultSynthDir = "data/generated/scenes";

    private static Command Synth()
    {
        var world = new Option<string>("--world") { Description = "World definition", DefaultValueFactory = _ => "data/scenes/world.json" };
        var outDir = new Option<string>("--out") { Description = "Output folder (manifest.jsonl + img/)", DefaultValueFactory = _ => DefaultSynthDir };
        var pretrain = new Option<int?>("--pretrain") { Description = "Number of pretraining images (default 8000)" };
        var tunePairs = new Option<int?>("--tune-pairs") { Description = "Counterfactual pairs for tuning (default 600)" };
        var valPairs = new Option<int?>("--val-pairs") { Description = "Pairs in val (default 192; unclear singles are half that)" };
        var testPairs = new Option<int?>("--test-pairs") { Description = "Pairs in test (default 192; unclear singles are half that)" };
        var cmd = new Command("synth", "Render Counterfactual Scenes: splits pretrain (biased annotations), tune, val, test (truthful, paired).\n\n" +
                                       "Examples:\n  vlatune data synth\n  vlatune data synth --out /tmp/scenes --pretrain 2000 --seed 1");
        foreach (var o in new Option[] { world, outDir, pretrain, tunePairs, valPairs, testPairs }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var w = World.Load(p.GetValue(world)!);
            var opts = new SynthOptions { Seed = (ulong)p.GetValue(Cli.Common.Seed) };
            if (p.GetValue(pretrain) is int n) opts = opts with { Pretrain = n };
            if (p.GetValue(tunePairs) is int t) opts = opts with { TunePairs = t, TuneUnclear = t / 2 };
            if (p.GetValue(valPairs) is int v) opts = opts with { ValPairs = v, ValUnclear = v / 2 };
            if (p.GetValue(testPairs) is int te) opts = opts with { TestPairs = te, TestUnclear = te / 2 };
            var result = ProgressDisplay.Run("rendering scenes", prog =>
                SceneSynth.Generate(w, opts, p.GetValue(outDir)!, new SyncProgress<(int done, int total)>(x => prog.Report(new(x.done, x.total, "")))));
            Log.Information("wrote {Count} items to {Manifest} in {Seconds:F1} s", result.Items.Count, result.ManifestPath, result.Elapsed.TotalSeconds);
            Console.WriteLine(result.ManifestPath);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static Command Import()
    {
        var format = new Option<string>("--format") { Description = $"Source format: {string.Join(" | ", DatasetImport.Formats)}", Required = true };
        var src = new Argument<string>("source") { Description = "FairFace label CSV, UTKFace folder, COCO captions JSON, CSV (image,caption,gender,...), or counterfactual folder root" };
        var outPath = new Option<string>("--out") { Description = "Manifest to write (.jsonl); image paths are written relative to it", Required = true };
        var imagesRoot = new Option<string?>("--images-root") { Description = "Folder the source's image paths are relative to (default: the source's folder)" };
        var splitVal = new Option<double>("--split-val") { Description = "Fraction of items (pairs stay together) for split val", DefaultValueFactory = _ => 0.1 };
        var splitTest = new Option<double>("--split-test") { Description = "Fraction for split test", DefaultValueFactory = _ => 0.1 };
        var rest = new Option<string>("--rest-split") { Description = "Split of the remaining items: tune or train", DefaultValueFactory = _ => "tune" };
        var probes = new Option<string?>("--probes") { Description = $"Probing suite whose questions are added to every item (default {ProbingSuite.DefaultPath}; 'none' adds none)" };
        var cmd = new Command("import", "Convert a data set into a manifest (images referenced, not copied). Only counterfactual folders give\n" +
            "pairs; `vlatune tune` needs pairs, the other formats serve evaluation (group gaps).\n\nExamples:\n" +
            "  vlatune data import --format fairface fairface_label_val.csv --images-root FairFace --out data/imported/fairface/manifest.jsonl\n" +
            "  vlatune data import --format utkface UTKFace/ --out data/imported/utk/manifest.jsonl\n" +
            "  vlatune data import --format coco annotations/captions_val2017.json --images-root val2017 --out data/imported/coco/manifest.jsonl\n" +
            "  vlatune data import --format counterfactual-folders cf/ --out data/imported/cf/manifest.jsonl --split-val 0.2 --split-test 0.2");
        foreach (var o in new Option[] { format, outPath, imagesRoot, splitVal, splitTest, rest, probes }) cmd.Options.Add(o);
        cmd.Arguments.Add(src);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var probePath = p.GetValue(probes) ?? ProbingSuite.DefaultPath;
            var result = DatasetImport.Run(new ImportOptions
            {
                Format = p.GetValue(format)!, Source = p.GetValue(src)!, Out = p.GetValue(outPath)!, ImagesRoot = p.GetValue(imagesRoot),
                SplitVal = p.GetValue(splitVal), SplitTest = p.GetValue(splitTest), RestSplit = p.GetValue(rest)!, Seed = p.GetValue(Cli.Common.Seed),
                Probes = probePath == "none" ? null : ProbingSuite.Load(probePath),
            });
            var bySplit = string.Join(", ", result.Items.GroupBy(i => i.Split).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}"));
            Log.Information("imported {Count} items ({Splits}), {Pairs} counterfactual pairs", result.Items.Count, bySplit, result.Pairs);
            Console.WriteLine(result.ManifestPath);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static Command FaceSample()
    {
        var outDir = new Option<string>("--out") { Description = "Output folder (fairface/ and counterfactual/)", Required = true };
        var faces = new Option<int>("--faces") { Description = "FairFace-format images", DefaultValueFactory = _ => 8 };
        var scenes = new Option<int>("--scenes") { Description = "Counterfactual scenes (a man and a woman image each)", DefaultValueFactory = _ => 8 };
        var cmd = new Command("face-sample", "Write tiny generated face-like images in FairFace and counterfactual-folder layouts (for trying the importers).\n\n" +
            "Example:\n  vlatune data face-sample --out /tmp/faces && vlatune data import --format counterfactual-folders /tmp/faces/counterfactual --out /tmp/faces/cf.jsonl");
        foreach (var o in new Option[] { outDir, faces, scenes }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var paths = FaceSamples.Write(p.GetValue(outDir)!, p.GetValue(faces), p.GetValue(scenes), seed: p.GetValue(Cli.Common.Seed));
            Console.WriteLine(paths.FairFaceCsv);
            Console.WriteLine(paths.CounterfactualRoot);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static Command RebalanceCommand()
    {
        var input = new Argument<string>("manifest") { Description = "Input manifest" };
        var outFile = new Option<string>("--out") { Description = "Output manifest (image paths are rewritten relative to it)", Required = true };
        var split = new Option<string>("--split") { Description = "Split to resample (others pass through)", DefaultValueFactory = _ => "pretrain" };
        var under = new Option<bool>("--undersample") { Description = "Drop items down to the smallest gender of each cell instead of duplicating up to the largest" };
        var cmd = new Command("rebalance", "Resample a split so each gender × context × role cell has equal counts (feeds pretrain or tune).\n\n" +
            "Examples:\n  vlatune data rebalance data/generated/scenes/manifest.jsonl --out /tmp/rebalanced/manifest.jsonl\n" +
            "  vlatune pretrain --data /tmp/rebalanced/manifest.jsonl --out /tmp/base-rebalanced");
        cmd.Arguments.Add(input);
        foreach (var o in new Option[] { outFile, split, under }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var src = p.GetValue(input)!;
            var items = Manifest.Load(src);
            var (result, report) = Rebalance.Run(items, p.GetValue(split)!, p.GetValue(under), (int)p.GetValue(Cli.Common.Seed));
            WriteRelocated(src, p.GetValue(outFile)!, result);
            Log.Information("data rebalance: split {Split}: {Cells} context/role cells, {Before} → {After} items → {Out}", p.GetValue(split), report.Cells, report.Before, report.After, p.GetValue(outFile));
            foreach (var m in report.MissingGenders.Take(20)) Log.Warning("data rebalance: cannot balance {Cell}", m);
            Console.WriteLine(p.GetValue(outFile));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static Command Augment()
    {
        var input = new Argument<string>("manifest") { Description = "Input manifest" };
        var outFile = new Option<string>("--out") { Description = "Output manifest (image paths are rewritten relative to it)", Required = true };
        var split = new Option<string?>("--split") { Description = "Only augment this split (default: all)" };
        var world = new Option<string>("--world") { Description = "World definition (its man / woman / neutral words)", DefaultValueFactory = _ => "data/scenes/world.json" };
        var cmd = new Command("augment", "Counterfactual caption augmentation: for figures of unclear gender, add the neutral ('person') and the gender-swapped version of every gendered caption.\n\n" +
            "Example:\n  vlatune data augment data/generated/scenes/manifest.jsonl --split pretrain --out /tmp/augmented/manifest.jsonl");
        cmd.Arguments.Add(input);
        foreach (var o in new Option[] { outFile, split, world }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var src = p.GetValue(input)!;
            var w = World.Load(p.GetValue(world)!);
            var (result, report) = CounterfactualAugmentation.Run(Manifest.Load(src), p.GetValue(split), w.Words.Unclear, w.Words.Man, w.Words.Woman);
            WriteRelocated(src, p.GetValue(outFile)!, result);
            Log.Information("data augment: {Unclear} unclear items, {Added} captions added → {Out}", report.UnclearItems, report.CaptionsAdded, p.GetValue(outFile));
            Console.WriteLine(p.GetValue(outFile));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    /// <summary>Writes items read from <paramref name="from"/> to <paramref name="to"/>, image paths made relative to the new folder.</summary>
    public static void WriteRelocated(string from, string to, IEnumerable<ManifestItem> items)
    {
        string srcDir = Path.GetDirectoryName(Path.GetFullPath(from))!, dstDir = Path.GetDirectoryName(Path.GetFullPath(to))!;
        Directory.CreateDirectory(dstDir);
        Manifest.Write(to, srcDir == dstDir ? items : items.Select(i => i with { Image = Path.GetRelativePath(dstDir, Path.Combine(srcDir, i.Image)) }));
    }


    private static Command AuditCommand()
    {
        var manifest = new Argument<string>("manifest") { Description = "Manifest (JSON Lines) to audit" };
        var json = new Option<string?>("--json") { Description = "Also write the audit as JSON to this file" };
        var split = new Option<string?>("--split") { Description = "Audit only this split (train, val, test, pretrain, tune)" };
        var cmd = new Command("audit", "Count attribute (gender, tone) × context and × role co-occurrence in a manifest, the gender skew of each " +
            "context and role (majority share, log-ratio), and the disparate impact of roles across genders and tones (four-fifths rule).\n\n" +
            "Examples:\n  vlatune data audit data/generated/scenes/manifest.jsonl --split pretrain\n" +
            "  vlatune data audit manifest.jsonl --json audit.json");
        cmd.Arguments.Add(manifest);
        cmd.Options.Add(json);
        cmd.Options.Add(split);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var report = Audit.Run(p.GetValue(manifest)!, p.GetValue(split));
            PrintAudit(report);
            if (p.GetValue(json) is string path)
            {
                AtomicFile.WriteAllText(path, report.ToJsonString());
                Log.Information("audit: wrote {Path}", path);
            }
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    // Tables go to stdout (they are the command's output); logs and errors to stderr.
    private static void PrintAudit(AuditReport r)
    {
        // Piped or redirected: plain text (no colour escapes) at a width that fits the tables.
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Console.Out),
            Ansi = Console.IsOutputRedirected ? AnsiSupport.No : AnsiSupport.Detect,
            ColorSystem = Console.IsOutputRedirected ? ColorSystemSupport.NoColors : ColorSystemSupport.Detect,
        });
        if (Console.IsOutputRedirected) console.Profile.Width = 160;
        static string F(double v, string fmt = "0.000") => double.IsFinite(v) ? v.ToString(fmt, CultureInfo.InvariantCulture) : "–";
        console.MarkupLine($"[bold]Audit of {Markup.Escape(r.Manifest)}[/]{(r.Split is null ? "" : $", split [bold]{Markup.Escape(r.Split)}[/]")}: {r.NItems} items");
        foreach (var axis in Audit.Axes)
        {
            var genders = r.Counts["gender"][axis];
            var skew = r.Skews[axis].ToDictionary(s => s.Key);
            var t = new Table().Title($"gender × {axis}").AddColumn(axis);
            foreach (var g in Manifest.Genders) t.AddColumn(new TableColumn(g).RightAligned());
            t.AddColumn(new TableColumn("majority")).AddColumn(new TableColumn("share").RightAligned()).AddColumn(new TableColumn("log(w/m)").RightAligned());
            foreach (var (key, row) in genders)
            {
                var s = skew[key];
                var cells = new List<string> { Markup.Escape(key) };
                cells.AddRange(Manifest.Genders.Select(g => row.GetValueOrDefault(g).ToString(CultureInfo.InvariantCulture)));
                string share = F(s.MajorityShare);
                if (s.MajorityShare >= 0.8) share = $"[red]{share}[/]";
                cells.AddRange([s.Majority, share, F(s.LogRatio, "+0.00;-0.00;0.00")]);
                t.AddRow(cells.ToArray());
            }
            console.Write(t);

            var tones = r.Counts["tone"][axis];
            var toneValues = tones.Values.SelectMany(v => v.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
            if (toneValues.Count > 0)
            {
                var tt = new Table().Title($"tone × {axis}").AddColumn(axis);
                foreach (var v in toneValues) tt.AddColumn(new TableColumn($"tone {v}").RightAligned());
                foreach (var (key, row) in tones)
                    tt.AddRow(new[] { Markup.Escape(key) }.Concat(toneValues.Select(v => row.GetValueOrDefault(v).ToString(CultureInfo.InvariantCulture))).ToArray());
                console.Write(tt);
            }
        }
        foreach (var (attr, di) in r.DisparateImpact)
        {
            if (di is null) { console.MarkupLine($"disparate impact of roles across {attr}: [grey]no roles or fewer than two groups[/]"); continue; }
            var groups = di.SelectionRates.Values.SelectMany(v => v.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
            var t = new Table().Title($"disparate impact of roles across {attr} (selection rate P(role | group))").AddColumn("role");
            foreach (var g in groups) t.AddColumn(new TableColumn(attr == "tone" ? $"tone {g}" : g).RightAligned());
            t.AddColumn(new TableColumn("min/max").RightAligned()).AddColumn("80% rule");
            foreach (var (role, rates) in di.SelectionRates)
            {
                double ratio = di.RatioPerRole[role];
                bool fails = ratio < Evaluation.Metrics.DisparateImpact.FourFifths;
                t.AddRow(new[] { Markup.Escape(role) }.Concat(groups.Select(g => F(rates.GetValueOrDefault(g)))).Concat([F(ratio), fails ? "[red]fails[/]" : "passes"]).ToArray());
            }
            console.Write(t);
            console.MarkupLine($"min ratio across {attr}: [bold]{F(di.MinRatio)}[/]{(di.FailsFourFifthsRule ? " [red](fails the four-fifths rule)[/]" : "")}");
        }
    }

    /// <summary>The default synthetic data set, generated on first use (deterministic, a few seconds).</summary>
    public static string EnsureDefaultScenes(string worldPath = "data/scenes/world.json", string dir = DefaultSynthDir)
    {
        var manifest = Path.Combine(dir, SceneSynth.ManifestName);
        var stamp = Path.Combine(dir, "world.sha256");
        // Regenerate when world.json changed since the data was rendered (the stamp records its hash).
        string hash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(worldPath)));
        if (File.Exists(manifest) && File.Exists(stamp) && File.ReadAllText(stamp).Trim() == hash) return manifest;
        Log.Information("generating the default Counterfactual Scenes data set in {Dir} ({Why})", dir, File.Exists(manifest) ? "world.json changed" : "first use");
        var w = World.Load(worldPath);
        var result = SceneSynth.Generate(w, new SynthOptions(), dir).ManifestPath;
        AtomicFile.WriteAllText(stamp, hash + "\n");
        return result;
    }
}
