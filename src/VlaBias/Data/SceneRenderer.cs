// Draws one scene of the world with SkiaSharp: background of the context, its objects in fixed slots with seeded
// jitter, one person figure with the skin tone on head and hands, the role's item in the right hand, and the gender
// cue. In: a Scene (render seed, context, role, gender, tone). Out: RGB pixels or PNG bytes, no text.
// Everything but the cue is drawn from the seed, context and role, and the cue is drawn last and clipped to
// CueRegion, so the man/woman/unclear variants of a scene are pixel-identical outside that rectangle; the tone
// variants differ only in SkinRegions. Antialiasing is off: edges are exact and bytes reproducible.
using SkiaSharp;

namespace VlaBias.Data;

/// <summary>One scene to draw. Seed fixes layout and colors; Gender and Tone are the protected attributes that a
/// counterfactual changes.</summary>
public sealed record Scene(ulong Seed, string Context, string Role, string Gender, string Tone);

/// <summary>A pixel rectangle [X, X+Width) × [Y, Y+Height).</summary>
public readonly record struct PixelRect(int X, int Y, int Width, int Height)
{
    public bool Contains(int x, int y) => x >= X && x < X + Width && y >= Y && y < Y + Height;
}

public sealed class SceneRenderer
{
    /// <summary>The canvas geometry is written for 48 pixels and scaled.</summary>
    public const int BaseSize = 48;
    internal static readonly (float W, float H) ItemBox = (11, 14);

    // Slots of the context objects: wall-left, floor-left, top-right (top-right is right of the cue region).
    internal static (float W, float H) SlotSize(int slot) => slot switch { 0 => (14, 14), 1 => (14, 16), _ => (7, 8) };

    private static readonly uint[] Shirts = [0x4e6e8e, 0x6b8e4e, 0x8e6b4e, 0x7a5a8c, 0x5a8c8a, 0x8c5a5a, 0x4f5b93, 0x93864f];
    private static readonly uint[] Trousers = [0x2f3545, 0x3b3b3b, 0x4a3b2a, 0x23402f];

    private readonly World _world;
    public int Size { get; }
    private readonly float _u;

    public SceneRenderer(World world, int? imageSize = null)
    {
        _world = world;
        Size = imageSize ?? world.ImageSize;
        if (Size < 16) throw new BadInputException($"image size {Size}: expected at least 16 pixels");
        _u = Size / (float)BaseSize;
    }

    private sealed record Layout(int Cx, (float X, float Y)[] Slots, int[][] ObjectJitter, uint Shirt, uint Trouser, float PatternOffset);

    // The draws from the seed happen in a fixed order and never depend on gender or tone.
    private static Layout MakeLayout(Scene s)
    {
        var rng = new SceneRandom(s.Seed);
        int cx = 26 + rng.Next(6);
        var slots = new[]
        {
            (1f + rng.Next(3), 3f + rng.Next(4)),
            (1f + rng.Next(3), 26f + rng.Next(3)),
            (cx + 10f + rng.Next(2), 1f + rng.Next(3)),
        };
        var jitter = new int[3][];
        for (int i = 0; i < 3; i++) jitter[i] = [rng.Next(41) - 20, rng.Next(41) - 20, rng.Next(41) - 20];
        uint shirt = Shirts[rng.Next(Shirts.Length)], trouser = Trousers[rng.Next(Trousers.Length)];
        return new Layout(cx, slots, jitter, shirt, trouser, rng.Next(6));
    }

    /// <summary>The rectangle that holds the gender cue; all other pixels are the same for every gender.</summary>
    public PixelRect CueRegion(Scene scene)
    {
        var r = _world.CueRegion;
        return Px(MakeLayout(scene).Cx + r[0], r[1], r[2], r[3]);
    }

