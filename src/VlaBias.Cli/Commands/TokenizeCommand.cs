using System.CommandLine;
using System.Text.Json.Nodes;
using VlaBias.Model;
using VlaBias.Text;

namespace VlaBias.Cli.Commands;

/// <summary>
/// vlatune tokenize: what texts become as token ids, one JSON object per text, the ids Hugging Face's tokenizer(text)
/// gives. Needs only the tokenizer files of the folder (tokenizer.json + tokenizer_config.json, or the older formats).
/// </summary>
public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Folder with the tokenizer files (a checkpoint or just tokenizer.json + tokenizer_config.json)", DefaultValueFactory = _ => "checkpoints/tiny-base" };
        var template = new Option<bool>("--template") { Description = "Wrap each text in the checkpoint's prompt template first; <image> becomes one image token per image feature when DIR/config.json says how many, else one" };
        var texts = new Argument<string[]>("texts") { Description = "Texts to tokenize", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("tokenize", "Print the token ids and tokens of texts as JSON lines: {\"text\", \"ids\", \"tokens\"}.\n\n" +
            "Examples:\n  vlatune tokenize --model checkpoints/tiny-base \"a woman in a kitchen.\"\n" +
            "  vlatune tokenize --model checkpoints/tiny-base --template \"describe the image.\"\n  vlatune tokenize --model DIR_WITH_TOKENIZER_JSON \"Hello world\" \"<|im_start|>user\"");
        cmd.Options.Add(model); cmd.Options.Add(template);
        cmd.Arguments.Add(texts);
        Cli.Common.AddTo(cmd);
        cmd.SetAction(p => Cli.Run(p, () =>
        {
            string dir = p.GetValue(model)!;
            if (!Directory.Exists(dir)) throw new BadInputException($"--model: folder '{dir}' not found");
            bool wrap = p.GetValue(template);
            var tok = VlaTokenizer.FromFolder(dir, requireImageToken: false);
            int imageTokens = wrap ? ImageTokens(dir, tok) : 0;
            foreach (var text in p.GetValue(texts)!)
            {
                var ids = wrap ? tok.EncodePrompt(text, imageTokens) : tok.EncodeWithSpecialTokens(text);
                var o = new JsonObject
                {
                    ["text"] = text,
                    ["ids"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray()),
                    ["tokens"] = new JsonArray(ids.Select(i => (JsonNode?)tok.TokenOf(i)).ToArray()),
                };
                Console.WriteLine(o.ToJsonString(Compact));
            }
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static readonly System.Text.Json.JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    // Image tokens per image: from config.json when the folder is a checkpoint; a tokenizer alone gives one.
    private static int ImageTokens(string dir, VlaTokenizer tok)
    {
        if (!tok.PromptTemplate.Contains(VlaTokenizer.ImagePlaceholder)) return 0;
        if (tok.ImageTokenId < 0) throw new BadInputException($"{dir}: the prompt template has {VlaTokenizer.ImagePlaceholder} but the tokenizer has no '{tok.ImageToken}' token");
        var cfg = Path.Combine(dir, "config.json");
        return File.Exists(cfg) ? LlavaConfig.Load(cfg).ImageSeqLength : 1;
    }
}
