// LlavaForConditionalGeneration: pixel_values → vision_tower → hidden state of vision_feature_layer (CLS dropped for
// strategy "default") → multi_modal_projector → image embeddings, written into the token embeddings at the
// image-token positions (one image token per image-feature position, Hugging Face's current convention) →
// language_model → logits. One entry point, forward(ModelInput) → ModelOutput (ModelInput.cs); ImageFeatures computes
// image embeddings ahead when many prompts share an image. The same class serves tiny-base and a 7B checkpoint.
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;
using VlaBias.Weights;

namespace VlaBias.Model;

public sealed class LlavaModel : nn.Module<ModelInput, ModelOutput>
{
    /// <summary>The token id of a soft-prompt position: negative, so it never reaches the embedding table.</summary>
    public const long VirtualTokenId = -7;

    private readonly VisionTower vision_tower;
    private readonly MultiModalProjector multi_modal_projector;
    private readonly CausalLm language_model;

    public LlavaModel(LlavaConfig config) : base("LlavaForConditionalGeneration")
    {
        Config = config;
        Kernels = new LinearKernels();
        vision_tower = new VisionTower(config.Vision);
        multi_modal_projector = new MultiModalProjector(config, Kernels);
        language_model = new CausalLm(config.Text, Kernels);
        RegisterComponents();
    }

    public LlavaConfig Config { get; }
    public CausalLm LanguageModel => language_model;
    public ScalarType DType => language_model.LmHead.weight.dtype;
    public Device Device => language_model.LmHead.weight.device;

    /// <summary>The kernel choice of the language model's and projector's linear layers, with the decode-mode scope.</summary>
    public LinearKernels Kernels { get; }

    /// <summary>Image embeddings [B_img, N, C_text] for pixel_values [B_img, 3, H, W].</summary>
    public Tensor ImageFeatures(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        var h = vision_tower.HiddenState(pixels.to(Device), Config.VisionFeatureLayer);
        if (Config.VisionFeatureSelectStrategy == "default") h = h.narrow(1, 1, h.shape[1] - 1);
        return multi_modal_projector.call(h).MoveToOuterDisposeScope();
    }

    public override ModelOutput forward(ModelInput input)
    {
        var output = Forward(input);
        NativeHeap.AfterForward();   // the forward's temporaries are freed by now; hand their pages back when RSS grew
        return output;
    }

