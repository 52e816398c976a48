// The processor fields of a checkpoint folder that decide how many image tokens one <image> becomes, as Hugging
// Face's LlavaProcessor reads them: processor_config.json (or, in older folders, preprocessor_config.json) with
// patch_size, vision_feature_select_strategy and num_additional_image_tokens. Out: the image-token count per image,
//   (height // patch_size) · (width // patch_size) + num_additional_image_tokens − (1 if strategy is "default")
// with height × width the preprocessed image size, checked against the number of features the model gives.
using System.Text.Json;
using System.Text.Json.Nodes;
using VlaBias.Model;

namespace VlaBias.Images;

public sealed record ProcessorConfig(string? Path, int? PatchSize, int NumAdditionalImageTokens, string? VisionFeatureSelectStrategy)
{
    public const string FileName = "processor_config.json";

    /// <summary>No processor fields: the count is the model's own.</summary>
    public static readonly ProcessorConfig None = new(null, null, 0, null);

    /// <summary>Reads processor_config.json of DIR, else the same fields from preprocessor_config.json, else <see cref="None"/>.</summary>
    public static ProcessorConfig Load(string dir)
    {
        foreach (var name in new[] { FileName, "preprocessor_config.json" })
        {
            string path = System.IO.Path.Combine(dir, name);
            if (!File.Exists(path)) continue;
            JsonObject o;
            try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new BadInputException($"{path}: expected a JSON object"); }
            catch (JsonException e) { throw new BadInputException($"{path}: not valid JSON ({e.Message})"); }
            if (!o.ContainsKey("patch_size") && !o.ContainsKey("vision_feature_select_strategy")) continue;
            int? Int(string key)
            {
                if (o[key] is null) return null;
                try { int v = o[key]!.GetValue<int>(); return v >= 0 ? v : throw new FormatException(); }
                catch (Exception e) when (e is InvalidOperationException or FormatException)
                { throw new BadInputException($"{path}: field '{key}': expected a non-negative integer, got {o[key]!.ToJsonString()}"); }
            }
            string? strategy = null;
            if (o["vision_feature_select_strategy"] is JsonNode sn)
            {
                try { strategy = sn.GetValue<string>(); }
                catch (Exception e) when (e is InvalidOperationException or FormatException) { strategy = ""; }
                if (strategy is not ("default" or "full"))
                    throw new BadInputException($"{path}: field 'vision_feature_select_strategy': unsupported value {sn.ToJsonString()} (expected \"default\" or \"full\")");
            }
            int? patch = Int("patch_size");
            if (patch == 0) throw new BadInputException($"{path}: field 'patch_size': must be positive");
            return new ProcessorConfig(path, patch, Int("num_additional_image_tokens") ?? 0, strategy);
        }
        return None;
    }

    /// <summary>
    /// Image tokens per image for a model and its preprocessing. Without both patch_size and the strategy Hugging Face
    /// does not expand &lt;image&gt; itself, and the count is the model's (<see cref="LlavaConfig.ImageSeqLength"/>).
    /// A count that differs from the features the model gives is an error naming the file, as it would fail there too.
    /// </summary>
    public int ImageTokens(LlavaConfig model, PreprocessorConfig pre)
    {
        if (PatchSize is not int patch || VisionFeatureSelectStrategy is not string strategy) return model.ImageSeqLength;
        var (h, w) = pre.OutputSize(model.Vision.ImageSize);
        int count = (h / patch) * (w / patch) + NumAdditionalImageTokens - (strategy == "default" ? 1 : 0);
        if (count != model.ImageSeqLength)
            throw new BadInputException($"{Path}: patch_size {patch}, num_additional_image_tokens {NumAdditionalImageTokens} and strategy " +
                $"\"{strategy}\" give {count} image tokens for a {h}×{w} image, but the model ({model.Vision.ModelType}, strategy " +
                $"\"{model.VisionFeatureSelectStrategy}\" in config.json) gives {model.ImageSeqLength} image features");
        return count;
    }
}
