using System.CommandLine;
using Serilog;
using Spectre.Console;
using VlaBias.Adapters;
using VlaBias.Data;
using VlaBias.Export;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune export: merges an adapter (fp32) and writes the three ONNX graphs (Export/OnnxExporter.cs); --verify runs ONNX Runtime against TorchSharp.</summary>
public static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Base checkpoint folder", DefaultValueFactory = _ => "checkpoints/tiny-base" };
        var adapter = new Option<string?>("--adapter") { Description = "LoRA adapter folder merged into the weights (fp32) before export" };
        var outDir = new Option<string>("--out") { Description = "Export folder", Required = true };
        var verify = new Option<bool>("--verify") { Description = "Compare ONNX Runtime with TorchSharp: max |Δlogit| (prefill + cached decode) and greedy captions; exit 1 past tolerance" };
        var images = new Option<string>("--verify-manifest") { Description = "Manifest whose test-split images --verify uses (random images when absent)", DefaultValueFactory = _ => DefaultData.Manifest };
        var count = new Option<int>("--verify-count") { Description = "Images --verify checks", DefaultValueFactory = _ => 20 };
        var steps = new Option<int>("--decode-steps") { Description = "Cached decode steps compared per image", DefaultValueFactory = _ => 12 };
        var tol = new Option<double>("--tolerance") { Description = "Largest allowed |Δlogit|", DefaultValueFactory = _ => ExportVerifier.DefaultTolerance };
        var merged = new Option<string?>("--save-merged") { Description = "Also write the merged model as a Hugging Face checkpoint folder" };
        var cmd = new Command("export", "Export a model (+ merged adapter) to ONNX in the layout Transformers.js loads: onnx/vision_encoder.onnx, onnx/embed_tokens.onnx, " +
            "onnx/decoder_model_merged.onnx (KV cache), with config, processor, tokenizer.json and generation files, and vlatune_onnx.json.\n\n" +
            "Examples:\n  vlatune export --model checkpoints/tiny-base --adapter checkpoints/runs/latest --out exports/tuned --verify\n" +
            "  vlatune caption --engine onnx --model exports/tuned image.png");
        foreach (var o in new Option[] { model, adapter, outDir, verify, images, count, steps, tol, merged }) cmd.Options.Add(o);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var vla = Vla.Load(p.GetValue(model)!);
            if (p.GetValue(adapter) is string a)
            {
                var lora = LoraAdapter.Load(vla.Model, a);
                lora.MergeInto();
                Log.Information("export: merged adapter {Adapter} ({Modules} modules) into the weights in fp32", a, lora.Modules.Count);
            }
            if (p.GetValue(merged) is string m)
            {
                vla.SavePretrained(m);
                Log.Information("export: merged checkpoint written to {Dir}", m);
            }
            var result = OnnxExporter.Export(vla, p.GetValue(outDir)!);
            Log.Information("export: wrote {Files} ({Mb:F1} MB of weights{Ext}) to {Dir}", string.Join(", ", result.Files.Select(Path.GetFileName)),
                result.WeightBytes / 1e6, result.ExternalData ? ", external data" : "", result.Folder);
            if (!p.GetValue(verify)) return ExitCodes.Ok;

            var pics = ExportVerifier.TestImages(vla, p.GetValue(images)!, p.GetValue(count));
            var v = ExportVerifier.Verify(vla, result.Folder, pics, vla.Prompts.CaptionPrompt, p.GetValue(steps), p.GetValue(tol));
            var table = new Table().AddColumns("item", "prefill max |Δlogit|", "decode max |Δlogit|", "steps", "tokens identical", "caption (TorchSharp)", "caption (ONNX)");
            foreach (var r in v.Rows)
                table.AddRow(Markup.Escape(r.Item), r.PrefillMaxAbsDiff.ToString("E2"), r.DecodeMaxAbsDiff.ToString("E2"), r.DecodeSteps.ToString(),
                    r.TokensIdentical ? "yes" : "[red]NO[/]", Markup.Escape(r.TorchCaption), Markup.Escape(r.OnnxCaption));
            AnsiConsole.Write(table);
            Console.WriteLine($"max |Δlogit| = {v.MaxAbsDiff:E2} (tolerance {v.Tolerance:E0}); greedy captions identical on {v.Rows.Count(r => r.TokensIdentical)}/{v.Rows.Count}; {(v.Passed ? "PASSED" : "FAILED")}");
            return v.Passed ? ExitCodes.Ok : ExitCodes.MissedGoal;
        }));
        return cmd;
    }
}
