using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Tests.Data;

namespace VlaBias.Tests.Cli;

public class TokenizeCliTests
{
    private static string TinyBase => Path.Combine(RepoPaths.Root, "checkpoints", "tiny-base");

    private static List<JsonNode> Lines(CliRunner.Result r)
    {
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();
    }

    private static int[] Ids(JsonNode o) => o["ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();

    [Test]
    public void Tokenize_prints_one_json_object_per_text_with_the_ids_tokenizer_text_gives()
    {
        var lines = Lines(CliRunner.Run(RepoPaths.Root, "tokenize", "--model", TinyBase, "a woman in a kitchen.", "USER: <image>"));
        Assert.That(lines, Has.Count.EqualTo(2));
        var tok = VlaBias.Text.VlaTokenizer.FromFolder(TinyBase);
        Assert.That(Ids(lines[0]), Is.EqualTo(new[] { tok.BosId }.Concat(tok.Encode("a woman in a kitchen."))));
        Assert.That(lines[0]["tokens"]!.AsArray().Select(t => t!.GetValue<string>()), Is.EqualTo(new[] { "<s>", "a", "woman", "in", "a", "kitchen", "." }));
        Assert.That(lines[0]["text"]!.GetValue<string>(), Is.EqualTo("a woman in a kitchen."));
        Assert.That(Ids(lines[1]).Last(), Is.EqualTo(tok.ImageTokenId), "special tokens in the text stay whole");
    }

    [Test]
    public void Template_wraps_the_text_in_the_prompt_the_model_sees()
    {
        var lines = Lines(CliRunner.Run(RepoPaths.Root, "tokenize", "--model", TinyBase, "--template", "describe the image."));
        var vla = Vla.Load(TinyBase);
        Assert.That(Ids(lines.Single()), Is.EqualTo(vla.PromptIds("describe the image.")));
        Assert.That(Ids(lines.Single()).Count(i => i == vla.Tokenizer.ImageTokenId), Is.EqualTo(vla.Config.ImageSeqLength));
    }

    [Test]
    public void Tokenize_needs_only_the_tokenizer_files()
    {
        // Qwen3's tokenizer.json + tokenizer_config.json, no model and no image token.
        var lines = Lines(CliRunner.Run(RepoPaths.Root, "tokenize", "--model", Tfjs.LenmlModels("tokenizer-qwen3"), "Hello world", "<|im_start|>user\nhi<|im_end|>"));
        Assert.That(Ids(lines[0]), Is.EqualTo(new[] { 9707, 1879 }));
        Assert.That(Ids(lines[1]), Is.EqualTo(new[] { 151644, 872, 198, 6023, 151645 }));
    }

    [Test]
    public void A_folder_without_tokenizer_files_is_exit_code_2_naming_it()
    {
        var empty = TestPaths.NewTempDir("tok-empty");
        try
        {
            var r = CliRunner.Run(RepoPaths.Root, "tokenize", "--model", empty, "x");
            Assert.That(r.ExitCode, Is.EqualTo(2));
            Assert.That(r.Stderr, Does.Contain(empty).And.Contain("tokenizer.json"));
            var missing = CliRunner.Run(RepoPaths.Root, "tokenize", "--model", Path.Combine(empty, "nope"), "x");
            Assert.That(missing.ExitCode, Is.EqualTo(2));
            Assert.That(missing.Stderr, Does.Contain("nope"));
        }
        finally { Directory.Delete(empty, true); }
    }
}
