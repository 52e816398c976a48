// Pillow's Image.resize(size, BICUBIC) on 8-bit RGB, reproduced bit for bit (Pillow's libImaging/Resample.c), so
// pixels match what Hugging Face's image processors give a model in Python. In: interleaved RGB bytes. Out: the same.
//
// What makes it Pillow's and not just "a bicubic": the filter is the a = −0.5 cubic with support 2, widened by the
// downscaling factor (support × max(in/out, 1), taps scaled by 1/factor), so downscaling averages over the source
// like an antialiasing filter; window bounds are rounded as int(center ± support + 0.5); each output's taps are
// normalised to sum 1, then turned into 22-bit fixed point; each pass rounds (start at 2^21) and clips to 0..255; the
// horizontal pass runs first, on the source rows the vertical pass needs, into an 8-bit intermediate image.
namespace VlaBias.Images;

public static class PilResample
{
    private const int PrecisionBits = 32 - 8 - 2;

    /// <summary>Resizes <paramref name="rgb"/> (width × height × 3 bytes, row-major) to outWidth × outHeight.</summary>
    public static byte[] Bicubic(byte[] rgb, int width, int height, int outWidth, int outHeight)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outWidth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outHeight);
        if (rgb.Length != checked(width * height * 3)) throw new ArgumentException("buffer does not hold width × height RGB pixels", nameof(rgb));
        if (width == outWidth && height == outHeight) return (byte[])rgb.Clone();

        var (boundsH, kH, ksizeH) = Coefficients(width, outWidth);
        var (boundsV, kV, ksizeV) = Coefficients(height, outHeight);
        byte[] current = rgb;
        int curHeight = height;
        int rowOffset = 0;
        if (outWidth != width)
        {
            // Only the source rows the vertical pass reads are resampled horizontally.
            int first = boundsV[0], last = boundsV[2 * (outHeight - 1)] + boundsV[2 * (outHeight - 1) + 1];
            if (outHeight == height) { first = 0; last = height; }
            current = Horizontal(rgb, width, first, last - first, outWidth, boundsH, kH, ksizeH);
            curHeight = last - first;
            rowOffset = first;
        }
        if (outHeight != height)
            current = Vertical(current, outWidth, curHeight, rowOffset, outHeight, boundsV, kV, ksizeV);
        return current;
    }

    private static double Filter(double x)
    {
        const double a = -0.5;
        if (x < 0.0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    /// <summary>precompute_coeffs + normalize_coeffs_8bpc: per output pixel its first source index, tap count and fixed-point taps.</summary>
    internal static (int[] Bounds, int[] Taps, int KSize) Coefficients(int inSize, int outSize)
    {
        const double support0 = 2.0;
        double scale = (double)(float)inSize / outSize; // Pillow passes the box edges as floats
        double filterScale = Math.Max(scale, 1.0);
        double support = support0 * filterScale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var taps = new int[outSize * ksize];
        var k = new double[ksize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            double ww = 0.0, ss = 1.0 / filterScale;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            for (int x = 0; x < xmax; x++)
            {
                double w = Filter((x + xmin - center + 0.5) * ss);
                k[x] = w;
                ww += w;
            }
            for (int x = 0; x < ksize; x++)
            {
                double v = x < xmax ? (ww != 0.0 ? k[x] / ww : k[x]) : 0.0;
                taps[xx * ksize + x] = v < 0 ? (int)(-0.5 + v * (1 << PrecisionBits)) : (int)(0.5 + v * (1 << PrecisionBits));
            }
            bounds[2 * xx] = xmin;
            bounds[2 * xx + 1] = xmax;
        }
        return (bounds, taps, ksize);
    }

    private static byte Clip8(int v)
    {
        int s = v >> PrecisionBits;
        return s < 0 ? (byte)0 : s > 255 ? (byte)255 : (byte)s;
    }

    private static byte[] Horizontal(byte[] src, int width, int firstRow, int rows, int outWidth, int[] bounds, int[] taps, int ksize)
    {
        var dst = new byte[rows * outWidth * 3];
        for (int y = 0; y < rows; y++)
        {
            int srcRow = (y + firstRow) * width * 3, dstRow = y * outWidth * 3;
            for (int xx = 0; xx < outWidth; xx++)
            {
                int xmin = bounds[2 * xx], xmax = bounds[2 * xx + 1], t = xx * ksize;
                int s0 = 1 << (PrecisionBits - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < xmax; x++)
                {
                    int p = srcRow + (x + xmin) * 3, w = taps[t + x];
                    s0 += src[p] * w; s1 += src[p + 1] * w; s2 += src[p + 2] * w;
                }
                int d = dstRow + xx * 3;
                dst[d] = Clip8(s0); dst[d + 1] = Clip8(s1); dst[d + 2] = Clip8(s2);
            }
        }
        return dst;
    }

    private static byte[] Vertical(byte[] src, int width, int height, int rowOffset, int outHeight, int[] bounds, int[] taps, int ksize)
    {
        var dst = new byte[outHeight * width * 3];
        for (int yy = 0; yy < outHeight; yy++)
        {
            int ymin = bounds[2 * yy] - rowOffset, ymax = bounds[2 * yy + 1], t = yy * ksize;
            if (ymin < 0 || ymin + ymax > height) throw new InvalidOperationException("vertical window outside the intermediate image");
            for (int xx = 0; xx < width; xx++)
            {
                int s0 = 1 << (PrecisionBits - 1), s1 = s0, s2 = s0;
                for (int y = 0; y < ymax; y++)
                {
                    int p = ((y + ymin) * width + xx) * 3, w = taps[t + y];
                    s0 += src[p] * w; s1 += src[p + 1] * w; s2 += src[p + 2] * w;
                }
                int d = (yy * width + xx) * 3;
                dst[d] = Clip8(s0); dst[d + 1] = Clip8(s1); dst[d + 2] = Clip8(s2);
            }
        }
        return dst;
    }
}
