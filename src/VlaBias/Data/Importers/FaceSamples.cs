// Tiny generated stand-ins for real face data sets, so the importers and a tune run can be exercised without
// downloading anything: face-like drawings (background, shoulders, head, eyes, mouth, hair) whose presented gender is
// a hair/beard cue, in two layouts:
//   fairface/       FairFace layout: val/<n>.jpg + fairface_label_val.csv (file,age,gender,race,service_test)
//   counterfactual/ <scene>/man.png + <scene>/woman.png: the same drawing with only the gender cue changed
// They carry no information about real people; they only have the shapes of the real formats.
using System.Globalization;
using SkiaSharp;

namespace VlaBias.Data.Importers;

public static class FaceSamples
{
    public sealed record Paths(string FairFaceCsv, string FairFaceRoot, string CounterfactualRoot);

    public static Paths Write(string dir, int faces = 8, int scenes = 8, int size = 64, long seed = 0)
    {
        var rng = new Random(unchecked((int)seed));
        var ff = Path.Combine(dir, "fairface");
        Directory.CreateDirectory(Path.Combine(ff, "val"));
        var lines = new List<string> { "file,age,gender,race,service_test" };
        string[] races = ["White", "Black", "East Asian", "Indian", "Latino_Hispanic", "Middle Eastern", "Southeast Asian"];
        for (int i = 0; i < faces; i++)
        {
            var look = Look.Random(rng);
            bool woman = i % 2 == 1;
            var file = $"val/{i + 1}.jpg";
            File.WriteAllBytes(Path.Combine(ff, file), Encode(Draw(look, woman, size), SKEncodedImageFormat.Jpeg));
            lines.Add(string.Create(CultureInfo.InvariantCulture, $"{file},{20 + 10 * (i % 4)}-{29 + 10 * (i % 4)},{(woman ? "Female" : "Male")},{races[i % races.Length]},True"));
        }
        var csv = Path.Combine(ff, "fairface_label_val.csv");
        File.WriteAllText(csv, string.Join("\n", lines) + "\n");
        var cf = Path.Combine(dir, "counterfactual");
        for (int s = 0; s < scenes; s++)
        {
            var look = Look.Random(rng);
            var sceneDir = Path.Combine(cf, $"scene{s:D3}");
            Directory.CreateDirectory(sceneDir);
            File.WriteAllBytes(Path.Combine(sceneDir, "man.png"), Encode(Draw(look, false, size), SKEncodedImageFormat.Png));
            File.WriteAllBytes(Path.Combine(sceneDir, "woman.png"), Encode(Draw(look, true, size), SKEncodedImageFormat.Png));
        }
        return new Paths(csv, ff, cf);
    }

    private sealed record Look(SKColor Background, SKColor Skin, SKColor Hair, SKColor Shirt, float HeadWidth)
    {
        public static Look Random(Random r)
        {
            SKColor C(int lo, int hi) => new((byte)r.Next(lo, hi), (byte)r.Next(lo, hi), (byte)r.Next(lo, hi));
            byte tone = (byte)r.Next(90, 235);
            return new Look(C(120, 250), new SKColor(tone, (byte)(tone * 0.8), (byte)(tone * 0.65)), C(20, 120), C(30, 220), 0.36f + 0.08f * (float)r.NextDouble());
        }
    }

    private static SKBitmap Draw(Look look, bool woman, int size)
    {
        var bmp = new SKBitmap(size, size, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var c = new SKCanvas(bmp);
        float s = size, cx = s / 2, cy = s * 0.45f, hw = s * look.HeadWidth / 2, hh = s * 0.25f;
        using var p = new SKPaint { IsAntialias = true };
        c.Clear(look.Background);
        p.Color = look.Hair;
        if (woman) c.DrawRoundRect(new SKRect(cx - hw * 1.25f, cy - hh * 1.1f, cx + hw * 1.25f, cy + hh * 1.5f), hw * 0.5f, hw * 0.5f, p); // long hair
        p.Color = look.Shirt;
        c.DrawOval(cx, s * 1.02f, s * 0.42f, s * 0.25f, p);                     // shoulders
        p.Color = look.Skin;
        c.DrawOval(cx, cy, hw, hh, p);                                          // head
        p.Color = look.Hair;
        c.DrawArc(new SKRect(cx - hw, cy - hh, cx + hw, cy + hh * (woman ? 0.6f : 0.2f)), 180, 180, true, p); // hair on top
        if (!woman) c.DrawArc(new SKRect(cx - hw * 0.8f, cy + hh * 0.1f, cx + hw * 0.8f, cy + hh), 0, 180, true, p); // beard
        p.Color = SKColors.Black;
        c.DrawCircle(cx - hw * 0.4f, cy - hh * 0.05f, s * 0.025f, p);           // eyes
        c.DrawCircle(cx + hw * 0.4f, cy - hh * 0.05f, s * 0.025f, p);
        p.Color = woman ? new SKColor(190, 40, 60) : new SKColor(90, 40, 40);
        c.DrawRect(cx - hw * 0.3f, cy + hh * 0.45f, hw * 0.6f, s * 0.02f, p); // mouth
        return bmp;
    }

    private static byte[] Encode(SKBitmap bmp, SKEncodedImageFormat format)
    {
        using (bmp)
        using (var image = SKImage.FromBitmap(bmp))
        using (var data = image.Encode(format, 90))
            return data.ToArray();
    }
}
