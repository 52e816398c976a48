using System.CommandLine;
using System.Globalization;
using Serilog;
using Spectre.Console;
using VlaBias.Data;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune data audit: attribute × context/role co-occurrence, skew and disparate impact of a manifest (Data/Audit.cs), printed as tables.</summary>
public static class DataAuditCommand
{
    public static Command Create()
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
}
