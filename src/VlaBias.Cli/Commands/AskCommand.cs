using System.CommandLine;
using System.Text.Json.Nodes;
using VlaBias.Generation;

namespace VlaBias.Cli.Commands;

/// <summary>vlatune ask: answers a question about an image, or with --options prints each option's probability.</summary>
public static class AskCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder (Hugging Face layout)", DefaultValueFactory = _ => "checkpoints/tiny-base" };
        var adapter = new Option<string?>("--adapter") { Description = "LoRA adapter folder (PEFT format) applied to the model" };
        var image = new Argument<string>("image") { Description = "Image file" };
        var question = new Option<string>("--question", "-q") { Description = "The question", Required = true };
        var options = new Option<string?>("--options") { Description = "Comma-separated answer options, e.g. yes,no or yes,no,unknown: prints their probabilities renormalized over the options" };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Longest free-form answer", DefaultValueFactory = _ => 16 };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var dtype = ModelOptions.DType();
        var cmd = new Command("ask", "Ask a question about an image.\n\nExamples:\n  vlatune ask --model checkpoints/tiny-base img.png -q \"is the person holding a wrench?\"\n  vlatune ask --model DIR img.png -q \"is the person friendly?\" --options yes,no");
        foreach (var o in new Option[] { model, adapter, question, options, maxNew, json, dtype }) cmd.Options.Add(o);
        cmd.Arguments.Add(image);
        var methodOptions = new MethodOptions(cmd, decoding: false);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            var vla = Vla.Load(p.GetValue(model)!, p.GetValue(adapter), dtype: ModelOptions.ResolveDType(p.GetValue(dtype), p.GetValue(model)!));
            using var applied = methodOptions.Read(p).Apply(vla);
            var px = vla.Images.Load(p.GetValue(image)!);
            var q = p.GetValue(question)!;
            var gen = new TextGenerator(vla);
            using var batch = vla.Batch([vla.PromptIds(q)], [px]);
            var opts = p.GetValue(options);
            if (opts is not null)
            {
                var list = opts.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                if (list.Length < 2) throw new BadInputException($"--options: '{opts}' needs at least two comma-separated options");
                var probs = gen.ScoreOptions(batch, list)[0];
                if (p.GetValue(json))
                {
                    var o = new JsonObject { ["question"] = q, ["probabilities"] = new JsonObject(list.Select((x, i) => KeyValuePair.Create(x, (JsonNode?)Math.Round(probs[i], 6)))) };
                    Console.WriteLine(o.ToJsonString());
                }
                else
                    for (int i = 0; i < list.Length; i++) Console.WriteLine($"{list[i]}\t{probs[i]:F6}");
                return ExitCodes.Ok;
            }
            var answer = gen.Generate(batch, GenerationOptions.Greedy(p.GetValue(maxNew)))[0];
            if (p.GetValue(json)) Console.WriteLine(new JsonObject { ["question"] = q, ["answer"] = answer.Text, ["sum_logprob"] = answer.SumLogProb }.ToJsonString());
            else Console.WriteLine(answer.Text);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
