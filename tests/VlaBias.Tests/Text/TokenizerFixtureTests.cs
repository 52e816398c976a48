using System.Text.Json.Nodes;
using NUnit.Framework;
using VlaBias.Text;

namespace VlaBias.Tests.Text;

/// <summary>
/// Our token ids against independent reference tokenizers (tools/reference/tokenizer_reference.py): Google's
/// SentencePiece for the Llama-style tokenizer.model, and a byte-level BPE written from the published algorithm
/// for the Qwen2-style vocab.json + merges.txt. Fixtures under Fixtures/tokenizers.
/// </summary>
public class TokenizerFixtureTests
{
    private static string Fixture(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "tokenizers", name);
    private static JsonObject Expected(string name) => JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture(name), "expected_ids.json")))!.AsObject();
    private static int[] Ids(JsonNode? n) => n!.AsArray().Select(x => x!.GetValue<int>()).ToArray();

    [TestCase("llama-spm")]
    [TestCase("qwen2-bpe")]
    public void Token_ids_match_the_reference_tokenizer(string name)
    {
        var tok = VlaTokenizer.FromFolder(Fixture(name));
        var expected = Expected(name);
        var failures = new List<string>();
        foreach (var c in expected["cases"]!.AsArray())
        {
            string text = c!["text"]!.GetValue<string>();
            var want = Ids(c["ids"]);
            var got = tok.Encode(text);
            if (!got.SequenceEqual(want)) failures.Add($"'{text}': expected [{string.Join(",", want)}] got [{string.Join(",", got)}]");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
        Assert.That(tok.VocabSize, Is.EqualTo(expected["vocab_size"]!.GetValue<int>()));
    }

    [TestCase("llama-spm")]
    [TestCase("qwen2-bpe")]
    public void Prompt_ids_match_the_reference_template_rendering(string name)
    {
        var tok = VlaTokenizer.FromFolder(Fixture(name));
        var p = Expected(name)["prompt"]!;
        var got = tok.EncodePrompt(p["question"]!.GetValue<string>(), p["image_tokens"]!.GetValue<int>());
        Assert.That(got, Is.EqualTo(Ids(p["ids"])));
    }

    [Test]
    public void Decode_inverts_encode_for_both_tokenizers()
    {
        foreach (var name in new[] { "llama-spm", "qwen2-bpe" })
        {
            var tok = VlaTokenizer.FromFolder(Fixture(name));
            const string text = "a woman in a kitchen, 3 pans; Café!";
            Assert.That(tok.Decode(tok.Encode(text)).Trim(), Is.EqualTo(text), name);
        }
    }

    [Test]
    public void Prompt_template_is_inferred_from_the_text_model_type_unless_declared()
    {
        var dir = TestPaths.NewTempDir("tmpl");
        try
        {
            foreach (var f in Directory.GetFiles(Fixture("qwen2-bpe"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type":"llava","text_config":{"model_type":"qwen2"}}""");
            Assert.That(VlaTokenizer.FromFolder(dir).PromptTemplate, Is.EqualTo(PromptTemplates.ChatMl));
            File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type":"llava","text_config":{"model_type":"llama"}}""");
            Assert.That(VlaTokenizer.FromFolder(dir).PromptTemplate, Is.EqualTo("USER: <image>\n{prompt} ASSISTANT:"));
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer_config.json")))!.AsObject();
            cfg["vlatune_prompt_template"] = "Q: <image> {prompt} A:";
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), cfg.ToJsonString());
            Assert.That(VlaTokenizer.FromFolder(dir).PromptTemplate, Is.EqualTo("Q: <image> {prompt} A:"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
