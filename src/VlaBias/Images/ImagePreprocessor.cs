// Image preprocessing as a checkpoint's preprocessor_config.json declares it, through SkiaSharp:
// decode (JPEG/PNG/WebP) → RGB → optional pad-to-square with the mean colour (LLaVA-1.5) → resize so the shortest
// edge is `size` (or to height×width) → center crop → scale to [0,1] → normalize with mean/std → float [3, H, W].
// Resampling is Skia's Catmull-Rom cubic, close to but not bit-identical with PIL's bicubic.
using System.Text.Json.Nodes;
using SkiaSharp;
using static TorchSharp.torch;

namespace VlaBias.Images;

public sealed record PreprocessorConfig(
    bool DoResize, int? ShortestEdge, int? ResizeHeight, int? ResizeWidth,
    bool DoCenterCrop, int CropHeight, int CropWidth,
    bool DoRescale, double RescaleFactor, bool DoNormalize, double[] Mean, double[] Std, bool DoPad)
{
    public static readonly double[] ClipMean = [0.48145466, 0.4578275, 0.40821073];
    public static readonly double[] ClipStd = [0.26862954, 0.26130258, 0.27577711];

    /// <summary>A config for images already at the model's size: no resize or crop, CLIP normalisation.</summary>
    public static PreprocessorConfig ForSize(int size) =>
        new(true, size, null, null, true, size, size, true, 1 / 255.0, true, ClipMean, ClipStd, false);

    public static PreprocessorConfig Load(string path, int imageSize)
    {
        if (!File.Exists(path)) return ForSize(imageSize);
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new BadInputException($"{path}: expected a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new BadInputException($"{path}: not valid JSON ({e.Message})"); }
        int? Int(JsonNode? n) => n is JsonValue v && v.TryGetValue<int>(out var i) ? i : null;
        double[] Arr(string key, double[] dflt)
        {
            if (o[key] is not JsonArray a) return dflt;
            var r = a.Select(x => x?.GetValue<double>() ?? double.NaN).ToArray();
            if (r.Length != 3 || r.Any(double.IsNaN)) throw new BadInputException($"{path}: field '{key}': expected three numbers");
            return r;
        }
        bool Bool(string key, bool dflt) => o[key] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : dflt;
        var size = o["size"];
        int? shortest = size is JsonObject so ? Int(so["shortest_edge"]) : Int(size);
        int? rh = size is JsonObject s2 ? Int(s2["height"]) : null, rw = size is JsonObject s3 ? Int(s3["width"]) : null;
        var crop = o["crop_size"];
        int ch = crop is JsonObject co ? Int(co["height"]) ?? imageSize : Int(crop) ?? imageSize;
        int cw = crop is JsonObject co2 ? Int(co2["width"]) ?? imageSize : Int(crop) ?? imageSize;
        double rescale = o["rescale_factor"] is JsonValue rv && rv.TryGetValue<double>(out var rf) ? rf : 1 / 255.0;
        return new PreprocessorConfig(Bool("do_resize", true), shortest, rh, rw, Bool("do_center_crop", shortest is not null), ch, cw,
            Bool("do_rescale", true), rescale, Bool("do_normalize", true), Arr("image_mean", ClipMean), Arr("image_std", ClipStd),
            Bool("do_pad", false) || (o["image_aspect_ratio"] is JsonValue ar && ar.TryGetValue<string>(out var s) && s == "pad"));
    }

    public JsonObject ToJson() => new()
    {
        ["image_processor_type"] = "CLIPImageProcessor",
        ["do_resize"] = DoResize,
        ["size"] = ShortestEdge is int se ? new JsonObject { ["shortest_edge"] = se } : new JsonObject { ["height"] = ResizeHeight, ["width"] = ResizeWidth },
        ["do_center_crop"] = DoCenterCrop,
        ["crop_size"] = new JsonObject { ["height"] = CropHeight, ["width"] = CropWidth },
        ["do_rescale"] = DoRescale, ["rescale_factor"] = RescaleFactor,
        ["do_normalize"] = DoNormalize,
        ["image_mean"] = new JsonArray(Mean.Select(x => (JsonNode)x).ToArray()),
        ["image_std"] = new JsonArray(Std.Select(x => (JsonNode)x).ToArray()),
        ["do_pad"] = DoPad,
        ["resample"] = 3,
    };
}

public sealed class ImagePreprocessor(PreprocessorConfig config)
{
    public PreprocessorConfig Config { get; } = config;

    /// <summary>Decodes and preprocesses one image file into [3, H, W] float32. Errors name the file.</summary>
    public Tensor Load(string path)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: image not found");
        byte[] bytes = File.ReadAllBytes(path);
        SKBitmap? decoded = null;
        try
        {
            using var data = SKData.CreateCopy(bytes);
            using var codec = SKCodec.Create(data);
            if (codec is not null) decoded = SKBitmap.Decode(codec);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { decoded = null; }
        using var bmp = decoded ?? throw new BadInputException($"{path}: not a decodable image (JPEG, PNG or WebP expected)");
        return Process(bmp);
    }

    public Tensor Process(SKBitmap source)
    {
        using var rgba = source.Copy(SKColorType.Rgba8888) ?? throw new BadInputException("image cannot be converted to RGB");
        SKBitmap current = rgba;
        var owned = new List<SKBitmap>();
        try
        {
            if (Config.DoPad && current.Width != current.Height)
            {
                int side = Math.Max(current.Width, current.Height);
                var padded = new SKBitmap(side, side, SKColorType.Rgba8888, SKAlphaType.Premul);
                using (var canvas = new SKCanvas(padded))
                {
                    canvas.Clear(new SKColor((byte)(Config.Mean[0] * 255), (byte)(Config.Mean[1] * 255), (byte)(Config.Mean[2] * 255)));
                    canvas.DrawBitmap(current, (side - current.Width) / 2, (side - current.Height) / 2);
                }
                owned.Add(padded); current = padded;
            }
            if (Config.DoResize)
            {
                int w, h;
                if (Config.ShortestEdge is int se)
                {
                    double scale = (double)se / Math.Min(current.Width, current.Height);
                    w = Math.Max(1, (int)Math.Round(current.Width * scale)); h = Math.Max(1, (int)Math.Round(current.Height * scale));
                    if (current.Width <= current.Height) w = se; else h = se;
                }
                else { w = Config.ResizeWidth ?? current.Width; h = Config.ResizeHeight ?? current.Height; }
                if (w != current.Width || h != current.Height)
                {
                    var resized = current.Resize(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Premul), new SKSamplingOptions(SKCubicResampler.CatmullRom));
                    owned.Add(resized); current = resized;
                }
            }
            int x0 = 0, y0 = 0, cw = current.Width, chh = current.Height;
            if (Config.DoCenterCrop)
            {
                cw = Config.CropWidth; chh = Config.CropHeight;
                x0 = (current.Width - cw) / 2; y0 = (current.Height - chh) / 2;
            }
            var data = new float[3 * chh * cw];
            for (int y = 0; y < chh; y++)
                for (int x = 0; x < cw; x++)
                {
                    int sx = x + x0, sy = y + y0;
                    var c = sx >= 0 && sy >= 0 && sx < current.Width && sy < current.Height ? current.GetPixel(sx, sy) : SKColors.Black;
                    Span<double> rgb = [c.Red, c.Green, c.Blue];
                    for (int ch = 0; ch < 3; ch++)
                    {
                        double v = Config.DoRescale ? rgb[ch] * Config.RescaleFactor : rgb[ch];
                        if (Config.DoNormalize) v = (v - Config.Mean[ch]) / Config.Std[ch];
                        data[(ch * chh + y) * cw + x] = (float)v;
                    }
                }
            return tensor(data, [3, chh, cw]);
        }
        finally { foreach (var b in owned) b.Dispose(); }
    }
}
