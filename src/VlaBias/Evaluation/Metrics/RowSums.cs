using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VlaBias.Evaluation.Metrics;

/// <summary>
/// Column sums of chosen rows of a row-major table, each column added in row order from +0 (so every column is the
/// sum a one-column loop gives, bit for bit): the permutation tests of many resamples at once and the LIC classifier's
/// gradient, whose columns are independent sums over the same sequence of rows.
/// </summary>
internal static class RowSums
{
    /// <summary>Columns per pass over the rows: four or eight vectors (each a chain of dependent additions; eight
    /// chains keep the adders busy, four took twice as long per column).</summary>
    public static int Granule => 4 * Vector<double>.Count;

    /// <summary>The row length to pad <paramref name="columns"/> to: a whole number of <see cref="Granule"/>s.</summary>
    public static int Stride(int columns) => (columns + Granule - 1) / Granule * Granule;

    /// <summary>sums[t] = 0 + table[rows[0] + t] + table[rows[1] + t] + … for t &lt; stride; rows are offsets of rows
    /// of <paramref name="stride"/> values (a multiple of <see cref="Granule"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(double[] table, ReadOnlySpan<int> rows, double[] sums, int stride)
    {
        int width = Vector<double>.Count;
        if (stride % Granule != 0 || sums.Length < stride) throw new ArgumentException("sums must hold whole granules");
        foreach (int r in rows) if (r < 0 || r + stride > table.Length) throw new ArgumentOutOfRangeException(nameof(rows));
        ref double v = ref MemoryMarshal.GetArrayDataReference(table);
        int t = 0;
        for (; t + 2 * Granule <= stride; t += 2 * Granule)
        {
            Vector<double> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
            foreach (int r in rows)
            {
                ref double row = ref Unsafe.Add(ref v, r + t);
                s0 += Vector.LoadUnsafe(ref row);
                s1 += Vector.LoadUnsafe(ref row, (nuint)width);
                s2 += Vector.LoadUnsafe(ref row, (nuint)(2 * width));
                s3 += Vector.LoadUnsafe(ref row, (nuint)(3 * width));
                s4 += Vector.LoadUnsafe(ref row, (nuint)(4 * width));
                s5 += Vector.LoadUnsafe(ref row, (nuint)(5 * width));
                s6 += Vector.LoadUnsafe(ref row, (nuint)(6 * width));
                s7 += Vector.LoadUnsafe(ref row, (nuint)(7 * width));
            }
            s0.CopyTo(sums, t); s1.CopyTo(sums, t + width); s2.CopyTo(sums, t + 2 * width); s3.CopyTo(sums, t + 3 * width);
            s4.CopyTo(sums, t + 4 * width); s5.CopyTo(sums, t + 5 * width); s6.CopyTo(sums, t + 6 * width); s7.CopyTo(sums, t + 7 * width);
        }
        if (t < stride)
        {
            Vector<double> s0 = default, s1 = default, s2 = default, s3 = default;
            foreach (int r in rows)
            {
                ref double row = ref Unsafe.Add(ref v, r + t);
                s0 += Vector.LoadUnsafe(ref row);
                s1 += Vector.LoadUnsafe(ref row, (nuint)width);
                s2 += Vector.LoadUnsafe(ref row, (nuint)(2 * width));
                s3 += Vector.LoadUnsafe(ref row, (nuint)(3 * width));
            }
            s0.CopyTo(sums, t); s1.CopyTo(sums, t + width); s2.CopyTo(sums, t + 2 * width); s3.CopyTo(sums, t + 3 * width);
        }
    }
}
