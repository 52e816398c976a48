// A loaded vision-language assistant: the model, its tokenizer, its image preprocessor and its prompt format, from one
// Hugging Face style checkpoint folder (config.json, model.safetensors[.index.json], tokenizer files,
// preprocessor_config.json), with an optional tuner on top (a PEFT LoRA adapter folder or a soft prompt).
// Also turns token sequences into batches (Model/Batch.cs) that carry the soft prompt's rows when it is enabled.
using Serilog;
using VlaBias.Adapters;
using VlaBias.Generation;
using VlaBias.Images;
using VlaBias.Model;
using VlaBias.Text;
using static TorchSharp.torch;

namespace VlaBias;

public sealed class Vla
{
    /// <param name="imageTokens">Image tokens one &lt;image&gt; expands to (processor_config.json's count); default: the model's.</param>
    public Vla(LlavaModel model, VlaTokenizer tokenizer, ImagePreprocessor images, string? folder = null, int? imageTokens = null)
    {
        Model = model; Tokenizer = tokenizer; Images = images; Folder = folder;
        Prompts = PromptFormat.ForFolder(folder, tokenizer, imageTokens ?? model.Config.ImageSeqLength);
    }

    public LlavaModel Model { get; }
    public VlaTokenizer Tokenizer { get; }
    public ImagePreprocessor Images { get; }
    public string? Folder { get; }
    public LlavaConfig Config => Model.Config;

    /// <summary>Image tokens one &lt;image&gt; expands to: processor_config.json's count where it has one, else the model's.</summary>
    public int ImageTokens => Prompts.ImageTokens;

    /// <summary>How prompts are built (template, caption instruction, prefix, soft prompt, suppressed tokens).</summary>
    public PromptFormat Prompts { get; set; }

    /// <summary>The tuner on the base model (LoRA adapters or a soft prompt), or null.</summary>
    public ITunable? Tuner { get; private set; }

    /// <summary>
    /// Loads DIR in <paramref name="dtype"/> and, when given, applies a PEFT LoRA adapter folder and/or a soft prompt
    /// (soft_prompt.safetensors or a run folder holding one).
    /// </summary>
    public static Vla Load(string dir, string? adapter = null, string? softPrompt = null, ScalarType dtype = ScalarType.Float32)
    {
        dir = Assets.Resolve(dir);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var model = LlavaModel.FromPretrained(dir, dtype);
        var tok = VlaTokenizer.FromFolder(dir);
        if (tok.ImageTokenId != model.Config.ImageTokenIndex)
            throw new BadInputException($"{dir}: tokenizer's image token id {tok.ImageTokenId} differs from config.json image_token_index {model.Config.ImageTokenIndex}");
        var pre = PreprocessorConfig.Load(Path.Combine(dir, "preprocessor_config.json"), model.Config.Vision.ImageSize);
        var vla = new Vla(model, tok, new ImagePreprocessor(pre), dir, ProcessorConfig.Load(dir).ImageTokens(model.Config, pre));
        Log.Debug("loaded {Model} in {Dtype} in {Seconds:F1} s; peak memory so far {PeakGb:F2} GB", dir, dtype, watch.Elapsed.TotalSeconds, (ComputeDType.PeakRssBytes() ?? 0) / 1e9);
        if (adapter is not null) vla.Attach(LoraAdapter.Load(model, adapter));
        if (softPrompt is not null) vla.Attach(SoftPrompt.Load(model, softPrompt));
        return vla;
    }

    /// <summary>Makes <paramref name="tuner"/> this model's tuner; a soft prompt also joins the prompt format.</summary>
    public void Attach(ITunable tuner)
    {
        Tuner = tuner;
        if (tuner is SoftPrompt soft) Prompts = Prompts with { Soft = soft };
    }

    /// <summary>Removes the soft prompt from the prompt format (a LoRA adapter is removed or merged through its own methods).</summary>
    public void Detach(ITunable tuner)
    {
        if (ReferenceEquals(Tuner, tuner)) Tuner = null;
        if (ReferenceEquals(Prompts.Soft, tuner)) Prompts = Prompts with { Soft = null };
    }

    /// <summary>
    /// Writes the model as a Hugging Face checkpoint folder (config.json, weights) with the tokenizer and preprocessor
    /// files of the folder it was loaded from, so DIR loads on its own (a merged adapter stays merged).
    /// </summary>
    public void SavePretrained(string dir)
    {
        Model.SavePretrained(dir);
        if (Folder is null) return;
        foreach (var f in Directory.GetFiles(Folder))
        {
            string name = Path.GetFileName(f);
            bool weightsOrModelConfig = name.EndsWith(".safetensors", StringComparison.Ordinal) || name.EndsWith(".safetensors.index.json", StringComparison.Ordinal)
                || name.EndsWith("config.json", StringComparison.Ordinal) && name is not ("preprocessor_config.json" or "processor_config.json" or "tokenizer_config.json");
            if (!weightsOrModelConfig) File.Copy(f, Path.Combine(dir, name), overwrite: true);
        }
    }

    /// <summary>Prompt ids for one question or instruction about one image (<see cref="PromptFormat.Ids"/>).</summary>
    public int[] PromptIds(string prompt, bool withImage = true) => Prompts.Ids(prompt, withImage);

    /// <summary>Left-pads prompt sequences into one batch; <paramref name="pixels"/> are stacked images in row order.</summary>
    public Batch Batch(IReadOnlyList<int[]> sequences, IReadOnlyList<Tensor>? pixels) =>
        VlaBias.Model.Batch.LeftPadded(sequences, Tokenizer.PadId, pixels, Model.DType, null, Prompts.VirtualTokens);

    /// <summary>Like <see cref="Batch(IReadOnlyList{int[]}, IReadOnlyList{Tensor}?)"/> with precomputed image features [B_img, N, C].</summary>
    public Batch Batch(IReadOnlyList<int[]> sequences, IReadOnlyList<Tensor>? pixels, Tensor? features) =>
        VlaBias.Model.Batch.LeftPadded(sequences, Tokenizer.PadId, pixels, Model.DType, features, Prompts.VirtualTokens);

    /// <summary>A teacher-forcing batch of (prompt ids, target ids) rows with labels on the target and the stop token.</summary>
    public Batch TeacherForced(IReadOnlyList<(int[] prompt, int[] target)> rows, Tensor? pixels = null, Tensor? features = null) =>
        VlaBias.Model.Batch.TeacherForced(rows, Tokenizer.PadId, Tokenizer.EosId, pixels, features, Prompts.VirtualTokens);
}