    private ModelOutput Forward(ModelInput input)
    {
        if (input.Labels is not null && input.Logits != LogitsMode.All)
            throw new ArgumentException("labels need the logits of every position (LogitsMode.All)", nameof(input));
        using var scope = NewDisposeScope();
        var embeds = input.InputsEmbeds
            ?? Embed(input.InputIds ?? throw new ArgumentException("give InputIds or InputsEmbeds", nameof(input)), input.Pixels, input.ImageFeatures, input.VirtualTokens);
        var h = language_model.Model.Forward(embeds, input.Mask?.to(Device), input.Positions?.to(Device), input.Cache, input.Start);
        var logits = input.Logits switch
        {
            LogitsMode.All => language_model.LmHead.call(h),
            LogitsMode.Last => language_model.LmHead.call(h.select(1, -1)).unsqueeze(1),
            _ => null,
        };
        // Mean cross-entropy over scored positions, computed in fp32 whatever the model's dtype.
        var loss = input.Labels is null ? null
            : nn.functional.cross_entropy(logits!.reshape(-1, logits.shape[^1]).to_type(ScalarType.Float32), input.Labels.to(Device).reshape(-1), ignore_index: Batch.IgnoreIndex);
        return new ModelOutput(h.MoveToOuterDisposeScope(), logits?.MoveToOuterDisposeScope(), loss?.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Token embeddings [B, T, C] with image features written over the image-token positions (row-major, one image
    /// token per feature position) and soft-prompt rows over the VirtualTokenId positions.
    /// </summary>
    private Tensor Embed(Tensor inputIds, Tensor? pixels, Tensor? imageFeatures, Tensor? virtualTokens)
    {
        using var scope = NewDisposeScope();
        inputIds = inputIds.to(Device);
        var isVirtual = virtualTokens is null ? null : inputIds.eq(VirtualTokenId);
        var lookup = isVirtual is null ? inputIds : inputIds.masked_fill(isVirtual, 0);
        var embeds = language_model.Model.EmbedTokens.call(lookup);
        if (isVirtual is not null) embeds = WriteVirtualTokens(isVirtual, embeds, virtualTokens!);
        if (pixels is null && imageFeatures is null) return embeds.MoveToOuterDisposeScope();
        var feats = imageFeatures ?? ImageFeatures(pixels!);
        var isImage = inputIds.eq(Config.ImageTokenIndex);
        long slots = isImage.sum().ToInt64(), given = feats.shape[0] * feats.shape[1];
        if (slots != given)
            throw new BadInputException($"the prompt has {slots} image tokens but the images give {given} features ({feats.shape[0]} images × {feats.shape[1]}); expand <image> to {Config.ImageSeqLength} tokens per image");
        embeds = embeds.masked_scatter(isImage.unsqueeze(-1).expand_as(embeds), feats.to_type(embeds.dtype));
        return embeds.MoveToOuterDisposeScope();
    }

    /// <summary>embeds [B, T, C] with the rows [N, C] written over each row's N VirtualTokenId positions.</summary>
    private static Tensor WriteVirtualTokens(Tensor isVirtual, Tensor embeds, Tensor rows)
    {
        long slots = isVirtual.sum().ToInt64(), batch = isVirtual.shape[0];
        if (slots == 0) return embeds;
        if (slots != batch * rows.shape[0]) throw new BadInputException($"soft prompt: the batch has {slots} prefix positions, expected {rows.shape[0]} per row");
        var src = rows.to_type(embeds.dtype).repeat(batch, 1);
        return embeds.masked_scatter(isVirtual.unsqueeze(-1).expand_as(embeds), src);
    }

    /// <summary>A preallocated cache for <paramref name="batch"/> rows of up to <paramref name="capacity"/> positions.</summary>
    public IKvCache NewCache(long batch, long capacity) =>
        new KvCache(Config.Text.NumHiddenLayers, batch, Config.Text.NumKeyValueHeads, capacity, Config.Text.HeadDim, DType, Device);

    /// <summary>Hugging Face-style initialisation: normal(0, std) for linear, conv and embedding weights, zero biases, unit norms.</summary>
    public void InitWeights(double std = 0.02, long seed = 0)
    {
        using var _ = no_grad();
        var gen = new Generator((ulong)seed);
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith("layernorm.weight") || name.EndsWith("layer_norm1.weight") || name.EndsWith("layer_norm2.weight")
                || name.EndsWith("norm.weight") || name.EndsWith("pre_layrnorm.weight"))
                p.fill_(1.0);
            else if (name.EndsWith(".bias")) p.zero_();
            else p.normal_(0, std, generator: gen);
        }
    }

    // ---- checkpoints --------------------------------------------------------------------------------------------

    /// <summary>The name a checkpoint tensor has in this module tree (accepts both Hugging Face layouts).</summary>
    public static string CanonicalName(string name)
    {
        if (name.StartsWith("model.language_model.", StringComparison.Ordinal)) return "language_model.model." + name["model.language_model.".Length..];
        if (name.StartsWith("model.vision_tower.", StringComparison.Ordinal)) return name["model.".Length..];
        if (name.StartsWith("model.multi_modal_projector.", StringComparison.Ordinal)) return name["model.".Length..];
        if (name == "lm_head.weight") return "language_model.lm_head.weight";
        return name;
    }

    /// <summary>Builds the model described by DIR/config.json and loads DIR's weights (safetensors, else PyTorch .bin) into it.</summary>
    public static LlavaModel FromPretrained(string dir, ScalarType dtype = ScalarType.Float32)
    {
        if (!Directory.Exists(dir)) throw new BadInputException($"{dir}: model folder not found");
        var config = LlavaConfig.Load(Path.Combine(dir, "config.json"));
        var files = ShardedCheckpoint.OpenFolder(dir);
        // Parameters are created directly in the compute dtype (default dtype switched for the constructor only), so
        // a 7B model never exists in F32 next to its BF16 copy; LoadWeights then reads each tensor into its parameter.
        LlavaModel model;
        var previous = get_default_dtype();
        try
        {
            set_default_dtype(dtype);
            using (no_grad()) model = new LlavaModel(config);
        }
        finally { set_default_dtype(previous); }
        try { model.LoadWeights(files, dir); }
        finally { foreach (var f in files.Values.Distinct()) f.Dispose(); }
        model.eval();
        return model;
    }

    /// <summary>
    /// Copies every tensor into the matching parameter (converting dtype, one tensor at a time, no second copy of the
    /// model). Missing, unexpected and mis-shaped tensors are reported together in one BadInputException.
    /// </summary>
    public void LoadWeights(IReadOnlyDictionary<string, ITensorFile> files, string where)
    {
        var parameters = state_dict();
        var problems = new List<string>();
        var seen = new HashSet<string>();
        bool tied = Config.Text.TieWordEmbeddings;
        foreach (var (fileName, file) in files)
        {
            string canonical = CanonicalName(fileName);
            if (!parameters.TryGetValue(canonical, out var target))
            {
                if (!IgnorableExtra(canonical)) problems.Add($"unexpected tensor '{fileName}'");
                continue;
            }
            var shape = file.Shapes[fileName];
            if (!shape.SequenceEqual(target.shape))
            {
                problems.Add($"tensor '{fileName}' has shape [{string.Join(", ", shape)}], expected [{string.Join(", ", target.shape)}]");
                continue;
            }
            seen.Add(canonical);
        }
        foreach (var name in parameters.Keys)
            if (!seen.Contains(name) && !(tied && name == "language_model.lm_head.weight"))
                problems.Add($"missing tensor '{name}'");
        if (problems.Count > 0)
            throw new BadInputException($"{where}: checkpoint does not match the model of config.json: {string.Join("; ", problems.Take(20))}{(problems.Count > 20 ? $"; … {problems.Count - 20} more" : "")}");
        using var _ = no_grad();
        foreach (var (fileName, file) in files)
        {
            string canonical = CanonicalName(fileName);
            if (parameters.TryGetValue(canonical, out var target)) file.ReadInto(fileName, target);
        }
    }

    private static bool IgnorableExtra(string name) =>
        name.EndsWith(".position_ids", StringComparison.Ordinal) || name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)
        || name.StartsWith("vision_tower.vision_model.head.", StringComparison.Ordinal);

    /// <summary>Writes config.json and model.safetensors (Hugging Face names, older LLaVA layout) to DIR, atomically per file.</summary>
    public void SavePretrained(string dir, long maxShardBytes = 5_000_000_000)
    {
        Directory.CreateDirectory(dir);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, t) in state_dict())
        {
            if (Config.Text.TieWordEmbeddings && name == "language_model.lm_head.weight") continue;
            tensors[name] = t;
        }
        ShardedCheckpoint.SaveFolder(dir, tensors, maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
        var cfg = Config with { TorchDtype = DType switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" } };
        AtomicFile.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJson().ToJsonString(JsonFormat.Pretty));
    }
}
