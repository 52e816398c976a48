// Prompt tuning (Girrbach et al.'s prompt_tuning.py): N trainable embeddings [N, C] inserted right after BOS, i.e.
// before the template text and the image tokens, in every prompt. The base model stays untouched.
// Mechanism: while the soft prompt is enabled, prompts built by PromptFormat carry N positions of
// LlavaModel.VirtualTokenId after BOS, and batches carry these embeddings, which the model writes over those positions
// (like image features over image tokens), so batching, padding, masks, positions and the KV cache need no special
// case. Disabled, prompts have no such positions: the model computes exactly the base's outputs.
// Files: soft_prompt.safetensors ("prompt_embeddings" [N, C], float32) + soft_prompt.json.
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using VlaBias.Model;
using VlaBias.Weights;
using static TorchSharp.torch;

namespace VlaBias.Adapters;

public sealed class SoftPrompt : ITunable, IDisposable
{
    public const long MarkerId = LlavaModel.VirtualTokenId;
    public const string WeightsFileName = "soft_prompt.safetensors", ConfigFileName = "soft_prompt.json";
    private const string TensorName = "prompt_embeddings";
    private const string CheckpointName = "soft_prompt.prompt_embeddings";

    private SoftPrompt(Parameter embeddings, string? baseModel) { Embeddings = embeddings; BaseModel = baseModel; }

    /// <summary>The prefix [N, C].</summary>
    public Parameter Embeddings { get; }
    public int Tokens => (int)Embeddings.shape[0];
    public long ParameterCount => Embeddings.numel();
    public TuneMethod Method => TuneMethod.Prompt;

    /// <summary>The base checkpoint recorded in soft_prompt.json.</summary>
    public string? BaseModel { get; }

    public bool Enabled { get; private set; } = true;

    /// <summary>A new prefix, trainable, initialised N(0, std of the model's token embeddings) (Girrbach: random, not from text).</summary>
    public static SoftPrompt Create(LlavaModel model, int tokens, long seed, string? baseModel = null)
    {
        if (tokens < 1) throw new BadInputException($"prompt_tokens: must be at least 1, got {tokens}");
        double std;
        using (no_grad()) std = model.LanguageModel.Model.EmbedTokens.weight!.to_type(ScalarType.Float32).std().ToDouble();
        var gen = new Generator((ulong)seed + 17);
        var init = (randn(tokens, model.Config.Text.HiddenSize, generator: gen) * std).to(model.DType).to(model.Device);
        return new SoftPrompt(new Parameter(init.DetachFromDisposeScope(), requires_grad: true), baseModel);
    }

    /// <summary>Prompt ids with the N positions inserted after BOS (at 0 when the tokenizer adds no BOS).</summary>
    public int[] Insert(int[] promptIds, bool hasBos)
    {
        int at = hasBos ? 1 : 0;
        return [.. promptIds[..at], .. Enumerable.Repeat((int)MarkerId, Tokens), .. promptIds[at..]];
    }

    public IEnumerable<Parameter> Parameters() => [Embeddings];

    public IReadOnlyDictionary<string, Tensor> CheckpointTensors() => new Dictionary<string, Tensor> { [CheckpointName] = Embeddings };

    /// <summary>Prompts built while disabled have no prefix positions (until the result is disposed).</summary>
    public IDisposable Disable()
    {
        if (!Enabled) return new RestoreScope(() => { });
        Enabled = false;
        return new RestoreScope(() => Enabled = true);
    }

    public void Save(string dir) => Save(dir, BaseModel);

    public void Save(string dir, string? baseModel)
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
        using var t = ReadPrefix(model, path);
        return new SoftPrompt(new Parameter(t.to(model.DType).to(model.Device).DetachFromDisposeScope(), requires_grad: false), null);
    }

    public void LoadWeights(string dir)
    {
        using var t = ReadPrefix(null, dir);
        if (!t.shape.SequenceEqual(Embeddings.shape))
            throw new BadInputException($"{dir}: soft prompt has shape [{string.Join(", ", t.shape)}], this one is [{string.Join(", ", Embeddings.shape)}]");
        using (no_grad()) Embeddings.copy_(t);
    }

    private static Tensor ReadPrefix(LlavaModel? model, string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, WeightsFileName);
        if (!File.Exists(path)) throw new BadInputException($"{path}: soft prompt file not found (train one with `vlatune tune --method prompt`)");
        using var file = SafeTensorsFile.Open(path);
        if (!file.Entries.ContainsKey(TensorName)) throw new BadInputException($"{path}: no tensor '{TensorName}' (not a soft prompt file)");
        var t = file.Read(TensorName);
        if (model is not null && (t.dim() != 2 || t.shape[1] != model.Config.Text.HiddenSize))
            throw new BadInputException($"{path}: soft prompt has shape [{string.Join(", ", t.shape)}], the model needs [N, {model.Config.Text.HiddenSize}]");
        return t;
    }

    public void Dispose() => Embeddings.Dispose();
}
