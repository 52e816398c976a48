// Image preprocessing as a checkpoint's preprocessor_config.json declares it, reproducing Hugging Face's image
// processors (CLIPImageProcessor, LlavaImageProcessor with do_pad, SiglipImageProcessor) pixel for pixel:
// decode (JPEG/PNG/WebP, SkiaSharp; an image that does not decode completely is refused) → RGB as PIL's convert("RGB")
// (alpha dropped, grey and palette expanded) → optional pad-to-square with int(mean·255) (LLaVA-1.5) → Pillow's
// bicubic resize (PilResample: shortest edge to `size`, long edge int(size·long/short), or to height×width) → center
// crop at ((H − h) // 2, (W − w) // 2) → x·rescale in float64 then float32 → (x − mean) / std in float32 → [3, H, W].
// docs/image-preprocessing.md has the measured agreement with the PIL fixtures and why Skia/ImageSharp resizing is not used.
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
        // Every LLaVA and SigLIP processor resamples bicubically (PIL 3); another filter would give other pixels.
        if (o["resample"] is JsonNode rs && !(rs is JsonValue rsv && rsv.TryGetValue<int>(out var filter) && filter == 3))
            throw new BadInputException($"{path}: field 'resample': {rs.ToJsonString()} is not supported (only 3, bicubic, as Pillow does it)");
        bool doCrop = Bool("do_center_crop", shortest is not null);
        if (shortest is <= 0 || rh is <= 0 || rw is <= 0 || (doCrop && (ch <= 0 || cw <= 0)))
            throw new BadInputException($"{path}: fields 'size' and 'crop_size' must be positive");
        return new PreprocessorConfig(Bool("do_resize", true), shortest, rh, rw, doCrop, ch, cw,
            Bool("do_rescale", true), rescale, Bool("do_normalize", true), Arr("image_mean", ClipMean), Arr("image_std", ClipStd),
            Bool("do_pad", false) || (o["image_aspect_ratio"] is JsonValue ar && ar.TryGetValue<string>(out var s) && s == "pad"));
    }

    /// <summary>
    /// The resized size (width, height) of a width × height image: shortest edge to ShortestEdge and the long edge
    /// int(size · long / short) (transformers' get_resize_output_image_size), or ResizeWidth × ResizeHeight.
    /// </summary>
    public (int Width, int Height) ResizeTarget(int width, int height)
    {
        if (ShortestEdge is int se)
        {
            int shortSide = Math.Min(width, height), longSide = Math.Max(width, height);
            int newLong = (int)((double)se * longSide / shortSide);
            return width <= height ? (se, newLong) : (newLong, se);
        }
        return (ResizeWidth ?? width, ResizeHeight ?? height);
    }

    /// <summary>The (height, width) of the pixel values for a square input of <paramref name="imageSize"/>, the size processors count tokens from.</summary>
    public (int Height, int Width) OutputSize(int imageSize)
    {
        if (DoCenterCrop) return (CropHeight, CropWidth);
        if (!DoResize) return (imageSize, imageSize);
        var (w, h) = ResizeTarget(imageSize, imageSize);
        return (h, w);
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

/// <summary>8-bit RGB pixels, row-major, interleaved (what PIL's np.array(image.convert("RGB")) holds).</summary>
public sealed record RgbImage(int Width, int Height, byte[] Pixels)
{
    public byte this[int x, int y, int channel] => Pixels[(y * Width + x) * 3 + channel];

    /// <summary>The RGB of a Skia bitmap, unpremultiplied, alpha dropped (as PIL's RGBA → RGB conversion does).</summary>
    public static RgbImage FromBitmap(SKBitmap bitmap)
    {
        var info = new SKImageInfo(bitmap.Width, bitmap.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[info.BytesSize];
        unsafe
        {
            using var image = SKImage.FromBitmap(bitmap);
            fixed (byte* p = rgba)
                if (!image.ReadPixels(info, (IntPtr)p, info.RowBytes, 0, 0)) throw new BadInputException("image cannot be converted to RGB");
        }
        return FromRgba(bitmap.Width, bitmap.Height, rgba);
    }

    internal static RgbImage FromRgba(int width, int height, ReadOnlySpan<byte> rgba)
    {
        var rgb = new byte[width * height * 3];
        for (int i = 0, j = 0; j < rgb.Length; i += 4, j += 3)
        {
            rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
        }
        return new RgbImage(width, height, rgb);
    }
}

public sealed class ImagePreprocessor(PreprocessorConfig config)
{
    /// <summary>PIL's DecompressionBombError threshold (2 × Image.MAX_IMAGE_PIXELS): larger images are refused before decoding.</summary>
    public const long MaxPixels = 2 * 89_478_485L;

    public PreprocessorConfig Config { get; } = config;

    /// <summary>Decodes and preprocesses one image file into [3, H, W] float32. Errors name the file.</summary>
    public Tensor Load(string path) => Normalize(Pixels(Decode(path)));

    public Tensor Process(SKBitmap source) => Normalize(Pixels(RgbImage.FromBitmap(source)));

    /// <summary>
    /// Decodes a JPEG, PNG or WebP file to RGB. The decoder must report the whole image decoded: a truncated or
    /// corrupt file is a BadInputException naming it (Skia would otherwise fill the missing rows and carry on).
    /// </summary>
    public static RgbImage Decode(string path)
    {
        if (!File.Exists(path)) throw new BadInputException($"{path}: image not found");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new BadInputException($"{path}: cannot read image: {e.Message}"); }
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data);
        if (codec is null)
            throw new BadInputException($"{path}: not a decodable image (JPEG, PNG or WebP expected; is the file truncated or corrupt?)");
        int w = codec.Info.Width, h = codec.Info.Height;
        if (w <= 0 || h <= 0 || (long)w * h > MaxPixels)
            throw new BadInputException($"{path}: image of {w}×{h} pixels is outside the accepted size (1 to {MaxPixels} pixels)");
        // No colour space: pixels come as stored, as PIL gives them (it ignores ICC profiles and gAMA).
        var info = new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[info.BytesSize];
        SKCodecResult result;
        unsafe
        {
            fixed (byte* p = rgba) result = codec.GetPixels(info, (IntPtr)p);
        }
        if (result != SKCodecResult.Success)
            throw new BadInputException(result == SKCodecResult.IncompleteInput
                ? $"{path}: image file is truncated ({codec.EncodedFormat}, {w}×{h}, {bytes.Length} bytes): it does not decode completely"
                : $"{path}: image does not decode ({codec.EncodedFormat}: {result})");
        return RgbImage.FromRgba(w, h, rgba);
    }

    /// <summary>Pad, resize and crop as the config says: the 8-bit pixels the model's input is computed from.</summary>
    public RgbImage Pixels(RgbImage image)
    {
        var c = Config;
        if (c.DoPad && image.Width != image.Height) image = PadToSquare(image, c.Mean);
        if (c.DoResize)
        {
            var (w, h) = c.ResizeTarget(image.Width, image.Height);
            if (w != image.Width || h != image.Height) image = new RgbImage(w, h, PilResample.Bicubic(image.Pixels, image.Width, image.Height, w, h));
        }
        if (c.DoCenterCrop) image = CenterCrop(image, c.CropWidth, c.CropHeight);
        return image;
    }

    /// <summary>Rescale and normalize in float32 as transformers' rescale/normalize do (numpy arithmetic, same rounding).</summary>
    public Tensor Normalize(RgbImage image)
    {
        var c = Config;
        int h = image.Height, w = image.Width;
        Span<float> mean = [(float)c.Mean[0], (float)c.Mean[1], (float)c.Mean[2]];
        Span<float> std = [(float)c.Std[0], (float)c.Std[1], (float)c.Std[2]];
        var data = new float[3 * h * w];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < 3; ch++)
                {
                    byte b = image.Pixels[(y * w + x) * 3 + ch];
                    float v = c.DoRescale ? (float)(b * c.RescaleFactor) : b;
                    if (c.DoNormalize) v = (v - mean[ch]) / std[ch];
                    data[(ch * h + y) * w + x] = v;
                }
        return tensor(data, [3, h, w]);
    }

    /// <summary>LlavaImageProcessor.pad_to_square: a max(H, W) square of tuple(int(m·255) for m in image_mean), the image centred by floor division.</summary>
    internal static RgbImage PadToSquare(RgbImage image, double[] mean)
    {
        int side = Math.Max(image.Width, image.Height);
        var px = new byte[side * side * 3];
        Span<byte> fill = [(byte)(int)(mean[0] * 255), (byte)(int)(mean[1] * 255), (byte)(int)(mean[2] * 255)];
        for (int i = 0; i < px.Length; i += 3) { px[i] = fill[0]; px[i + 1] = fill[1]; px[i + 2] = fill[2]; }
        int x0 = (side - image.Width) / 2, y0 = (side - image.Height) / 2;
        for (int y = 0; y < image.Height; y++)
            Array.Copy(image.Pixels, y * image.Width * 3, px, ((y + y0) * side + x0) * 3, image.Width * 3);
        return new RgbImage(side, side, px);
    }

    /// <summary>
    /// transformers' center_crop: offsets (H − h) // 2 and (W − w) // 2; where the image is smaller than the crop
    /// it is centred in zeros at ceil((h − H) / 2).
    /// </summary>
    internal static RgbImage CenterCrop(RgbImage image, int cropWidth, int cropHeight)
    {
        if (cropWidth == image.Width && cropHeight == image.Height) return image;
        static int Offset(int size, int crop) => crop <= size ? (size - crop) / 2 : -((crop - size + 1) / 2);
        int ox = Offset(image.Width, cropWidth), oy = Offset(image.Height, cropHeight);
        var px = new byte[cropWidth * cropHeight * 3];
        for (int y = 0; y < cropHeight; y++)
        {
            int sy = y + oy;
            if (sy < 0 || sy >= image.Height) continue;
            for (int x = 0; x < cropWidth; x++)
            {
                int sx = x + ox;
                if (sx < 0 || sx >= image.Width) continue;
                Array.Copy(image.Pixels, (sy * image.Width + sx) * 3, px, (y * cropWidth + x) * 3, 3);
            }
        }
        return new RgbImage(cropWidth, cropHeight, px);
    }
}
