using System.Text.Json.Nodes;
using VlaBias.Images;

namespace VlaBias.Tests.Images;

/// <summary>
/// The PIL fixtures of tools/reference/image_preprocessing_reference.py: photos (JPEG, PNG, WebP) and what Hugging
/// Face's CLIP / LLaVA-1.5 / SigLIP processors give for them, as 8-bit pixels after resize and crop plus the float32
/// values of a centre window.
/// </summary>
public sealed record HfCase(string Name, string Input, string Format, string Mode, PreprocessorConfig Config, RgbImage Expected,
    float[] Center, int CenterX, int CenterY, int CenterSize)
{
    public static readonly string Root = Path.Combine(AppContext.BaseDirectory, "Fixtures", "images");

    public override string ToString() => Name;

    public static IReadOnlyList<HfCase> All { get; } = LoadAll();

    private static List<HfCase> LoadAll()
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Root, "cases.json")))!;
        var list = new List<HfCase>();
        foreach (var c in json["cases"]!.AsArray())
        {
            var cfgPath = Path.Combine(Path.GetTempPath(), $"pre-{Guid.NewGuid():N}.json");
            File.WriteAllText(cfgPath, c!["preprocessor_config"]!.ToJsonString());
            PreprocessorConfig cfg;
            try { cfg = PreprocessorConfig.Load(cfgPath, 0); }
            finally { File.Delete(cfgPath); }
            var center = c["center"]!;
            var bytes = File.ReadAllBytes(Path.Combine(Root, center["file"]!.GetValue<string>()));
            var floats = new float[bytes.Length / 4];
            Buffer.BlockCopy(bytes, 0, floats, 0, bytes.Length);
            list.Add(new HfCase(c["name"]!.GetValue<string>(), Path.Combine(Root, c["input"]!.GetValue<string>()),
                c["input_format"]!.GetValue<string>(), c["input_mode"]!.GetValue<string>(), cfg,
                ImagePreprocessor.Decode(Path.Combine(Root, c["expected"]!.GetValue<string>())),
                floats, center["x0"]!.GetValue<int>(), center["y0"]!.GetValue<int>(), center["size"]!.GetValue<int>()));
        }
        return list;
    }

    /// <summary>Mean and max |Δ| of two same-sized images, in 8-bit pixel values (so mean 1.0 is 1/255 of the [0, 1] scale).</summary>
    public static (double Mean, int Max) Diff(RgbImage a, RgbImage b)
    {
        if (a.Width != b.Width || a.Height != b.Height) throw new ArgumentException($"sizes differ: {a.Width}×{a.Height} vs {b.Width}×{b.Height}");
        long sum = 0; int max = 0;
        for (int i = 0; i < a.Pixels.Length; i++)
        {
            int d = Math.Abs(a.Pixels[i] - b.Pixels[i]);
            sum += d;
            if (d > max) max = d;
        }
        return ((double)sum / a.Pixels.Length, max);
    }
}
