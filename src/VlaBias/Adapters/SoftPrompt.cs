// Prompt tuning (research notes §2, Girrbach et al.'s prompt_tuning.py): N trainable embeddings [N, C] inserted right
// after BOS, i.e. before the template text and the image tokens, in every prompt. The base model stays untouched.
// Mechanism: while a SoftPrompt is attached to a model, Vla.PromptIds puts N copies of MarkerId after BOS and
// LlavaModel.Embed writes the prefix rows over the marker positions (like image features over image tokens), so
// batching, padding, masks, positions and the KV cache need no special case. MarkerId is negative: it never reaches
// the embedding table. Files: soft_prompt.safetensors ("prompt_embeddings" [N, C], float32) + soft_prompt.json.
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Adapters;

public sealed class SoftPrompt : IDisposable
{
    public const long MarkerId = -7;
    public const string WeightsFileName = "soft_prompt.safetensors", ConfigFileName = "soft_prompt.json";
    private const string TensorName = "prompt_embeddings";

    private SoftPrompt(Parameter embeddings) { Embeddings = embeddings; }

    /// <summary>The prefix [N, C], trainable.</summary>
    public Parameter Embeddings { get; }
    public int Tokens => (int)Embeddings.shape[0];
    public long ParameterCount => Embeddings.numel();

    /// <summary>A new prefix, initialised N(0, std of the model's token embeddings) (Girrbach: random, not from text).</summary>
    public static SoftPrompt Create(LlavaModel model, int tokens, long seed)
    {
        if (tokens < 1) throw new BadInputException($"prompt_tokens: must be at least 1, got {tokens}");
        double std;
        using (no_grad()) std = model.LanguageModel.Model.EmbedTokens.weight!.to_type(ScalarType.Float32).std().ToDouble();
        var gen = new Generator((ulong)seed + 17);
        var init = (randn(tokens, model.Config.Text.HiddenSize, generator: gen) * std).to(model.DType).to(model.Device);
        return new SoftPrompt(new Parameter(init.DetachFromDisposeScope(), requires_grad: true));
    }

    /// <summary>Attaches the prefix: prompts built by Vla.PromptIds from now on carry it. Null detaches.</summary>
    public void AttachTo(LlavaModel model) => model.SoftPrompt = this;

    /// <summary>embeds [B, T, C] with the prefix written over the marker positions of <paramref name="inputIds"/>.</summary>
    public Tensor Write(Tensor inputIds, Tensor embeds)
    {
        using var scope = NewDisposeScope();
        var isPrefix = inputIds.eq(MarkerId);
        long slots = isPrefix.sum().ToInt64(), rows = inputIds.shape[0];
        if (slots == 0) return embeds.MoveToOuterDisposeScope();
        if (slots != rows * Tokens) throw new BadInputException($"soft prompt: the batch has {slots} prefix positions, expected {Tokens} per row");
        var src = Embeddings.to_type(embeds.dtype).repeat(rows, 1);
        return embeds.masked_scatter(isPrefix.unsqueeze(-1).expand_as(embeds), src).MoveToOuterDisposeScope();
    }

    /// <summary>Prompt ids with the N markers inserted after BOS (at 0 when the tokenizer adds no BOS).</summary>
    public int[] Insert(int[] promptIds, bool hasBos)
    {
        int at = hasBos ? 1 : 0;
        return [.. promptIds[..at], .. Enumerable.Repeat((int)MarkerId, Tokens), .. promptIds[at..]];
    }

    public void Save(string dir, string? baseModel = null)
    {
        Directory.CreateDirectory(dir);
        using (no_grad())
        using (var t = Embeddings.detach().to_type(ScalarType.Float32).cpu())
            SafeTensors.Save(Path.Combine(dir, WeightsFileName), new Dictionary<string, Tensor> { [TensorName] = t },
                new Dictionary<string, string> { ["format"] = "vlatune-soft-prompt" });
        var cfg = new JsonObject
        {
            ["method"] = "prompt_tuning", ["num_virtual_tokens"] = Tokens, ["token_dim"] = Embeddings.shape[1],
            ["insertion"] = "after BOS, before the prompt template and the image tokens", ["base_model_name_or_path"] = baseModel,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFileName), cfg.ToJsonString(JsonFormat.Pretty));
    }

    /// <summary>Loads a prefix from its safetensors file, or from a run folder holding soft_prompt.safetensors.</summary>
    public static SoftPrompt Load(LlavaModel model, string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, WeightsFileName);
        if (!File.Exists(path)) throw new BadInputException($"{path}: soft prompt file not found (train one with `vlatune tune --method prompt`)");
        using var file = SafeTensorsFile.Open(path);
        if (!file.Entries.ContainsKey(TensorName)) throw new BadInputException($"{path}: no tensor '{TensorName}' (not a soft prompt file)");
        var t = file.Read(TensorName);
        if (t.dim() != 2 || t.shape[1] != model.Config.Text.HiddenSize)
            throw new BadInputException($"{path}: soft prompt has shape [{string.Join(", ", t.shape)}], the model needs [N, {model.Config.Text.HiddenSize}]");
        return new SoftPrompt(new Parameter(t.to(model.DType).to(model.Device).DetachFromDisposeScope(), requires_grad: false));
    }

    public void Dispose() => Embeddings.Dispose();
}
