// Repeated timings: warm-up runs are discarded, then the median of the rest is the figure; the spread
// (max − min) / median is reported as the machine's noise so a reader can tell a quiet run from a loaded one.
using System.Diagnostics;
using System.Text.Json.Nodes;

namespace VlaBias.Bench;

public sealed record Timings(double[] Values)
{
    public double Median
    {
        get
        {
            var s = Values.Order().ToArray();
            return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
        }
    }

    public double Min => Values.Min();
    public double Max => Values.Max();
    public double Noise => Median > 0 ? (Max - Min) / Median : 0;

    /// <summary>Runs <paramref name="action"/> warmup + repeats times and keeps the wall time in ms of the last <paramref name="repeats"/>.</summary>
    public static Timings TimeMs(int warmup, int repeats, Action action)
    {
        for (int i = 0; i < warmup; i++) action();
        var values = new double[Math.Max(1, repeats)];
        for (int i = 0; i < values.Length; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            values[i] = sw.Elapsed.TotalMilliseconds;
        }
        return new Timings(values);
    }

    public JsonObject ToJson() => new()
    {
        ["median"] = Round(Median), ["min"] = Round(Min), ["max"] = Round(Max), ["noise"] = Round(Noise),
        ["samples"] = new JsonArray(Values.Select(v => (JsonNode)Round(v)).ToArray()),
    };

    public static Timings FromJson(JsonNode? node) =>
        new(node?["samples"]?.AsArray().Select(v => v!.GetValue<double>()).ToArray() ?? []);

    public static double Round(double v, int digits = 4) => double.IsFinite(v) ? Math.Round(v, digits) : 0;
}