    /// <summary>Head and both hands, the only pixels a tone counterfactual changes.</summary>
    public IReadOnlyList<PixelRect> SkinRegions(Scene scene)
    {
        int cx = MakeLayout(scene).Cx;
        return [Px(cx - 5, 10, 10, 11), Px(cx - 9, 33, 3, 3), Px(cx + 6, 33, 3, 3)];
    }

    private PixelRect Px(float x, float y, float w, float h)
    {
        int x0 = (int)MathF.Round(x * _u), y0 = (int)MathF.Round(y * _u);
        int x1 = (int)MathF.Round((x + w) * _u), y1 = (int)MathF.Round((y + h) * _u);
        x0 = Math.Clamp(x0, 0, Size); y0 = Math.Clamp(y0, 0, Size); x1 = Math.Clamp(x1, 0, Size); y1 = Math.Clamp(y1, 0, Size);
        return new PixelRect(x0, y0, x1 - x0, y1 - y0);
    }

    /// <summary>The scene as PNG bytes (8-bit RGB).</summary>
    public byte[] RenderPng(Scene scene)
    {
        using var bmp = RenderBitmap(scene);
        return EncodePng(bmp);
    }

    /// <summary>The scene as H×W×3 RGB bytes, row-major.</summary>
    public byte[] RenderRgb(Scene scene)
    {
        using var bmp = RenderBitmap(scene);
        return ToRgb(bmp);
    }

