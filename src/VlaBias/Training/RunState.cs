// The state of a debiasing run that a resumed run continues from (stored in the checkpoint's state.json): step,
// EMA of the training loss and how many steps it has been under the threshold (ema-loss rule), the best evaluation so
// far, whether a loss went non-finite, and every validation point.
using System.Text.Json.Nodes;

namespace VlaBias.Training;

/// <summary>One validation measurement: pairwise probe gap (train attributes) and CIDEr-D at a step, with the loss EMA then.</summary>
public sealed record ValidationPoint(long Step, double Bias, double CiderD, double Loss);

internal sealed record RunState
{
    public long Step { get; init; }
    public double Ema { get; init; } = double.NaN;
    public int BelowCount { get; init; }
    public long BestStep { get; init; } = -1;
    public double BestBias { get; init; } = double.PositiveInfinity;
    public bool NonFinite { get; init; }
    public IReadOnlyList<ValidationPoint> Evaluations { get; init; } = [];

    public JsonObject ToJson() => new()
    {
        ["ema"] = double.IsFinite(Ema) ? Ema : null, ["below_count"] = BelowCount, ["best_step"] = BestStep,
        ["best_bias"] = double.IsFinite(BestBias) ? BestBias : null,
        // non-finite values (e.g. CIDEr-D of a validation split without captions) are written as null
        ["evaluations"] = new JsonArray(Evaluations.Select(e => (JsonNode)new JsonArray(
            new[] { e.Step, e.Bias, e.CiderD, e.Loss }.Select(x => double.IsFinite(x) ? JsonValue.Create(x) : null).ToArray())).ToArray()),
    };

    public static RunState FromJson(JsonObject o) => new()
    {
        Ema = o["ema"]?.GetValue<double>() ?? double.NaN,
        BelowCount = o["below_count"]!.GetValue<int>(),
        BestStep = o["best_step"]!.GetValue<long>(),
        BestBias = o["best_bias"]?.GetValue<double>() ?? double.PositiveInfinity,
        Evaluations = o["evaluations"]!.AsArray().Select(e => e!.AsArray().Select(x => x?.GetValue<double>() ?? double.NaN).ToArray())
            .Select(a => new ValidationPoint((long)a[0], a[1], a[2], a[3])).ToList(),
    };
}