    internal static byte[] ToRgb(SKBitmap bmp)
    {
        var rgba = bmp.Bytes; // Rgba8888
        var rgb = new byte[bmp.Width * bmp.Height * 3];
        for (int i = 0, j = 0; i < rgba.Length; i += 4, j += 3) { rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2]; }
        return rgb;
    }

    internal static byte[] EncodePng(SKBitmap bmp)
    {
        using var image = SKImage.FromBitmap(bmp);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    internal SKBitmap RenderBitmap(Scene scene)
    {
        var ctx = _world.Contexts.FirstOrDefault(c => c.Name == scene.Context)
            ?? throw new ArgumentException($"unknown context '{scene.Context}'", nameof(scene));
        var role = ctx.Roles.FirstOrDefault(r => r.Name == scene.Role)
            ?? throw new ArgumentException($"context '{ctx.Name}' has no role '{scene.Role}'", nameof(scene));
        var tone = _world.Tones.FirstOrDefault(t => t.Id == scene.Tone)
            ?? throw new ArgumentException($"unknown tone '{scene.Tone}'", nameof(scene));
        if (!_world.GenderCues.TryGetValue(scene.Gender, out var cue))
            throw new ArgumentException($"unknown gender '{scene.Gender}'", nameof(scene));

        var layout = MakeLayout(scene);
        var bmp = new SKBitmap(new SKImageInfo(Size, Size, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(bmp);
        using var paint = new SKPaint { IsAntialias = false, Style = SKPaintStyle.Fill };

        DrawBackground(canvas, paint, ctx.Background, layout.PatternOffset);
        for (int i = 0; i < ctx.Objects.Count && i < 3; i++)
            DrawParts(canvas, paint, ctx.Objects[i].Parts, layout.Slots[i].X, layout.Slots[i].Y, layout.ObjectJitter[i]);

        int cx = layout.Cx;
        uint skin = Rgb(tone.Color);
        // Figure: legs, torso, arms, head, eyes; then the item and the hand that holds it.
        Rect(canvas, paint, layout.Trouser, cx - 5, 36, 4, 10);
        Rect(canvas, paint, layout.Trouser, cx + 1, 36, 4, 10);
        Rect(canvas, paint, layout.Shirt, cx - 6, 22, 12, 15);
        Rect(canvas, paint, layout.Shirt, cx - 9, 23, 3, 10);
        Rect(canvas, paint, layout.Shirt, cx + 6, 23, 3, 10);
        Rect(canvas, paint, skin, cx - 5, 10, 10, 11);
        Rect(canvas, paint, 0x202020, cx - 3, 14, 1, 2);
        Rect(canvas, paint, 0x202020, cx + 2, 14, 1, 2);
        Rect(canvas, paint, skin, cx - 9, 33, 3, 3);
        DrawParts(canvas, paint, role.Item.Parts, cx + 6, 24, null);
        Rect(canvas, paint, skin, cx + 6, 33, 3, 3);

        // The cue, last and clipped: nothing outside CueRegion can depend on gender.
        var region = CueRegion(scene);
        canvas.Save();
        canvas.ClipRect(new SKRect(region.X, region.Y, region.X + region.Width, region.Y + region.Height), SKClipOperation.Intersect, false);
        DrawParts(canvas, paint, cue, cx, 0, null);
        canvas.Restore();
        canvas.Flush();
        return bmp;
    }

    private void DrawBackground(SKCanvas canvas, SKPaint paint, Background bg, float offset)
    {
        uint wall = Rgb(bg.Wall), floor = Rgb(bg.Floor), pc = Rgb(bg.PatternColor);
        Rect(canvas, paint, wall, 0, 0, BaseSize, 40);
        switch (bg.Pattern)
        {
            case "tiles":
                for (float v = offset; v < 40; v += 6) Rect(canvas, paint, pc, 0, v, BaseSize, 1);
                for (float v = offset; v < BaseSize; v += 6) Rect(canvas, paint, pc, v, 0, 1, 40);
                break;
            case "stripes":
                for (float v = offset; v < BaseSize; v += 6) Rect(canvas, paint, pc, v, 0, 2, 40);
                break;
            case "hstripes":
                for (float v = offset; v < 40; v += 5) Rect(canvas, paint, pc, 0, v, BaseSize, 2);
                break;
            case "band":
                Rect(canvas, paint, pc, 0, 28, BaseSize, 4);
                break;
            case "dots":
                for (float y = 2 + offset / 2; y < 38; y += 6)
                    for (float x = 2 + offset; x < BaseSize; x += 6) Rect(canvas, paint, pc, x, y, 2, 2);
                break;
            case "checker":
                for (int j = 0; j * 6 < 40; j++)
                    for (int i = -1; i * 6 < BaseSize; i++)
                        if ((i + j) % 2 == 0) Rect(canvas, paint, pc, i * 6 + offset, j * 6, 6, Math.Min(6, 40 - j * 6));
                break;
        }
        Rect(canvas, paint, floor, 0, 40, BaseSize, 8);
    }

    private void DrawParts(SKCanvas canvas, SKPaint paint, List<ShapePart> parts, float ox, float oy, int[]? jitter)
    {
        foreach (var part in parts)
        {
            uint c = Rgb(part.Color);
            if (jitter is not null) c = Jitter(c, jitter);
            paint.Color = ToSk(c);
            var a = part.At;
            switch (part.Shape)
            {
                case "rect":
                    paint.Style = SKPaintStyle.Fill;
                    canvas.DrawRect(R(ox + a[0], oy + a[1], a[2], a[3]), paint);
                    break;
                case "oval":
                    paint.Style = SKPaintStyle.Fill;
                    canvas.DrawOval(R(ox + a[0], oy + a[1], a[2], a[3]), paint);
                    break;
                case "ring":
                    {
                        paint.Style = SKPaintStyle.Stroke;
                        paint.StrokeWidth = part.Width * _u;
                        float h = part.Width / 2; // stroke centred inside the box
                        canvas.DrawOval(R(ox + a[0] + h, oy + a[1] + h, a[2] - 2 * h, a[3] - 2 * h), paint);
                        break;
                    }
                case "tri":
                    {
                        paint.Style = SKPaintStyle.Fill;
                        using var path = new SKPath();
                        path.MoveTo((ox + a[0] + a[2] / 2) * _u, (oy + a[1]) * _u);
                        path.LineTo((ox + a[0] + a[2]) * _u, (oy + a[1] + a[3]) * _u);
                        path.LineTo((ox + a[0]) * _u, (oy + a[1] + a[3]) * _u);
                        path.Close();
                        canvas.DrawPath(path, paint);
                        break;
                    }
                case "line":
                    paint.Style = SKPaintStyle.Stroke;
                    paint.StrokeWidth = part.Width * _u;
                    paint.StrokeCap = SKStrokeCap.Square;
                    canvas.DrawLine((ox + a[0]) * _u, (oy + a[1]) * _u, (ox + a[2]) * _u, (oy + a[3]) * _u, paint);
                    paint.StrokeCap = SKStrokeCap.Butt;
                    break;
            }
        }
        paint.Style = SKPaintStyle.Fill;
    }

    private void Rect(SKCanvas canvas, SKPaint paint, uint rgb, float x, float y, float w, float h)
    {
        paint.Color = ToSk(rgb);
        paint.Style = SKPaintStyle.Fill;
        canvas.DrawRect(R(x, y, w, h), paint);
    }

    // Rectangles snap to whole pixels so the scaled figure keeps crisp edges at any image size.
    private SKRect R(float x, float y, float w, float h) =>
        new(MathF.Round(x * _u), MathF.Round(y * _u), MathF.Round((x + w) * _u), MathF.Round((y + h) * _u));

    private static uint Rgb(string hex) => World.TryParseColor(hex, out var c) ? c : throw new ArgumentException($"bad color '{hex}'");
    private static SKColor ToSk(uint c) => new((byte)(c >> 16), (byte)(c >> 8), (byte)c);
    private static uint Jitter(uint c, int[] d)
    {
        static uint Ch(uint v, int dv) => (uint)Math.Clamp((int)v + dv, 0, 255);
        return Ch((c >> 16) & 255, d[0]) << 16 | Ch((c >> 8) & 255, d[1]) << 8 | Ch(c & 255, d[2]);
    }

    /// <summary>A grid of scenes (one row per array, e.g. the man/woman/unclear variants of a scene) as PNG bytes,
    /// upscaled by nearest neighbour with a 2-pixel gutter, for people to look at.</summary>
    public byte[] RenderContactSheet(IReadOnlyList<IReadOnlyList<Scene>> rows, int scale = 4)
    {
        int cols = rows.Max(r => r.Count), cell = Size * scale, gap = 2 * scale;
        int w = cols * cell + (cols + 1) * gap, h = rows.Count * cell + (rows.Count + 1) * gap;
        using var sheet = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(sheet);
        canvas.Clear(new SKColor(40, 40, 40));
        using var paint = new SKPaint { IsAntialias = false };
        for (int r = 0; r < rows.Count; r++)
            for (int c = 0; c < rows[r].Count; c++)
            {
                using var bmp = RenderBitmap(rows[r][c]);
                using var img = SKImage.FromBitmap(bmp);
                var dst = SKRect.Create(gap + c * (cell + gap), gap + r * (cell + gap), cell, cell);
                canvas.DrawImage(img, dst, new SKSamplingOptions(SKFilterMode.Nearest, SKMipmapMode.None), paint);
            }
        canvas.Flush();
        return EncodePng(sheet);
    }
}

/// <summary>SplitMix64: small, fast, and the same sequence on every platform and .NET version.</summary>
internal sealed class SceneRandom(ulong seed)
{
    private ulong _s = seed;

    public static ulong Mix(ulong a, ulong b)
    {
        var r = new SceneRandom(a * 0x9E3779B97F4A7C15UL ^ b);
        r.NextULong();
        return r.NextULong();
    }

    public ulong NextULong()
    {
        ulong z = _s += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));
    public int Next(int n) => (int)(NextDouble() * n);
    public bool Chance(double p) => NextDouble() < p;
    public T Pick<T>(IReadOnlyList<T> xs) => xs[Next(xs.Count)];
}
